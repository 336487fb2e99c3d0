//! Geometric augmentation of NCHW batches: the reference for `shaders/augment.wgsl`.

use super::alloc;
use super::parallel;
use crate::op::layout::Layout;

/// Each image of the `[N, C, H, W]` view `ls` of `src` read through its own window:
/// `windows` holds three values per image, `dy, dx, flip`. Output pixel `(y, x)` of image
/// `n` is input pixel `(y + dy, dx + x)`, or `(y + dy, dx + out_w - 1 - x)` when `flip` is
/// nonzero, and 0 where that lies outside the image. Returns the contiguous
/// `[N, C, out_h, out_w]` result.
pub fn crop_flip(src: &[f32], ls: &Layout, windows: &[i32], [out_h, out_w]: [usize; 2]) -> Vec<f32> {
    let [n, c, in_h, in_w] = ls.shape[..] else { unreachable!("crop_flip: the tensor layer checks for rank 4") };
    debug_assert_eq!(windows.len(), 3 * n);
    let [sn, sc, sh, sw] = ls.strides[..] else { unreachable!() };
    let image = c * out_h * out_w;
    let mut out = alloc::zeroed::<f32>(n * image, "augment");
    if image == 0 {
        return out;
    }
    // Images are cropped in parallel, each by one thread.
    parallel::for_each_run(&mut out, image, image, |first, run| {
        for (k, dst) in run.chunks_exact_mut(image).enumerate() {
            let img = first + k;
            let window = &windows[3 * img..3 * img + 3];
            // i64 so that no offset, however extreme, wraps into the image.
            let (dy, dx, flip) = (window[0] as i64, window[1] as i64, window[2] != 0);
            for (ch, dst) in dst.chunks_exact_mut(out_h * out_w).enumerate() {
                let plane = ls.offset + img * sn + ch * sc;
                for (y, dst) in dst.chunks_exact_mut(out_w).enumerate() {
                    let iy = dy + y as i64;
                    let row_inside = (0..in_h as i64).contains(&iy);
                    for (x, d) in dst.iter_mut().enumerate() {
                        let col = if flip { out_w - 1 - x } else { x };
                        let ix = dx + col as i64;
                        let inside = row_inside && (0..in_w as i64).contains(&ix);
                        *d = if inside { src[plane + iy as usize * sh + ix as usize * sw] } else { 0.0 };
                    }
                }
            }
        }
    });
    out
}
