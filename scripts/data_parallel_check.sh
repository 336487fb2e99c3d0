#!/usr/bin/env bash
# Data-parallel training over MPI gives the parameters of one process with the whole
# batch: `mpirun -np 2` with batch B per rank against one process with batch 2B on the
# same data order, for the MLP and the Keras CNN (no batch norm, no augmentation), on the
# CPU backend and on the software adapter (lavapipe). `examples/data_parallel.rs` says how
# the data orders line up; `compare` fails when a parameter differs by more than the
# tolerance, relative to the tensor's largest value.
#
# Tolerance 2e-4: the two runs compute the same sums in other orders (each rank's batch
# GEMMs over B rows and an MPI sum of two partial gradients, against GEMMs over 2B rows),
# so each gradient differs by float32 rounding, about 1e-7 relative, and SGD carries such
# differences forward without amplifying them much over a few hundred steps: the runs
# here end 1e-6 to 1e-5 apart. A wrong average (a sum, a missing rank, a shifted shard)
# moves parameters by 1e-2 or more; the control run at the end (one process with batch B
# only) must fail the same comparison.
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
mpirun=(mpirun --oversubscribe -np 2 -x RAYON_NUM_THREADS)
[ "$(id -u)" -eq 0 ] && mpirun+=(--allow-run-as-root)

# model, device, steps, batch per rank
runs=(
    "mlp cpu 250 16"
    "cnn cpu 200 8"
    "mlp software 200 16"
    "cnn software 100 4"
)
for run in "${runs[@]}"; do
    read -r model device steps batch <<<"$run"
    echo "== $model on $device: $steps steps, 2 ranks with batch $batch against 1 process with batch $((2 * batch))"
    started=$SECONDS
    "${mpirun[@]}" "$ex" train --model "$model" --device "$device" --steps "$steps" --batch "$batch" \
        --shuffle 1 --out "$out/two.safetensors"
    "$ex" train --model "$model" --device "$device" --steps "$steps" --batch "$((2 * batch))" \
        --shuffle 1 --out "$out/one.safetensors"
    "$ex" compare "$out/two.safetensors" "$out/one.safetensors"
    echo "($((SECONDS - started)) s)"
done

echo "== control: one process with batch 16 is not the same run, and the comparison says so"
"$ex" train --model mlp --device cpu --steps 250 --batch 16 --shuffle 1 --out "$out/half.safetensors"
"$ex" train --model mlp --device cpu --steps 250 --batch 32 --shuffle 1 --out "$out/one.safetensors"
"$ex" compare "$out/half.safetensors" "$out/one.safetensors" --expect-differ
