"""Benchmark: the Python API's overhead on a plain PyTorch training loop (target <= 1.01x).

The same loop (an MLP, the same batches and seed) runs bare and inside `joulelab.run(...)` with
a train phase and one `run.epoch(val_accuracy=...)` per epoch, as a user would write it; the idle
baseline is off (it is time before the loop, not overhead on it). Pairs are interleaved and
counterbalanced (bare then metered, metered then bare, ...) so drift and warm caches hit both
alike; the printed figures are the medians of the per-pair ratios of the loop's wall time and of
the process's CPU time over the loop (all threads, so the sampler's work is in it).

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
import threading
import time
from collections.abc import Callable, Iterator
from unittest import mock

import torch
from torch import nn

import joulelab
from engine.worker.meters import contention
from engine.worker.meters.model import ProcessTreeCpuTime


def loop(epochs: int, seed: int, run=None) -> tuple[float, float]:
    """The loop's wall time and the process's CPU time over it (every thread: the sampler's too)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(32768, 64, generator=g), torch.randint(0, 10, (32768,), generator=g)
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
        if run is not None:
            run.epoch(val_accuracy=0.5)
    return time.perf_counter() - started, time.process_time() - cpu_started


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


SAMPLER_SHARE: list[float] = []  # per metered loop: the sampler thread's CPU time / the loop's wall time


def sampler_cpu_s() -> float:
    """CPU seconds the meters' sampler thread has used (its own thread clock, ns resolution)."""
    (thread,) = [t for t in threading.enumerate() if t.name == "joulelab-sampler"]
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def metered(epochs: int, seed: int, logs: str) -> tuple[float, float]:
    with joulelab.run("bench", logs=logs, idle_s=0) as run, run.phase("train"):
        before = sampler_cpu_s()
        wall, cpu_s = loop(epochs, seed, run)
        SAMPLER_SHARE.append((sampler_cpu_s() - before) / wall)
        return wall, cpu_s


def metered_old(epochs: int, seed: int, logs: str) -> tuple[float, float]:
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
    arms: dict[str, Callable[[int, int, str], tuple[float, float]]] = {
        "bare": lambda epochs, seed, logs: loop(epochs, seed),
        "metered": metered,
    }
    if args.against_old:
        arms["metered-old"] = metered_old
    share: dict[str, list[float]] = {"metered": [], "metered-old": []}
    names = list(arms)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as logs:
        loop(1, 0)  # warm the allocator and kernels once
        for i in range(args.repeats):
            # counterbalanced: the order rotates, and reverses every other round, so whichever runs
            # later in a round (warmer caches) is each arm in turn
            order = names[i % len(names) :] + names[: i % len(names)]
            if (i // len(names)) % 2:
                order.reverse()
            for name in order:
                shares = len(SAMPLER_SHARE)
                wall, cpu_s = arms[name](args.epochs, i, logs)
                if name in share:
                    share[name].extend(SAMPLER_SHARE[shares:])
                times[name].append(wall)
                cpu[name].append(cpu_s)
    for name in names:
        print(
            f"loop {name:<12} median {statistics.median(times[name]):.3f} s wall, "
            f"{statistics.median(cpu[name]):.3f} s CPU"
        )
    # The sampler thread's own CPU time is the metering's cost, free of the noise other processes
    # put in the loop's times: at most this fraction of the loop's time, even if it took a core
    # away from the loop (on a machine with a spare core it takes none)
    new = share["metered"]
    print(
        f"sampler thread CPU / loop wall: median {statistics.median(new) * 100:.3f} % "
        f"(max {max(new) * 100:.3f} %; target <= 1 %)"
    )
    if args.against_old:
        print(f"  with the old process tree: median {statistics.median(share['metered-old']) * 100:.3f} %")
    # Wall time is what a user waits; CPU time (every thread of the process, the sampler's too) is
    # what the metering costs in core-seconds, and it is far less noisy on a shared machine.
    for what, table in (("wall", times), ("CPU", cpu)):
        for name in names[1:]:
            ratios = [m / b for m, b in zip(table[name], table["bare"])]
            print(
                f"{what}: {name} / bare: {statistics.median(ratios):.4f}x ({spread(ratios)}; target <= 1.01x; "
                f"{args.repeats} interleaved rounds)"
            )
        if args.against_old:
            ratios = [n / o for n, o in zip(table["metered"], table["metered-old"])]
            print(f"{what}: metered / metered-old: {statistics.median(ratios):.4f}x ({spread(ratios)})")


if __name__ == "__main__":
    main()
