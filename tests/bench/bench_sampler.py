"""What metering costs training: step time with the sampler off and at 10, 50 and 100 Hz.

    python tests/bench/bench_sampler.py [--steps 200] [--repeats 6]

Trains the same small network (engine.worker.models.build_network "small" on random (N, 6, 128) windows,
24 classes) for the same number of steps in every configuration. Configurations are interleaved
and their order rotates every repeat (off,10,50,100 / 10,50,100,off / ...), so drift in the
machine's speed falls on all of them alike; each rate is compared with the "off" run of the same
repeat and the median of those paired ratios is reported. Target: <= 1.01 at 10 Hz.

Then the cost of one read() of every meter this machine has, and of RAPL on a fake powercap
tree (labelled fake: a tmpfs/disk file is not sysfs, but the parsing and wrap arithmetic are the
same). Not a pytest test (the name does not match test_*.py): timings are printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from engine.worker.meters import discover, meter_name  # noqa: E402
from engine.worker.meters.contention import open_contention  # noqa: E402
from engine.worker.meters.rapl import open_rapl  # noqa: E402
from engine.worker.meters.sampler import Sampler  # noqa: E402

# (label, rate); None: sampler off. "off again" is an A/A control: its ratio to "off" is the
# noise floor of this machine, against which the sampler's ratios are to be read.
CONFIGS = (("off", None), ("off again", None), ("10 Hz", 10.0), ("50 Hz", 50.0), ("100 Hz", 100.0))


def small_network() -> tuple[nn.Module, str]:
    try:
        from engine.worker.models import build_network

        return build_network((6, 128), "small", 24), "engine.worker.models.build_network((6, 128), 'small', 24)"
    except Exception as exc:  # the models module changed: fall back to an equivalent net
        net = nn.Sequential(
            nn.Conv1d(6, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(16, 16, 5, padding=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(16, 32),
            nn.ReLU(),
            nn.Linear(32, 24),
        )
        return net, f"fallback 2-conv net ({type(exc).__name__}: {exc})"


class Trainer:
    def __init__(self, batch: int, n: int = 4096) -> None:
        torch.manual_seed(0)
        self.x = torch.randn(n, 6, 128)
        self.y = torch.randint(0, 24, (n,))
        self.net, self.net_desc = small_network()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.loss = nn.CrossEntropyLoss()
        self.batch = batch
        self.i = 0

    def steps(self, count: int) -> float:
        """Train `count` steps; seconds per step."""
        self.net.train()
        t0 = time.perf_counter()
        for _ in range(count):
            j = self.i % (len(self.x) // self.batch) * self.batch
            self.i += 1
            xb, yb = self.x[j : j + self.batch], self.y[j : j + self.batch]
            self.opt.zero_grad(set_to_none=True)
            self.loss(self.net(xb), yb).backward()
            self.opt.step()
        return (time.perf_counter() - t0) / count


def run_once(trainer: Trainer, steps: int, hz: float | None) -> tuple[float, int]:
    """Seconds per step, and the number of samples the sampler took."""
    if hz is None:
        return trainer.steps(steps), 0
    meters, _ = discover(os.getpid())
    taken = 0

    def count(_domains, _machine):
        nonlocal taken
        taken += 1

    sampler = Sampler(meters, hz, on_sample=count, contention=open_contention(os.getpid()))
    sampler.start()
    try:
        per_step = trainer.steps(steps)
    finally:
        sampler.stop()
    return per_step, taken


def read_cost_us(meter, reads: int = 2000) -> float:
    meter.read()
    times = []
    for _ in range(reads):
        t0 = time.perf_counter()
        meter.read()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def fake_rapl_tree(base: Path) -> Path:
    from tests.fakes.powercap import intel_server

    return intel_server(base, sockets=2).root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=150, help="training steps per run")
    ap.add_argument("--repeats", type=int, default=10, help="interleaved repeats of every configuration")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="torch threads (default: one fewer than the CPUs, so the sampler thread has room)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    trainer = Trainer(args.batch)
    meters, missing = discover(os.getpid())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; network: {trainer.net_desc}"
    )
    print("meters: " + ", ".join(f"{meter_name(m)} ({', '.join(d.method for d in m.domains)})" for m in meters))
    for m in missing:
        print(f"  not used: {m.meter}: {m.reason}")
    for m in meters:
        m.close()

    trainer.steps(max(20, args.steps // 4))  # warm-up: allocator, threads, caches
    labels = [label for label, _ in CONFIGS]
    runs: dict[str, list[float]] = {label: [] for label in labels}
    samples: dict[str, list[int]] = {label: [] for label in labels}
    ratios: dict[str, list[float]] = {label: [] for label in labels[1:]}
    for rep in range(args.repeats):
        k = rep % len(CONFIGS)
        this: dict[str, float] = {}
        for label, hz in CONFIGS[k:] + CONFIGS[:k]:
            per_step, taken = run_once(trainer, args.steps, hz)
            this[label] = per_step
            runs[label].append(per_step)
            samples[label].append(taken)
        for label in ratios:
            ratios[label].append(this[label] / this["off"])

    print(f"\nstep time, {args.steps} steps x {args.repeats} interleaved repeats (batch {args.batch}):")
    print(f"  {'sampler':<10} {'ms/step':>9} {'samples/run':>12} {'ratio vs off':>13} {'(quartiles)':>17}")
    print(f"  {'off':<10} {statistics.median(runs['off']) * 1e3:>9.3f} {0:>12}")
    for label, rs in ratios.items():
        q1, _, q3 = statistics.quantiles(rs, n=4) if len(rs) > 1 else (rs[0], rs[0], rs[0])
        print(
            f"  {label:<10} {statistics.median(runs[label]) * 1e3:>9.3f} "
            f"{statistics.median(samples[label]):>12.0f} {statistics.median(rs):>13.4f} "
            f"{f'({q1:.4f}..{q3:.4f})':>17}"
        )
    verdict = "meets" if statistics.median(ratios["10 Hz"]) <= 1.01 else "MISSES"
    print(f"  10 Hz {verdict} the target ratio <= 1.01 (read it against the A/A 'off again' row)")

    print("\ncost of one read() (median of 2000):")
    meters, _ = discover(os.getpid())
    total_us = 0.0
    for m in meters:
        cost = read_cost_us(m)
        total_us += cost
        print(f"  {meter_name(m):<22} {cost:>8.1f} us  ({len(m.domains)} domains)")
        m.close()
    share = ", ".join(f"{hz:g} Hz {hz * total_us / 1e4:.3f} %" for _, hz in CONFIGS if hz)
    print(f"  the sampler's reads take, of one core: {share}")
    with tempfile.TemporaryDirectory() as tmp:
        fake = open_rapl(fake_rapl_tree(Path(tmp)))
        print(
            f"  {'rapl (FAKE tree)':<22} {read_cost_us(fake):>8.1f} us  ({len(fake.domains)} domains: "
            f"{', '.join(d.name for d in fake.domains)})"
        )


if __name__ == "__main__":
    main()
