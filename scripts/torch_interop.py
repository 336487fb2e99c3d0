#!/usr/bin/env python3
"""A small PyTorch model whose weights and outputs tests/torch_interop.rs checks wgrad against,
in both directions.

The model, InteropNet, is laid out as a custom model usually is, so that every naming rule
of a PyTorch state dict appears in it: named attributes (`conv`, `bn`, `pool`, `rnn`, `head`),
an `nn.ModuleList` of blocks whose own attributes are named (`blocks.1.norm.weight`), a
two-layer batch-first `nn.LSTM` (`rnn.weight_hh_l1`) and batch norm buffers
(`bn.running_mean`, `bn.num_batches_tracked`, int64). Its forward pass takes two inputs:

    features = cat(mean_hw(pool(relu(bn(conv(image))))), rnn(sequence).h_n[-1])   # [N, 14]
    for block in blocks: features = features + relu(block.norm(block.fc(features)))
    output = head(features)                                                        # [N, 4]

Forward direction (PyTorch writes, wgrad reads). With fixed seeds, the script builds the
model, gives the batch norm and layer norm affine parameters non-default values, runs three
training-mode batches (no gradients) so that the batch norm running statistics and
`num_batches_tracked` (3) are not their defaults, switches to eval mode and writes

    tests/data/torch_interop/state_dict.safetensors   model.state_dict()
    tests/data/torch_interop/io.safetensors           image [2, 3, 8, 8], sequence [2, 5, 4],
                                                      output [2, 4] (eval mode)

Regenerate them (the Rust test then compares against the new files) from the repository root:

    /path/to/python-with-torch scripts/torch_interop.py            # or --out DIR

Reverse direction (wgrad writes, PyTorch reads). The Rust test
`wgrad_checkpoint_loads_in_pytorch` builds the model in wgrad from its own random weights,
runs two training-mode batches, and, once per device (DIR/cpu, and DIR/gpu when there is a
GPU), saves it with `checkpoint::save` as state_dict.safetensors and writes the inputs and
its eval-mode output, in the layout of io.safetensors above, beside it. When the
environment variable WGRAD_TORCH_PYTHON names a Python with torch, the test then runs this
script on each folder itself (without it, it prints that it skipped this step):

    WGRAD_TORCH_PYTHON=/path/to/python-with-torch cargo test --test torch_interop

DIR is a temporary folder, removed afterwards; WGRAD_TORCH_INTEROP_DIR=DIR makes the test
write to DIR and keep it, to run the check by hand:

    WGRAD_TORCH_INTEROP_DIR=/tmp/interop cargo test --test torch_interop wgrad_checkpoint_loads_in_pytorch
    /path/to/python-with-torch scripts/torch_interop.py --check-wgrad /tmp/interop/cpu

The check loads the state dict with `load_state_dict(strict=True)`, requires every tensor's
dtype to equal the dtype of PyTorch's own state dict (float32, and int64 for
`num_batches_tracked`), runs the eval-mode forward pass on the inputs from the file, and
compares with the output wgrad wrote. It prints PASS or FAIL with the largest difference
and exits with status 0 or 1.
"""

import argparse
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from torch import nn

# Shapes: N images of C x H x W, and N sequences of T steps of F features.
N, C, H, W = 2, 3, 8, 8
T, F = 5, 4
CONV_OUT, HIDDEN, NUM_BLOCKS, CLASSES = 6, 8, 2, 4
FEATURES = CONV_OUT + HIDDEN

# float32 against float32 (outputs of order 1): sums in another order, and a GPU's exp and
# tanh, move results by one or two ulp (2.4e-7 measured on the CPU and on lavapipe); a
# batch norm eps of 1e-4 instead of 1e-5 moves them by 4.5e-6, swapping two LSTM gates by
# 7e-3. The same bound as TORCH_TOL in tests/torch_interop.rs.
ATOL, RTOL = 2e-6, 2e-6

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "torch_interop")


class Block(nn.Module):
    """A residual block: features + relu(norm(fc(features)))."""

    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return x + torch.relu(self.norm(self.fc(x)))


class InteropNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(C, CONV_OUT, 3, padding=1)
        self.bn = nn.BatchNorm2d(CONV_OUT)
        self.pool = nn.MaxPool2d(2)
        self.rnn = nn.LSTM(F, HIDDEN, num_layers=2, batch_first=True)
        self.blocks = nn.ModuleList([Block(FEATURES) for _ in range(NUM_BLOCKS)])
        self.head = nn.Linear(FEATURES, CLASSES)

    def forward(self, image, sequence):
        a = self.pool(torch.relu(self.bn(self.conv(image)))).mean(dim=(2, 3))  # [N, CONV_OUT]
        _, (h_n, _) = self.rnn(sequence)  # h_n: [num_layers, N, HIDDEN]
        x = torch.cat([a, h_n[-1]], dim=1)  # [N, FEATURES]
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def build_model():
    """The model with fixed weights and non-default batch norm statistics, in eval mode."""
    torch.manual_seed(0)
    model = InteropNet()
    with torch.no_grad():
        # Default affine parameters (ones and zeros) would hide a swapped weight and bias.
        for norm in [model.bn] + [block.norm for block in model.blocks]:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
        # Three training-mode batches, off-centre and scaled, move the running statistics
        # away from 0 and 1 and count num_batches_tracked up to 3.
        model.train()
        for _ in range(3):
            model(4.0 * torch.randn(4, C, H, W) + 1.0, torch.randn(4, T, F))
    model.eval()
    return model


def fixed_inputs():
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(N, C, H, W, generator=generator)
    sequence = torch.randn(N, T, F, generator=generator)
    return image, sequence


def write_files(out_dir):
    model = build_model()
    image, sequence = fixed_inputs()
    with torch.no_grad():
        output = model(image, sequence)
    os.makedirs(out_dir, exist_ok=True)
    state = {name: t.contiguous() for name, t in model.state_dict().items()}
    save_file(state, os.path.join(out_dir, "state_dict.safetensors"))
    save_file(
        {"image": image, "sequence": sequence, "output": output.contiguous()},
        os.path.join(out_dir, "io.safetensors"),
    )
    print(f"torch {torch.__version__}: wrote {len(state)} tensors and the inputs and output to {out_dir}")
    for name, t in state.items():
        print(f"  {name:28} {str(t.dtype):14} {list(t.shape)}")


def check_wgrad(directory):
    """Loads wgrad's state dict and inputs from `directory` into InteropNet; True on a match."""
    model = InteropNet()
    expected_dtypes = {name: t.dtype for name, t in model.state_dict().items()}
    state = load_file(os.path.join(directory, "state_dict.safetensors"))
    io = load_file(os.path.join(directory, "io.safetensors"))

    problems = []
    for name, t in sorted(state.items()):
        want = expected_dtypes.get(name)
        if want is not None and t.dtype != want:
            problems.append(f"{name} is {t.dtype} in the file, {want} in PyTorch's state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        problems.append(f"load_state_dict(strict=True) failed: {e}")
    if problems:
        print("FAIL: the state dict wgrad wrote does not fit the PyTorch model:")
        for p in problems:
            print(f"  {p}")
        return False
    print(f"loaded {len(state)} tensors with load_state_dict(strict=True); dtypes match PyTorch's")
    print(f"  bn.num_batches_tracked = {model.bn.num_batches_tracked.item()} ({model.bn.num_batches_tracked.dtype})")

    model.eval()
    with torch.no_grad():
        output = model(io["image"], io["sequence"])
    expected = io["output"]
    if output.shape != expected.shape:
        print(f"FAIL: PyTorch's output is {list(output.shape)}, wgrad's {list(expected.shape)}")
        return False
    diff = (output - expected).abs()
    allowed = ATOL + RTOL * expected.abs()
    max_diff = diff.max().item()
    if bool((diff <= allowed).all()):
        print(f"PASS: PyTorch's output matches wgrad's: max |diff| {max_diff:.3g} "
              f"(allowed {ATOL:g} + {RTOL:g}*|wgrad|), {output.numel()} values")
        return True
    worst = int(torch.argmax(diff - allowed))
    print(f"FAIL: PyTorch's output differs from wgrad's: max |diff| {max_diff:.3g}; element {worst}: "
          f"torch {output.flatten()[worst].item()} vs wgrad {expected.flatten()[worst].item()}")
    return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="where to write the files (default: %(default)s)")
    parser.add_argument("--check-wgrad", metavar="DIR",
                        help="check the state_dict.safetensors and io.safetensors that wgrad wrote to DIR")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one summation order, run after run
    if args.check_wgrad:
        sys.exit(0 if check_wgrad(args.check_wgrad) else 1)
    write_files(os.path.normpath(args.out))


if __name__ == "__main__":
    main()
