#!/usr/bin/env bash
# Data-parallel training over MPI gives the parameters of one process with the whole
# batch: `mpirun -np 2` with batch B per rank against one process with batch 2B on the
# same data order, for the MLP, the Keras CNN (no batch norm, no augmentation) and a small
# CNN with batch norm (`bncnn`: `SyncBatchNorm` on the two ranks against `BatchNorm2d` in
# the one process, running statistics compared too), on the CPU backend and on the
# software adapter (lavapipe). `examples/data_parallel.rs` says how
# the data orders line up; `compare` fails when a parameter differs by more than the
# tolerance, relative to the tensor's largest value.
#
# The tolerance, relative to each tensor's largest value, is float32 rounding carried
# through training. The two runs compute the same sums in other orders (each rank's GEMMs
# over B rows and an MPI sum of two partial gradients, against GEMMs over 2B rows), so
# each step's gradients differ by about 1e-7 relative. The MLP's trajectory carries that
# forward without amplifying it (the runs end about 3e-6 apart): tolerance 2e-4. The
# CNN's max-pool and ReLU choices turn such differences, now and then, into another
# gradient path for one element, after which the runs separate further; one process does
# the same between batch 2B and two accumulated batches of B. At the CNN's small step
# here (SGD lr 1e-3, momentum 0.9) the runs end 1e-7 to 1.4e-4 apart over six data
# orders: tolerance 1e-3. A wrong average (a sum, a missing rank, a shifted share) moves
# parameters by 1e-2 or more: the control runs at the end (one process with batch B only)
# must fail the same comparisons.
#
# bncnn: the batch statistics come from two all-reduced partial sums on one side and one
# sum over 2B samples on the other. On the CPU the runs end 5.9e-7 to 3.1e-5 apart over
# six data orders (lr 1e-2); on lavapipe, where the one process's batch-2B convolutions
# round otherwise, its max-pools and ReLUs separate the runs as the CNN's do, so the
# software run takes lr 1e-3 (2.3e-6 to 4.0e-4 over three orders). Tolerance 1e-3, as
# the CNN's. The controls: batch B in one process, and the two ranks with per-rank
# statistics (`--local-norm`, BatchNorm2d under DDP), which must both fail.
#
# Needs Open MPI (libopenmpi-dev openmpi-bin) and libclang-dev to build. Usage:
#   scripts/data_parallel_check.sh [cargo build flags, e.g. --release]
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
for flag in "$@"; do
    [ "$flag" = --release ] && profile=release
done
cargo build --features mpi --example data_parallel "$@"
ex="target/$profile/examples/data_parallel"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Two ranks on a two-core machine: one thread each (the CPU backend's pool size).
export RAYON_NUM_THREADS=1
# The single process runs under `mpirun -np 1` too: started without mpirun, Open MPI's
# singleton start left it with the whole thread pool (2 threads) despite RAYON_NUM_THREADS=1.
base=(mpirun --oversubscribe -x RAYON_NUM_THREADS)
[ "$(id -u)" -eq 0 ] && base+=(--allow-run-as-root)
mpirun1=("${base[@]}" -np 1)
mpirun=("${base[@]}" -np 2)

# model, device, steps, batch per rank, SGD learning rate and momentum, tolerance
runs=(
    "mlp cpu 250 16 0.05 0.9 2e-4"
    "cnn cpu 200 8 0.001 0.9 1e-3"
    "bncnn cpu 100 8 0.01 0.9 1e-3"
    "mlp software 200 16 0.05 0.9 2e-4"
    "cnn software 200 4 0.001 0.9 1e-3"
    "bncnn software 50 4 0.001 0.9 1e-3"
)
for run in "${runs[@]}"; do
    read -r model device steps batch lr momentum tolerance <<<"$run"
    echo "== $model on $device: $steps steps, 2 ranks with batch $batch against 1 process with batch $((2 * batch))"
    started=$SECONDS
    common=(train --model "$model" --device "$device" --steps "$steps" --lr "$lr" --momentum "$momentum" --shuffle 1)
    "${mpirun[@]}" "$ex" "${common[@]}" --batch "$batch" --out "$out/two.safetensors"
    "${mpirun1[@]}" "$ex" "${common[@]}" --batch "$((2 * batch))" --out "$out/one.safetensors"
    "$ex" compare "$out/two.safetensors" "$out/one.safetensors" --tolerance "$tolerance"
    echo "($((SECONDS - started)) s)"
done

echo "== control: one process with batch B instead of 2B is another run, and the comparison says so"
for model in mlp cnn bncnn; do
    read -r _ _ steps batch lr momentum tolerance <<<"$(printf '%s\n' "${runs[@]}" | grep "^$model cpu")"
    common=(train --model "$model" --device cpu --steps "$steps" --lr "$lr" --momentum "$momentum" --shuffle 1)
    "${mpirun1[@]}" "$ex" "${common[@]}" --batch "$batch" --out "$out/half.safetensors"
    "${mpirun1[@]}" "$ex" "${common[@]}" --batch "$((2 * batch))" --out "$out/one.safetensors"
    "$ex" compare "$out/half.safetensors" "$out/one.safetensors" --tolerance "$tolerance" --expect-differ
done
echo "== control: bncnn with per-rank batch statistics (BatchNorm2d under DDP) is another run"
# one.safetensors is still the batch-2B bncnn run of the loop above.
read -r _ _ steps batch lr momentum tolerance <<<"$(printf '%s\n' "${runs[@]}" | grep "^bncnn cpu")"
common=(train --model bncnn --device cpu --steps "$steps" --lr "$lr" --momentum "$momentum" --shuffle 1)
"${mpirun[@]}" "$ex" "${common[@]}" --batch "$batch" --local-norm --out "$out/local.safetensors"
"$ex" compare "$out/local.safetensors" "$out/one.safetensors" --tolerance "$tolerance" --expect-differ

echo "== bad input: every rank stops with the error, none waits for the others"
expect_failure() {
    local fault=$1 message=$2 log="$out/fault.log"
    if timeout 120 "${mpirun[@]}" "$ex" train --model mlp --device cpu --steps 5 --batch 4 --fault "$fault" >"$log" 2>&1; then
        echo "--fault $fault trained without an error"
        return 1
    fi
    # Two ranks, two messages: both stopped (a hang would have hit the timeout, status 124).
    if [ "$(grep -c "$message" "$log")" -ne 2 ]; then
        cat "$log"
        echo "--fault $fault: expected '$message' from both ranks"
        return 1
    fi
    grep -m1 "$message" "$log"
}
expect_failure differing-init "0.weight holds other values on some rank than on rank 0"
expect_failure differing-model "the model differs between ranks at tensor 0"
expect_failure uneven-batches "disagree on the batches of epoch 1: rank 0 has 5, rank 1 has 4"
expect_failure unwritable-checkpoint "/dev/null/wgrad-checkpoint"
