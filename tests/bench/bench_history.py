"""Big histories: peak memory and seconds of `joulelab runs` and `joulelab export --all` at 500
and 5,000 runs, side by side in one run. Target: memory at 5,000 within 1.5x of memory at 500.

The runs are synthesised, not trained: each is a copy of one of the golden logs
(tests/golden/logs) under a new id, with its start time moved so the listing has an order.

    python tests/bench/bench_history.py [--sizes 500 5000] [--formats csv parquet]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "logs"


def synthesise(logs: Path, n: int) -> None:
    sources = sorted(p for p in GOLDEN.iterdir() if p.is_dir())
    files = {src: {f.name: f.read_text() for f in src.iterdir()} for src in sources}
    logs.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = sources[i % len(sources)]
        run_id = f"bench-{i:05d}"
        started = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(1_700_000_000 + 60 * i))
        out = logs / run_id
        out.mkdir()
        for name, text in files[src].items():
            if name in ("run.json", "summary.json"):
                data = json.loads(text)
                data["run_id"], data["started"] = run_id, started
                text = json.dumps(data, indent=2)
            elif name == "events.jsonl":
                text = text.replace(f'"run":"{src.name}"', f'"run":"{run_id}"')
            (out / name).write_text(text)


def measure(args: list[str], logs: Path, cwd: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `joulelab` command in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args, "--logs", str(logs)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"joulelab {' '.join(args)} failed: {err.strip()[-500:]}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--formats", nargs="+", default=["csv", "parquet"])
    args = parser.parse_args()
    commands = [("runs", ["runs"])] + [
        (f"export --all {f}", ["export", "--all", "--format", f, "-o", "OUT"]) for f in args.formats
    ]
    results: dict[str, dict[int, tuple[float, float]]] = {name: {} for name, _ in commands}
    with tempfile.TemporaryDirectory(prefix="joulelab-bench-") as tmp:
        for n in args.sizes:
            logs = Path(tmp) / f"logs-{n}"
            t0 = time.perf_counter()
            synthesise(logs, n)
            print(f"synthesised {n} runs in {time.perf_counter() - t0:.1f} s", flush=True)
            for name, cmd in commands:
                out = Path(tmp) / f"export-{n}"
                cmd = [str(out) if c == "OUT" else c for c in cmd]
                results[name][n] = measure(cmd, logs, Path(tmp))
                shutil.rmtree(out, ignore_errors=True)
                s, mb = results[name][n]
                print(f"  {name:<22} {n:>6} runs: {s:6.2f} s  peak {mb:7.1f} MB", flush=True)
            shutil.rmtree(logs)
    small, big = min(args.sizes), max(args.sizes)
    print(
        f"\n{'command':<22} {'s @' + str(small):>9} {'s @' + str(big):>9} {'MB @' + str(small):>10} "
        f"{'MB @' + str(big):>10} {'MB ratio':>9}  target <= 1.5x"
    )
    ok = True
    for name, by_n in results.items():
        (s1, m1), (s2, m2) = by_n[small], by_n[big]
        ratio = m2 / m1
        ok &= ratio <= 1.5
        print(f"{name:<22} {s1:9.2f} {s2:9.2f} {m1:10.1f} {m2:10.1f} {ratio:8.2f}x  {'ok' if ratio <= 1.5 else 'OVER'}")
    print("memory target met" if ok else "memory target NOT met")


if __name__ == "__main__":
    main()
