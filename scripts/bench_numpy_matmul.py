"""NumPy (OpenBLAS) single-precision matmul throughput, the CPU reference for wgrad's W1.

Prints one line per size: the median time of `--runs` products of two random n x n f32
matrices and GFLOP/s = 2 n^3 / t, the figure `examples/bench --workloads matmul` reports.
Run it beside wgrad's benchmark on the same machine with the same thread count
(OPENBLAS_NUM_THREADS / RAYON_NUM_THREADS), since the figures only mean something side by side.

    python3 scripts/bench_numpy_matmul.py --sizes 256,512,1024,2048 --runs 11
"""

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024,2048", help="comma-separated square sizes n")
    parser.add_argument("--runs", type=int, default=11, help="timed products per size (the median is reported)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"numpy {np.__version__}")
    print(f"{'n':>6} {'median ms':>10} {'GFLOP/s':>9}")
    for n in (int(s) for s in args.sizes.split(",")):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        out = np.empty((n, n), dtype=np.float32)
        np.matmul(a, b, out=out)  # warm-up: thread pool start and first-touch of `out`
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            times.append(time.perf_counter() - start)
        t = statistics.median(times)
        print(f"{n:>6} {t * 1e3:>10.3f} {2 * n**3 / t / 1e9:>9.1f}")


if __name__ == "__main__":
    main()
