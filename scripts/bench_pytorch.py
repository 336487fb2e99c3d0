#!/usr/bin/env python3
"""The benchmark workloads of examples/common/workloads.rs, timed in PyTorch (and NumPy for
the matmul), so that wgrad's `examples/bench.rs` figures can be set beside them in one run.

    python3 scripts/bench_pytorch.py                 # CPU, every workload
    python3 scripts/bench_pytorch.py --device cuda   # the same on a CUDA GPU
    python3 scripts/bench_pytorch.py --workloads matmul --sizes 4096 --device cuda
    python3 scripts/bench_pytorch.py --workloads hmatmul --sizes 4096 --device cuda   # f16

Each workload is the same work as wgrad's: the same shapes, the backward passes taking the
same gradients (conv: input and weight; LSTM: input and every weight), the training steps
the same models (Keras MNIST CNN, 784-128-10 MLP, LSTM(28,128) + Linear on h_n) with
cross-entropy and Adam(lr 1e-3) at batch 64. Figures are the median and minimum of the
timed runs after one warm-up run; every run ends with a device synchronisation. The
thread count is PyTorch's default (all cores) unless --threads is given.
"""

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 64


def keras_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(64 * 3 * 3, 64), nn.ReLU(), nn.Linear(64, 10))


def mlp():
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


class RowLstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 128, batch_first=True)
        self.head = nn.Linear(128, 10)

    def forward(self, rows):
        _, (h_n, _) = self.lstm(rows)
        return self.head(h_n.squeeze(0))


def timed(fn, runs, sync):
    fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def workloads(args, dev):
    """Yields (name, size, work, unit, fn) for the selected families."""
    g = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape, grad=False):
        return torch.randn(*shape, generator=g).to(dev).requires_grad_(grad)

    families = args.workloads.split(",")
    if "matmul" in families:
        for n in args.sizes:
            a, b = randn(n, n), randn(n, n)
            yield "matmul", f"{n}x{n}x{n}", 2.0 * n ** 3, "GFLOP/s", lambda a=a, b=b: a @ b
            if dev.type == "cpu":
                an, bn = a.numpy(), b.numpy()
                yield "numpy matmul", f"{n}x{n}x{n}", 2.0 * n ** 3, "GFLOP/s", lambda an=an, bn=bn: an @ bn
    if "hmatmul" in families:
        # f16 operands; PyTorch accumulates in f32 and returns f16 (wgrad returns the f32 sums).
        for n in args.sizes:
            a, b = randn(n, n).half(), randn(n, n).half()
            yield "matmul f16", f"{n}x{n}x{n}", 2.0 * n ** 3, "GFLOP/s", lambda a=a, b=b: a @ b
    if "conv" in families:
        for backward in (False, True):
            for cin, cout, hw in ((1, 32, 28), (32, 64, 13)):
                x, w = randn(BATCH, cin, hw, hw, grad=backward), randn(cout, cin, 3, 3, grad=backward)
                b, dy = randn(cout), randn(BATCH, cout, hw - 2, hw - 2)
                flops = 2.0 * BATCH * cout * cin * 9 * (hw - 2) ** 2 * (3 if backward else 1)

                def run(x=x, w=w, b=b, dy=dy, backward=backward):
                    if not backward:
                        with torch.no_grad():
                            return F.conv2d(x, w, b)
                    return torch.autograd.grad(F.conv2d(x, w, b), (x, w), dy)

                pass_ = "fwd+bwd" if backward else "fwd"
                yield f"conv {pass_}", f"{BATCH}x{cin}x{hw}x{hw} k3 ->{cout}", flops, "GFLOP/s", run
    if "lstm" in families:
        for backward in (False, True):
            torch.manual_seed(9)
            lstm = nn.LSTM(28, 128, batch_first=True).to(dev)
            x, dy = randn(BATCH, 28, 28, grad=backward), randn(BATCH, 28, 128)
            flops = 2.0 * BATCH * 28 * 4 * 128 * (28 + 128) * (3 if backward else 1)

            def run(lstm=lstm, x=x, dy=dy, backward=backward):
                if not backward:
                    with torch.no_grad():
                        return lstm(x)[0]
                out = lstm(x)[0]
                return torch.autograd.grad(out, [x, *lstm.parameters()], dy)

            pass_ = "fwd+bwd" if backward else "fwd"
            yield f"lstm {pass_}", f"{BATCH}x28x28 h128", flops, "GFLOP/s", run
    if "step" in families:
        images = randn(BATCH, 1, 28, 28)
        labels = torch.tensor([(i * 7 + 3) % 10 for i in range(BATCH)], device=dev)
        for name, make, inp in (("cnn", keras_cnn, images), ("mlp", mlp, images.reshape(-1, 784)),
                                ("lstm", RowLstm, images.reshape(-1, 28, 28))):
            torch.manual_seed(12)
            model = make().to(dev)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)

            def run(model=model, opt=opt, inp=inp):
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(inp), labels)
                loss.backward()
                opt.step()
                return loss.detach()

            yield f"step {name}", f"batch {BATCH}", float(BATCH), "images/s", run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--workloads", default="matmul,conv,lstm,step")
    parser.add_argument("--sizes", default="256,512,1024,2048", help="matmul sizes n")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        line = f"{torch.cuda.get_device_name()} | CUDA {torch.version.cuda}"
    else:
        line = f"CPU | {platform.machine()} | {torch.get_num_threads()} threads"
    print(f"PyTorch {torch.__version__}, NumPy {np.__version__} | {line}")
    print(f"median and minimum of {args.runs} runs after 1 warm-up run\n")
    print(f"{'workload':<14}{'size':<22}{'median ms':>10}{'min ms':>10}{'rate':>12}  unit")
    rows = []
    for name, size, work, unit, fn in workloads(args, dev):
        median, best = timed(fn, args.runs, sync)
        rate = work / (median * 1e-3) / (1e9 if unit == "GFLOP/s" else 1.0)
        print(f"{name:<14}{size:<22}{median:>10.3f}{best:>10.3f}{rate:>12.2f}  {unit}")
        rows.append(dict(workload=name, size=size, median_ms=median, min_ms=best, rate=rate, unit=unit))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=line, torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
