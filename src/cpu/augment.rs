//! Geometric augmentation of NCHW batches: the reference for `shaders/augment.wgsl`.

use crate::tensor::Layout;

/// Each image of the `[N, C, H, W]` view `ls` of `src` read through its own window:
/// `windows` holds three values per image, `dy, dx, flip`. Output pixel `(y, x)` of image
/// `n` is input pixel `(y + dy, dx + x)`, or `(y + dy, dx + out_w - 1 - x)` when `flip` is
/// nonzero, and 0 where that lies outside the image. Returns the contiguous
/// `[N, C, out_h, out_w]` result.
pub fn crop_flip(src: &[f32], ls: &Layout, windows: &[i32], [out_h, out_w]: [usize; 2]) -> Vec<f32> {
    let [n, c, in_h, in_w] = ls.shape[..] else { unreachable!("crop_flip: the tensor layer checks for rank 4") };
    debug_assert_eq!(windows.len(), 3 * n);
    let [sn, sc, sh, sw] = ls.strides[..] else { unreachable!() };
    let mut out = Vec::with_capacity(n * c * out_h * out_w);
    for (img, window) in windows.chunks_exact(3).enumerate() {
        // i64 so that no offset, however extreme, wraps into the image.
        let (dy, dx, flip) = (window[0] as i64, window[1] as i64, window[2] != 0);
        for ch in 0..c {
            let plane = ls.offset + img * sn + ch * sc;
            for y in 0..out_h {
                let iy = dy + y as i64;
                let row_inside = (0..in_h as i64).contains(&iy);
                for x in 0..out_w {
                    let col = if flip { out_w - 1 - x } else { x };
                    let ix = dx + col as i64;
                    let inside = row_inside && (0..in_w as i64).contains(&ix);
                    out.push(if inside { src[plane + iy as usize * sh + ix as usize * sw] } else { 0.0 });
                }
            }
        }
    }
    out
}
