"""Benchmark: the Python API's overhead on a plain PyTorch training loop (target <= 1.01x).

The same loop (an MLP, the same batches and seed) runs bare and inside `joulelab.run(...)` with
a train phase and one `run.epoch(val_accuracy=...)` per epoch, as a user would write it; the idle
baseline is off (it is time before the loop, not overhead on it). Pairs are interleaved and
counterbalanced (bare then metered, metered then bare, ...) so drift and warm caches hit both
alike; the printed figure is the median of the per-pair ratios of the loop's wall time.

--against-old adds a third arm to every round: the loop metered with the process tree as it was
before it was shared (psutil's scan of every process each second, once for the model meter and
once again for the contention probe), so the old and the new cost are measured side by side in one
run. The rounds rotate the arms' order. The spread printed is the ratios' interquartile range: the
machine's noise, which more --repeats narrow.

    python tests/bench/bench_api.py [--repeats 8] [--epochs 3] [--against-old]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from unittest import mock

import torch
from torch import nn

import joulelab
from engine.worker.meters import contention
from engine.worker.meters.model import ProcessTreeCpuTime


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


@contextlib.contextmanager
def old_process_tree() -> Iterator[None]:
    """The process tree as it was: psutil's scan every second, one tree per user (not shared)."""
    with (
        mock.patch.object(ProcessTreeCpuTime, "RESCAN_S", 1.0),
        mock.patch.object(ProcessTreeCpuTime, "_descendants", lambda self: list(self._root.children(recursive=True))),
        mock.patch(
            "engine.worker.phase_meter.open_contention", lambda pid=None, tree=None: contention.open_contention(pid)
        ),
    ):
        yield


def metered(epochs: int, seed: int, logs: str) -> float:
    with joulelab.run("bench", logs=logs, idle_s=0) as run, run.phase("train"):
        return loop(epochs, seed, run)


def metered_old(epochs: int, seed: int, logs: str) -> float:
    with old_process_tree():
        return metered(epochs, seed, logs)


def spread(ratios: list[float]) -> str:
    if len(ratios) < 4:
        return "too few rounds for a spread"
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return f"IQR {q1:.3f}-{q3:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--against-old", action="store_true", help="also meter with the old, unshared process tree")
    args = parser.parse_args()
    torch.set_num_threads(1)
    arms: dict[str, Callable[[int, int, str], float]] = {
        "bare": lambda epochs, seed, logs: loop(epochs, seed),
        "metered": metered,
    }
    if args.against_old:
        arms["metered-old"] = metered_old
    names = list(arms)
    times: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as logs:
        loop(1, 0)  # warm the allocator and kernels once
        for i in range(args.repeats):
            # counterbalanced: the order rotates, and reverses every other round, so whichever runs
            # later in a round (warmer caches) is each arm in turn
            order = names[i % len(names) :] + names[: i % len(names)]
            if (i // len(names)) % 2:
                order.reverse()
            for name in order:
                times[name].append(arms[name](args.epochs, i, logs))
    for name in names:
        print(f"loop {name:<12} median {statistics.median(times[name]):.3f} s")
    for name in names[1:]:
        ratios = [m / b for m, b in zip(times[name], times["bare"])]
        print(
            f"{name} / bare: {statistics.median(ratios):.4f}x ({spread(ratios)}; target <= 1.01x; "
            f"{args.repeats} interleaved rounds)"
        )
    if args.against_old:
        ratios = [n / o for n, o in zip(times["metered"], times["metered-old"])]
        print(f"metered / metered-old: {statistics.median(ratios):.4f}x ({spread(ratios)})")


if __name__ == "__main__":
    main()
