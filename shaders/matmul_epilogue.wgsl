// matmul_epilogue.wgsl: what the f32 matmul files (matmul.wgsl, matmul_vec4.wgsl) share,
// placed before each by src/gpu/shaders.rs: the params (gpu::kernels::matmul's
// MatmulParams), the params and bias bindings, and the epilogue.
//
// Epilogue (every entry point, on each finished element): bias_mode 0 adds nothing, 1 adds
// bias[bias_offset + column] (Linear's bias, one per output feature), 2 adds
// bias[bias_offset + row] (a convolution's bias, one per output channel); then activation
// 0 none, 1 relu, 2 sigmoid, 3 tanh, with the formulas of elementwise.wgsl (common.wgsl's
// sigmoid_f and tanh_f). The launcher binds some read-only buffer as `bias` when there is
// none.

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    batch_rank: u32,
    a_offset: u32,
    b_offset: u32,
    tiles_m: u32,
    tiles_n: u32,
    a_row_stride: u32,
    a_col_stride: u32,
    b_row_stride: u32,
    b_col_stride: u32,
    batch_start: u32,
    bias_mode: u32,
    bias_offset: u32,
    activation: u32,
    batch_shape: array<vec4<u32>, 2>,
    a_batch_strides: array<vec4<u32>, 2>,
    b_batch_strides: array<vec4<u32>, 2>,
}


@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(3) var<storage, read> bias: array<f32>;

// The bias and activation of element (row, col) of a product, applied to its sum v.
fn epilogue(v: f32, row: u32, col: u32) -> f32 {
    var x = v;
    if (p.bias_mode == 1u) {
        x = x + bias[p.bias_offset + col];
    } else if (p.bias_mode == 2u) {
        x = x + bias[p.bias_offset + row];
    }
    switch p.activation {
        case 1u: {
            return select(0.0, x, x > 0.0 || is_nan(x));
        }
        case 2u: {
            return sigmoid_f(x);
        }
        case 3u: {
            return tanh_f(x);
        }
        default: {
            return x;
        }
    }
}
