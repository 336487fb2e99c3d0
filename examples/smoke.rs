use wgrad::{Device, Tensor};
fn main() {
    env_logger::init();
    for a in wgrad::list_adapters() { println!("adapter: {}", a.line()); }
    let dev = Device::software().unwrap();
    println!("{}", dev.info());
    let x = Tensor::randn(&[5, 7], 42, &dev);
    let w = Tensor::randn(&[7, 3], 7, &dev);
    let p = x.matmul(&w).softmax(1);
    let g: Vec<f32> = p.to_vec();
    let xc = Tensor::randn(&[5, 7], 42, &Device::cpu());
    let wc = Tensor::randn(&[7, 3], 7, &Device::cpu());
    let c: Vec<f32> = xc.matmul(&wc).softmax(1).to_vec();
    println!("{:?}\n{:?}", &g[..6], &c[..6]);
}
