"""Benchmark: the Python API's overhead on a plain PyTorch training loop (target <= 1.01x).

The same loop (an MLP, the same batches and seed) runs bare and inside `joulelab.run(...)` with
a train phase and one `run.epoch(val_accuracy=...)` per epoch, as a user would write it; the idle
baseline is off (it is time before the loop, not overhead on it). Pairs are interleaved and
counterbalanced (bare then metered, metered then bare, ...) so drift and warm caches hit both
alike; the printed figure is the median of the per-pair ratios of the loop's wall time.

    python tests/bench/bench_api.py [--repeats 8] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch import nn

import joulelab


def loop(epochs: int, seed: int, run=None) -> float:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(32768, 64, generator=g), torch.randint(0, 10, (32768,), generator=g)
    started = time.perf_counter()
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
        if run is not None:
            run.epoch(val_accuracy=0.5)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ratios, bare_s, metered_s = [], [], []
    with tempfile.TemporaryDirectory() as logs:
        loop(1, 0)  # warm the allocator and kernels once
        for i in range(args.repeats):
            # counterbalanced (AB, BA, ...): whichever runs second in a pair gets warmer caches
            if i % 2:
                with joulelab.run("bench", logs=logs, idle_s=0) as run, run.phase("train"):
                    metered = loop(args.epochs, i, run)
                bare = loop(args.epochs, i)
            else:
                bare = loop(args.epochs, i)
                with joulelab.run("bench", logs=logs, idle_s=0) as run, run.phase("train"):
                    metered = loop(args.epochs, i, run)
            bare_s.append(bare)
            metered_s.append(metered)
            ratios.append(metered / bare)
    print(f"loop bare    median {statistics.median(bare_s):.3f} s")
    print(f"loop metered median {statistics.median(metered_s):.3f} s")
    print(f"metered / bare: {statistics.median(ratios):.3f}x (target <= 1.01x; {args.repeats} interleaved pairs)")


if __name__ == "__main__":
    main()
