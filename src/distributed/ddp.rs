//! [`DistributedDataParallel`]: one model's parameters kept identical on every rank, its
//! gradients averaged across the ranks in buckets during backward.
//!
//! How a step's gradients travel. The trainable parameters are grouped, in reverse
//! registration order (about the order backward finishes their gradients: the last layer
//! first), into buckets of up to [`DdpOptions::bucket_bytes`]. During backward
//! ([`Tensor::backward_with_hook`]) each leaf's gradient is set aside as soon as it is
//! complete; when every gradient of a bucket is, the bucket's gradients are joined into
//! one tensor on their device, read back once into the bucket's host buffer and handed to
//! a non-blocking `MPI_Iallreduce`, while backward goes on with the earlier layers.
//! Buckets are started strictly in bucket order, so every rank issues the collectives in
//! the same order whatever order its gradients finish in (MPI requires it). After
//! backward, each bucket's sum is waited for, divided by the number of ranks, and written
//! back to the device once; each parameter's gradient is a view of that one tensor.
//!
//! How much communication overlaps computation: on the CPU backend backward runs on the
//! calling thread, and Open MPI moves a non-blocking collective forward only inside MPI
//! calls; each completed leaf tests the oldest outstanding request, which lets transfers
//! progress between gradient computations, and the last bucket's reduction (the first
//! layers) always ends after backward. On a GPU a bucket's read-back waits for the work
//! recorded so far, so backward's remaining work is recorded only after it; the overlap
//! there is the MPI transfer of one bucket with the recording and running of the rest.
//! A parameter that gets no gradient on some rank (a branch not taken) contributes zeros
//! and receives the average like every other, as PyTorch's `find_unused_parameters`.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use mpi::collective::SystemOperation;
use mpi::traits::*;

use super::World;
use crate::autograd::{Gradients, TensorId};
use crate::nn::{Module, StateDict};
use crate::train::DataParallel;
use crate::{no_grad, DType, Device, Error, Result, Tensor};

/// Options of [`DistributedDataParallel`], as PyTorch's constructor arguments.
#[derive(Clone, Debug)]
pub struct DdpOptions {
    bucket_bytes: usize,
    allow_differing_values: bool,
    overlap: bool,
}

impl Default for DdpOptions {
    fn default() -> DdpOptions {
        DdpOptions { bucket_bytes: 25 << 20, allow_differing_values: false, overlap: true }
    }
}

impl DdpOptions {
    /// 25 MiB buckets, the same initial values required on every rank, overlap on.
    pub fn new() -> DdpOptions {
        DdpOptions::default()
    }

    /// The most gradient bytes one all-reduce carries (PyTorch's `bucket_cap_mb`, 25 MiB
    /// by default). Smaller buckets start earlier in backward and overlap more; each costs
    /// one collective's latency. A parameter larger than the cap has a bucket of its own.
    /// Panics on zero.
    pub fn bucket_bytes(mut self, bytes: usize) -> DdpOptions {
        assert!(bytes > 0, "DdpOptions::bucket_bytes: the bucket size must be at least 1 byte");
        self.bucket_bytes = bytes;
        self
    }

    /// With `true`, ranks whose parameter values differ at construction (initialised from
    /// different seeds) are not an error: rank 0's values are copied to every rank, as
    /// PyTorch does. By default differing values are an error naming the first differing
    /// tensor, since they usually mean the ranks did not seed alike, which also makes
    /// their dropout masks and augmentations disagree in ways no broadcast repairs.
    pub fn allow_differing_values(mut self, allow: bool) -> DdpOptions {
        self.allow_differing_values = allow;
        self
    }

    /// With `false`, gradients are averaged after backward instead of during it (one
    /// bucket after another, each still non-blocking); for measuring what the overlap
    /// gains.
    pub fn overlap(mut self, overlap: bool) -> DdpOptions {
        self.overlap = overlap;
        self
    }
}

/// One model's side of a data-parallel run over MPI: give it to
/// [`crate::train::Trainer::data_parallel`], or call [`DistributedDataParallel::backward`]
/// instead of `loss.backward()` in a loop of your own (see the module docs for an
/// example).
///
/// Built over a model, on every rank, with the same model built the same way: it checks
/// that every rank's model has the same tensors (names, shapes and dtypes, then values),
/// and copies rank 0's parameters and buffers to every rank. It shares the model's
/// tensors rather than owning the model (as an optimizer does), so the model is used as
/// before: its forward, `state_dict`, checkpoints.
///
/// In a world of one rank it does nothing: `backward` is the model's own.
pub struct DistributedDataParallel {
    world: World,
    model_buffers: Vec<(String, Tensor)>,
    params: Vec<Tensor>,
    buckets: Vec<Bucket>,
    /// Where each trainable parameter's gradient goes: (bucket, member).
    slot_of: HashMap<TensorId, (usize, usize)>,
    overlap: bool,
}

/// Parameters whose gradients travel in one all-reduce.
struct Bucket {
    /// Indices into `params`, in the order their gradients lie in the buffers.
    members: Vec<usize>,
    /// Element offset of each member in the buffers.
    offsets: Vec<usize>,
    /// Elements in all.
    len: usize,
    /// This rank's gradients, read back from the device (the staging area).
    send: Vec<f32>,
    /// The sum over the ranks.
    recv: Vec<f32>,
}

impl DistributedDataParallel {
    /// Checks that `model` is the same on every rank and copies rank 0's parameters and
    /// buffers to every rank, with the default [`DdpOptions`]: see
    /// [`DistributedDataParallel::with_options`].
    pub fn new(model: &dyn Module, world: &World) -> Result<DistributedDataParallel> {
        DistributedDataParallel::with_options(model, world, DdpOptions::new())
    }

    /// As [`DistributedDataParallel::new`], with `options`.
    ///
    /// Errors, the same on every rank (no rank is left waiting): a model whose tensors
    /// differ in number, name, shape or dtype between ranks, naming the first that
    /// differs; values that differ, naming the first such tensor (unless
    /// [`DdpOptions::allow_differing_values`]); a trainable parameter that is not `f32`.
    pub fn with_options(model: &dyn Module, world: &World, options: DdpOptions) -> Result<DistributedDataParallel> {
        let state = model.state_dict();
        let tensors: Vec<(&str, &Tensor)> = state.iter().collect();
        let named_params = model.named_parameters();
        check_same_structure(world, &tensors)?;
        if !options.allow_differing_values {
            check_same_values(world, &tensors)?;
        }
        if let Some((name, p)) = named_params.iter().find(|(_, p)| !p.is_frozen() && p.dtype() != DType::F32) {
            return Err(Error::Distributed(format!(
                "DistributedDataParallel: parameter {name} is {:?}; gradients are averaged in f32, so trainable \
                 parameters must be f32",
                p.dtype()
            )));
        }
        broadcast_state(world, model, &state)?;

        let params: Vec<Tensor> = named_params.iter().map(|(_, p)| p.clone()).filter(|p| !p.is_frozen()).collect();
        let buckets = plan_buckets(&params, options.bucket_bytes);
        let mut slot_of = HashMap::new();
        for (b, bucket) in buckets.iter().enumerate() {
            for (m, &p) in bucket.members.iter().enumerate() {
                let id = params[p].grad_id().expect("a trainable parameter is tracked");
                slot_of.insert(id, (b, m));
            }
        }
        Ok(DistributedDataParallel {
            world: world.clone(),
            model_buffers: model.named_buffers(),
            params,
            buckets,
            slot_of,
            overlap: options.overlap,
        })
    }

    /// The world this model is averaged over.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The number of buckets and the elements of each, in the order they are reduced.
    pub fn bucket_sizes(&self) -> Vec<usize> {
        self.buckets.iter().map(|b| b.len).collect()
    }

    /// The gradient bytes each step sends to the all-reduce (every trainable parameter,
    /// in `f32`).
    pub fn gradient_bytes(&self) -> usize {
        4 * self.buckets.iter().map(|b| b.len).sum::<usize>()
    }

    /// The gradients of `loss` (a scalar), averaged across the ranks as backward runs.
    /// Call it on every rank for every step, as `loss.backward()`.
    pub fn backward(&mut self, loss: &Tensor) -> Gradients {
        if self.world.size() == 1 {
            return loss.backward();
        }
        assert_eq!(
            loss.numel(),
            1,
            "DistributedDataParallel::backward: called on a tensor of shape {:?}; the loss must be a scalar",
            loss.shape()
        );
        let seed = no_grad(|| Tensor::ones(loss.shape(), loss.device()));
        let device = loss.device().clone();
        if !self.overlap {
            let mut grads = loss.backward_with(&seed);
            self.average_gradients(&mut grads);
            return grads;
        }
        let mut ready: Vec<Vec<Option<Tensor>>> = self.buckets.iter().map(|b| vec![None; b.members.len()]).collect();
        let mut waiting: Vec<usize> = self.buckets.iter().map(|b| b.members.len()).collect();
        let (world, slot_of, params) = (&self.world, &self.slot_of, &self.params);
        let mut grads = mpi::request::scope(|scope| {
            let mut flight = InFlight::new(&mut self.buckets);
            let grads = loss.backward_with_hook(&seed, &mut |leaf, grad| {
                let Some(&(b, m)) = leaf.grad_id().and_then(|id| slot_of.get(&id)) else { return };
                ready[b][m] = Some(grad.clone());
                waiting[b] -= 1;
                // Start every bucket that is complete and whose predecessors have started.
                while flight.next < waiting.len() && waiting[flight.next] == 0 {
                    let b = flight.next;
                    flight.start(world, scope, params, &std::mem::take(&mut ready[b]), &device);
                }
                flight.make_progress();
            });
            // Buckets with a parameter that got no gradient on this rank start now, in order.
            while flight.next < waiting.len() {
                let b = flight.next;
                flight.start(world, scope, params, &std::mem::take(&mut ready[b]), &device);
            }
            flight.wait_all();
            grads
        });
        self.write_back(&mut grads, &device);
        grads
    }

    /// Copies rank 0's buffers (batch norm's running statistics) to every rank. Each
    /// rank otherwise keeps the statistics of its own share of the data.
    pub fn broadcast_buffers(&self) {
        if self.world.size() == 1 {
            return;
        }
        for (_, buffer) in &self.model_buffers {
            buffer.assign(&broadcast_tensor(&self.world, buffer));
        }
    }

    /// Writes the reduced sums of every bucket, divided by the number of ranks, into
    /// `grads`: one upload per bucket, each gradient a view of it.
    fn write_back(&mut self, grads: &mut Gradients, device: &Device) {
        let scale = 1.0 / self.world.size() as f32;
        for bucket in &mut self.buckets {
            for v in &mut bucket.recv {
                *v *= scale;
            }
            let all = Tensor::from_slice(&bucket.recv, &[bucket.len], device);
            for (&p, &offset) in bucket.members.iter().zip(&bucket.offsets) {
                let param = &self.params[p];
                let shape: Vec<isize> = param.shape().iter().map(|&d| d as isize).collect();
                grads.insert(param, all.narrow(0, offset, param.numel()).reshape(&shape));
            }
        }
    }
}

impl DataParallel for DistributedDataParallel {
    fn rank(&self) -> usize {
        self.world.rank()
    }

    fn world_size(&self) -> usize {
        self.world.size()
    }

    fn backward(&mut self, loss: &Tensor) -> Gradients {
        DistributedDataParallel::backward(self, loss)
    }

    /// Blocking, one bucket after another: for gradients summed over accumulated batches.
    fn average_gradients(&mut self, grads: &mut Gradients) {
        if self.world.size() == 1 {
            return;
        }
        let Some(device) = self.params.first().map(|p| p.device().clone()) else { return };
        for bucket in &mut self.buckets {
            let members: Vec<Option<Tensor>> =
                bucket.members.iter().map(|&p| grads.get(&self.params[p]).cloned()).collect();
            bucket.send = stage(&self.params, &bucket.members, &members, &device);
            bucket.recv.resize(bucket.len, 0.0);
            self.world.all_reduce_sum(&bucket.send, &mut bucket.recv);
        }
        self.write_back(grads, &device);
    }

    fn sum(&mut self, values: &mut [f64]) {
        self.world.sum_f64(values);
    }

    fn gather(&mut self, value: u64) -> Vec<u64> {
        self.world.gather_u64(value)
    }
}

/// The buckets of a step while their all-reduces run.
struct InFlight<'b, 'a, S: mpi::request::Scope<'a>> {
    /// Each bucket's buffers, lent to its request once it starts.
    slots: Vec<Option<&'b mut Bucket>>,
    requests: Vec<Option<mpi::request::Request<'a, [f32], S>>>,
    /// The next bucket to start (buckets start in order).
    next: usize,
    /// The oldest request that may still be running.
    oldest: usize,
}

impl<'b: 'a, 'a, S: mpi::request::Scope<'a> + Copy> InFlight<'b, 'a, S> {
    fn new(buckets: &'b mut [Bucket]) -> Self {
        let n = buckets.len();
        InFlight {
            slots: buckets.iter_mut().map(Some).collect(),
            requests: (0..n).map(|_| None).collect(),
            next: 0,
            oldest: 0,
        }
    }

    /// Reads bucket `next`'s gradients back into its staging buffer and starts its
    /// all-reduce.
    fn start(&mut self, world: &World, scope: S, params: &[Tensor], grads: &[Option<Tensor>], device: &Device) {
        let b = self.next;
        let bucket = self.slots[b].take().expect("each bucket starts once");
        bucket.send = stage(params, &bucket.members, grads, device);
        bucket.recv.resize(bucket.len, 0.0);
        let Bucket { send, recv, .. } = bucket;
        let send: &'a [f32] = &send[..];
        let recv: &'a mut [f32] = &mut recv[..];
        self.requests[b] = Some(world.comm().immediate_all_reduce_into(scope, send, recv, SystemOperation::sum()));
        self.next += 1;
    }

    /// Tests the oldest running all-reduce, which is where Open MPI moves it forward.
    fn make_progress(&mut self) {
        while self.oldest < self.next {
            let Some(request) = self.requests[self.oldest].take() else {
                self.oldest += 1;
                continue;
            };
            match request.test() {
                Ok(_) => self.oldest += 1,
                Err(request) => {
                    self.requests[self.oldest] = Some(request);
                    return;
                }
            }
        }
    }

    fn wait_all(&mut self) {
        for request in self.requests.iter_mut().filter_map(Option::take) {
            request.wait_without_status();
        }
    }
}

/// The gradients of a bucket's members, joined on `device` and read back at once (zeros
/// for a member without a gradient).
fn stage(params: &[Tensor], members: &[usize], grads: &[Option<Tensor>], device: &Device) -> Vec<f32> {
    let parts: Vec<Tensor> = members
        .iter()
        .zip(grads)
        .map(|(&p, g)| match g {
            Some(g) => g.reshape(&[-1]),
            None => Tensor::zeros(&[params[p].numel()], device),
        })
        .collect();
    no_grad(|| Tensor::cat(&parts, 0)).to_vec::<f32>()
}

/// Buckets of at most `cap` bytes over `params` taken from the last to the first.
fn plan_buckets(params: &[Tensor], cap: usize) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = Vec::new();
    let mut current = Bucket { members: Vec::new(), offsets: Vec::new(), len: 0, send: Vec::new(), recv: Vec::new() };
    for (i, p) in params.iter().enumerate().rev() {
        if !current.members.is_empty() && 4 * (current.len + p.numel()) > cap {
            buckets.push(std::mem::replace(
                &mut current,
                Bucket { members: Vec::new(), offsets: Vec::new(), len: 0, send: Vec::new(), recv: Vec::new() },
            ));
        }
        current.members.push(i);
        current.offsets.push(current.len);
        current.len += p.numel();
    }
    if !current.members.is_empty() {
        buckets.push(current);
    }
    buckets
}

/// A hash of what must agree across ranks before values are compared: the tensor count,
/// then per tensor its name, shape and dtype.
fn structure_code(name: &str, t: &Tensor) -> u64 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    t.shape().hash(&mut h);
    format!("{:?}", t.dtype()).hash(&mut h);
    h.finish()
}

/// A hash of a tensor's bits.
fn value_code(t: &Tensor) -> u64 {
    let mut h = DefaultHasher::new();
    match t.dtype() {
        DType::F32 => t.to_vec::<f32>().iter().for_each(|v| v.to_bits().hash(&mut h)),
        DType::I32 => t.to_vec::<i32>().hash(&mut h),
        DType::F16 => t.to_vec::<half::f16>().iter().for_each(|v| v.to_bits().hash(&mut h)),
    }
    h.finish()
}

/// The first index at which `codes` differ from rank 0's, agreed by every rank (`None`
/// when they agree everywhere): rank 0's codes are broadcast, each rank finds its first
/// mismatch, and the smallest wins.
fn first_difference(world: &World, codes: &[u64]) -> Option<usize> {
    let mut theirs = codes.to_vec();
    world.broadcast_u64(&mut theirs);
    let mine = codes.iter().zip(&theirs).position(|(a, b)| a != b).map_or(u64::MAX, |i| i as u64);
    let first = world.min_u64(mine);
    (first != u64::MAX).then_some(first as usize)
}

fn check_same_structure(world: &World, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let counts = world.gather_u64(tensors.len() as u64);
    let common = *counts.iter().min().expect("a world has a rank") as usize;
    let codes: Vec<u64> = tensors[..common].iter().map(|(n, t)| structure_code(n, t)).collect();
    let first = first_difference(world, &codes);
    if let Some(i) = first {
        let (name, t) = tensors[i];
        return Err(Error::Distributed(format!(
            "DistributedDataParallel: the model differs between ranks at tensor {i} (its name, shape or dtype): here, \
             on rank {2}, it is {name} {0:?} {1:?}; every rank must build the same model",
            t.shape(),
            t.dtype(),
            world.rank()
        )));
    }
    if counts.iter().any(|&c| c != counts[0]) {
        let extra = tensors.get(common).map_or_else(|| "none".to_string(), |(n, _)| n.to_string());
        return Err(Error::Distributed(format!(
            "DistributedDataParallel: the model differs between ranks: parameters and buffers by rank {counts:?}; \
             the first tensor not on every rank is number {common} (here: {extra}); every rank must build the same model"
        )));
    }
    Ok(())
}

fn check_same_values(world: &World, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let codes: Vec<u64> = tensors.iter().map(|(_, t)| value_code(t)).collect();
    if let Some(i) = first_difference(world, &codes) {
        return Err(Error::Distributed(format!(
            "DistributedDataParallel: {} holds other values on some rank than on rank 0 (checksums differ); seed every \
             rank alike before building the model (wgrad::manual_seed), or pass \
             DdpOptions::allow_differing_values(true) to copy rank 0's values",
            tensors[i].0
        )));
    }
    Ok(())
}

/// Rank 0's value of `t` on every rank, on `t`'s device.
fn broadcast_tensor(world: &World, t: &Tensor) -> Tensor {
    let (shape, device) = (t.shape().to_vec(), t.device());
    match t.dtype() {
        DType::F32 => {
            let mut v = t.to_vec::<f32>();
            world.broadcast_f32(&mut v);
            Tensor::from_slice(&v, &shape, device)
        }
        DType::I32 => {
            let mut v = t.to_vec::<i32>();
            world.broadcast_i32(&mut v);
            Tensor::from_slice(&v, &shape, device)
        }
        DType::F16 => {
            let mut bits: Vec<u16> = t.to_vec::<half::f16>().iter().map(|v| v.to_bits()).collect();
            world.broadcast_u16(&mut bits);
            let v: Vec<half::f16> = bits.into_iter().map(half::f16::from_bits).collect();
            Tensor::from_slice(&v, &shape, device)
        }
    }
}

/// Copies rank 0's parameters and buffers into `model` on every rank.
fn broadcast_state(world: &World, model: &dyn Module, state: &StateDict) -> Result<()> {
    if world.size() == 1 {
        return Ok(());
    }
    let received: StateDict = state.iter().map(|(name, t)| (name.to_string(), broadcast_tensor(world, t))).collect();
    model.load_state_dict(&received, true)?;
    Ok(())
}
