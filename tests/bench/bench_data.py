"""Benchmark: data preparation from the CSVs (cold) versus from the prepared-data cache (cached).

    python tests/bench/bench_data.py [--data-dir ../shared/data] [--repeat 3]

For MotionSense wlk_7 and ExtraSensory (10 users) from ../shared/data it times engine.worker.data.prepare
(find files, parse or load from cache, window, group, standardise) with an empty cache (cold: parse
the CSVs and write the entry) and with a warm one (cached), side by side in one process, and prints
medians and the ratio. "load" is the loader's own parse-or-read time (info["load_s"]); "prepare"
is the whole preparation a run pays. Every cold run gets a fresh cache folder; the OS page cache is
warm for both (the first, untimed, pass reads the files once), so the ratio is CPU work saved, not
disk speed. Not collected by pytest (no test_ prefix).
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
sys.path.insert(0, str(REPO))

from engine.core.spec import RunSpec  # noqa: E402
from engine.worker.data.prepare import prepare  # noqa: E402


def timed(spec: RunSpec) -> tuple[float, float, str]:
    started = time.perf_counter()
    data = prepare(spec)
    return time.perf_counter() - started, data.info["load_s"], data.info["cache"]


def bench(spec: RunSpec, repeat: int) -> dict:
    cold, cold_load, warm, warm_load = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="joulelab-bench-") as tmp:
        os.environ["JOULELAB_CACHE"] = str(Path(tmp) / "warmup")
        timed(spec)  # untimed: imports, page cache
        for i in range(repeat):
            os.environ["JOULELAB_CACHE"] = str(Path(tmp) / f"cold-{i}")
            total, load, status = timed(spec)
            assert status == "miss", status
            cold.append(total)
            cold_load.append(load)
        for _ in range(repeat * 2):
            total, load, status = timed(spec)  # the last cold folder now holds the entry
            assert status == "hit", status
            warm.append(total)
            warm_load.append(load)
        entry = next((Path(tmp) / f"cold-{repeat - 1}" / "prepared").glob("*.npz"))
        size = entry.stat().st_size
    return {
        "cold": statistics.median(cold),
        "cached": statistics.median(warm),
        "cold_load": statistics.median(cold_load),
        "cached_load": statistics.median(warm_load),
        "entry_mb": size / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not (Path(args.data_dir) / "motionsense").is_dir():
        sys.exit(f"bench_data: no real data at {args.data_dir}; pass --data-dir")
    cases = [
        ("motionsense wlk_7 (24 subj, 158,645 rows)", RunSpec(dataset="motionsense", data_dir=args.data_dir)),
        ("extrasensory (10 users, 44,065 rows)", RunSpec(dataset="extrasensory", data_dir=args.data_dir)),
    ]
    print(f"{'dataset':<42} {'':>8} {'cold s':>8} {'cached s':>9} {'ratio':>7}")
    for name, spec in cases:
        r = bench(spec, args.repeat)
        for what, cold, cached in (("prepare", r["cold"], r["cached"]), ("load", r["cold_load"], r["cached_load"])):
            print(f"{name:<42} {what:>8} {cold:8.3f} {cached:9.3f} {cold / cached:6.1f}x")
            name = ""
        print(f"{'':<42} {'entry':>8} {r['entry_mb']:7.1f} MB")
    print(f"(medians of {args.repeat} cold and {2 * args.repeat} cached runs, one process, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
