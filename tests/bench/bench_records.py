"""Benchmark: reading logs as typed records versus as plain JSON, side by side in one process.

    python tests/bench/bench_records.py [--events 200000] [--repeat 5]

Events: the golden runs' events.jsonl lines, repeated to --events lines, decoded with
engine.core.events.decode_event (msgspec, validated, typed) against json.loads (a dict, unvalidated),
each then asked for a sample's joules the way its readers do (attribute vs key). Summaries: every
golden summary.json decoded with engine.store.run_log.load_summary (typed, validated, schema 1 mapped to 2)
against json.loads. Prints medians and the typed/plain ratio (below 1: typed is faster). Not
collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from engine.core.events import Sample, decode_event  # noqa: E402
from engine.store.run_log import load_summary  # noqa: E402

GOLDEN = REPO / "tests" / "golden" / "logs"


def _median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--summaries", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    lines = [line for p in sorted(GOLDEN.glob("*/events.jsonl")) for line in p.read_bytes().splitlines()]
    lines = (lines * (args.events // len(lines) + 1))[: args.events]

    def typed_events() -> float:
        return sum(e.domains["cpu"]["j"] for e in map(decode_event, lines) if isinstance(e, Sample))

    def plain_events() -> float:
        return sum(e["domains"]["cpu"]["j"] for e in map(json.loads, lines) if e["type"] == "sample")

    assert typed_events() == plain_events()  # the same numbers either way
    runs = sorted(p for p in GOLDEN.iterdir() if (p / "summary.json").exists())
    runs = (runs * (args.summaries // len(runs) + 1))[: args.summaries]

    def typed_summaries() -> float:
        return sum(s.phases["train"].total.net_j for s in map(load_summary, runs) if s is not None)

    def plain_summaries() -> float:
        return sum(json.loads((r / "summary.json").read_text())["phases"]["train"]["total"]["net_j"] for r in runs)

    assert typed_summaries() == plain_summaries()
    print(f"{'what':<34}{'typed':>12}{'plain':>12}{'typed/plain':>13}")
    for what, n, typed, plain in (
        (f"events ({args.events} lines)", args.events, typed_events, plain_events),
        (f"summaries ({args.summaries} files)", args.summaries, typed_summaries, plain_summaries),
    ):
        t, p = _median_s(typed, args.repeat), _median_s(plain, args.repeat)
        print(f"{what:<34}{1e6 * t / n:>9.2f} us{1e6 * p / n:>9.2f} us{t / p:>12.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
