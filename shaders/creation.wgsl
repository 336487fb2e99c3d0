// creation.wgsl: tensors made from a shape and scalars.
//
// Bindings: params, out (u32 words; floats are stored through bitcast so that fill_bits
// can write exact bit patterns). One invocation writes one element.
// The random kernels use a counter-based generator: element i's bits depend only on i
// and the seed's two keys, so every device (and the CPU twin in src/random.rs) produces
// the same uniform bits for the same seed, whatever the launch shape.

struct CreationParams {
    numel: u32,
    rows: u32,   // eye: matrix rows
    cols: u32,   // eye: matrix columns
    bits: u32,   // fill_bits: the pattern
    key0: u32,   // random keys derived from the seed on the host
    key1: u32,
    a: f32,      // fill value, arange start, uniform low, normal mean
    b: f32,      // arange step, uniform high, normal std
}

@group(0) @binding(0) var<uniform> p: CreationParams;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

// Chris Wellons' lowbias32 integer hash.
fn hash32(x0: u32) -> u32 {
    var x = x0;
    x = x ^ (x >> 16u);
    x = x * 0x7feb352du;
    x = x ^ (x >> 15u);
    x = x * 0x846ca68bu;
    x = x ^ (x >> 16u);
    return x;
}

// Two independent 32-bit draws for counter i.
fn random_pair(i: u32) -> vec2<u32> {
    let h = hash32(i ^ p.key0);
    return vec2<u32>(hash32(h + p.key1), hash32(h ^ 0x68e31da4u) + p.key0);
}

// Uniform in [0, 1) from the top 24 bits: every value is exactly representable.
fn unit_float(bits: u32) -> f32 {
    return f32(bits >> 8u) * (1.0 / 16777216.0);
}

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.numel) {
        out[i] = bitcast<u32>(p.a);
    }
}

@compute @workgroup_size(WG)
fn fill_bits(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.numel) {
        out[i] = p.bits;
    }
}

@compute @workgroup_size(WG)
fn arange(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.numel) {
        out[i] = bitcast<u32>(p.a + f32(i) * p.b);
    }
}

@compute @workgroup_size(WG)
fn eye(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.numel) {
        let col = i % p.cols;
        let row = (i / p.cols) % p.rows;
        out[i] = bitcast<u32>(select(0.0, 1.0, row == col));
    }
}

@compute @workgroup_size(WG)
fn rand_uniform(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.numel) {
        let u = unit_float(random_pair(i).x);
        out[i] = bitcast<u32>(p.a + (p.b - p.a) * u);
    }
}

@compute @workgroup_size(WG)
fn rand_normal(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.numel) {
        let r = random_pair(i);
        // Box-Muller; u1 in (0, 1] keeps the logarithm finite.
        let u1 = f32((r.x >> 8u) + 1u) * (1.0 / 16777216.0);
        let u2 = unit_float(r.y);
        let z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        out[i] = bitcast<u32>(p.a + p.b * z);
    }
}
