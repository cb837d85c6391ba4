"""Benchmark: JouleLab's training step against a minimal plain PyTorch loop (target >= 0.95x).

Same network (small and big conv nets on MotionSense-shaped windows), same batches, same
optimizer; JouleLab's `engine.worker.train.fit` runs with its progress callback on, as in a real run.
Pairs are interleaved (plain, joulelab, plain, joulelab, ...) so drift hits both alike; the
printed figure is the median of per-pair throughput ratios.

    python tests/bench/bench_train.py [--repeats 6] [--epochs 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from engine.worker.models import build_network
from engine.worker.train import fit


def plain_loop(net, x, y, epochs, batch_size, lr, seed):
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=3000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.samples, 6, 128)).astype(np.float32)
    y = rng.integers(0, 12, size=args.samples).astype(np.int64)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.samples} samples x {args.epochs} epochs"
    )
    for size in ("small", "big"):
        ratios = []
        for r in range(args.repeats):
            times = {}
            for which in ("plain", "joulelab") if r % 2 == 0 else ("joulelab", "plain"):
                torch.manual_seed(r)
                net = build_network((6, 128), size, 12)
                t0 = time.perf_counter()
                if which == "plain":
                    plain_loop(net, x, y, args.epochs, 64, 1e-3, r)
                else:
                    fit(net, x, y, epochs=args.epochs, batch_size=64, lr=1e-3, seed=r, on_progress=lambda p: None)
                times[which] = time.perf_counter() - t0
            ratios.append(times["plain"] / times["joulelab"])  # throughput of joulelab relative to plain
        print(
            f"{size:5s}: joulelab/plain throughput median {statistics.median(ratios):.3f} "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} pairs)"
        )


if __name__ == "__main__":
    main()
