"""The device check (run by check.sh on a machine with an NVIDIA GPU; not a pytest test).

Runs a few configurations of presets/gpu.toml with short settings, one worker at a time, and
prints per phase: NVML's energy-counter joules, the integrated polled-power joules over the same
phase and their difference, RAPL package/DRAM joules where powercap is readable, and the GPU's
share of the run's measured energy. Fails (exit 1) when

- counter and polled disagree by more than 10 % on a phase longer than 5 s, or
- any GPU energy is labelled modelled, or the run's GPU was not metered at all, or
- no phase was longer than 5 s (the agreement would be untested).

Exit 2: nothing to check here (no CUDA GPU for torch, the project not importable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from engine.core.records import EnergyValue, RunSummary  # noqa: E402  (light: msgspec only, no torch)
from engine.store.run_log import load_summary  # noqa: E402

MAX_DISAGREEMENT = 0.10
LONG_PHASE_S = 5.0
BUDGET_S = 200.0  # start no run after this
DEADLINE_S = 280.0  # a run still going then is stopped, so the verdict prints before check.sh's 295 s
# Short settings: two epochs, idle and test phases just over LONG_PHASE_S, so each run has phases
# the 10 % rule applies to. The source network is trained here (its pretrain phase is metered).
SETTINGS = {
    "epochs": 2,
    "pretrain_epochs": 2,
    "idle_s": 6.0,
    "test_min_s": 6.0,
    "cooldown_s": 5.0,
    "reuse_source": False,
}
# The wide network (training dominates) in fp32 and amp, transfer and scratch; then the study's own.
CONFIGS = [
    "synthetic/big-x16/scratch/baseline",
    "synthetic/big-x16/transfer/baseline",
    "synthetic/big-x16/scratch/amp",
    "synthetic/big-x16/transfer/amp",
    "synthetic/big/scratch/baseline",
]


def phase_rows(summary: RunSummary) -> tuple[list[dict], list[str]]:
    """Per phase what the check prints, and the failures found (empty: this run passes)."""
    rows, failures = [], []
    device = summary.device or {}
    if not any(m.kind == "gpu" for m in summary.meters):
        failures.append(f"{summary.config}: the GPU was not metered ({device.get('not_metered') or 'no NVML domain'})")
    for phase, record in summary.phases.items():
        energy = record.energy
        for name, e in energy.items():
            if e.kind in ("gpu", "cross-check") and e.source == "modelled":
                failures.append(f"{summary.config} {phase}: {name} is modelled")
        both = next(iter(record.nvml_agreement.values()), None)
        rapl = [e for e in energy.values() if e.method.startswith("rapl:")]
        gpu_j = sum(e.gross_j for e in energy.values() if e.kind == "gpu")
        total = record.total.gross_j
        row = {
            "phase": phase,
            "duration_s": record.duration_s,
            "counter_j": both.counter_j if both else None,
            "polled_j": both.polled_j if both else None,
            "diff_rel": both.diff_rel if both else None,
            "rapl_package_j": sum(e.gross_j for e in rapl if e.kind == "cpu") if rapl else None,
            "rapl_dram_j": sum(e.gross_j for e in rapl if e.kind == "dram") if rapl else None,
            "gpu_share": gpu_j / total if total > 0 else None,
            "cpu_source": _cpu_source(energy),
            "contended": any(g.contended for g in record.gpu_contention.values()),
        }
        rows.append(row)
        if (
            both
            and record.duration_s > LONG_PHASE_S
            and both.diff_rel is not None
            and abs(both.diff_rel) > MAX_DISAGREEMENT
        ):
            failures.append(
                f"{summary.config} {phase}: counter {both.counter_j:.1f} J vs polled "
                f"{both.polled_j:.1f} J ({both.diff_rel:+.1%}) over {record.duration_s:.1f} s"
            )
    return rows, failures


def _cpu_source(energy: dict[str, EnergyValue]) -> str:
    sources = {e.source for e in energy.values() if e.kind in ("cpu", "dram")}
    return "/".join(sorted(sources)) or "-"


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_run(summary: RunSummary, rows: list[dict]) -> None:
    d = summary.device or {}
    print(
        f"\n== {summary.config}  ({summary.status}, {summary.precision}, {d.get('name')}, "
        f"{d.get('uuid')}, driver {d.get('driver')}, CUDA {d.get('cuda')}, cuDNN {d.get('cudnn')}, "
        f"limit {d.get('power_limit_w')} W, clocks {d.get('clocks')})"
    )
    thermal = summary.thermal or {}
    print(
        f"   started warm: {summary.started_warm}  idle before {thermal.get('idle_before')}  "
        f"after {thermal.get('idle_after')}"
    )
    print(
        f"   {'phase':<9}{'s':>7}{'counter J':>12}{'polled J':>12}{'diff':>8}{'RAPL pkg J':>12}"
        f"{'RAPL dram J':>12}{'GPU share':>10}  cpu source  other GPU procs"
    )
    for r in rows:
        print(
            f"   {r['phase']:<9}{r['duration_s']:>7.2f}"
            f"{_fmt(r['counter_j'], '.1f'):>12}{_fmt(r['polled_j'], '.1f'):>12}"
            f"{_fmt(r['diff_rel'], '+.1%'):>8}{_fmt(r['rapl_package_j'], '.1f'):>12}{_fmt(r['rapl_dram_j'], '.1f'):>12}"
            f"{_fmt(r['gpu_share'], '.0%'):>10}  {r['cpu_source']:<11} {'yes' if r['contended'] else 'no'}"
        )


def main() -> int:
    try:
        import torch

        from engine.core.spec import new_run_id
        from engine.orchestrate import presets
    except ImportError as exc:
        print(f"device check: cannot import the project ({exc}); run `pip install -e .` with a CUDA torch first")
        return 2
    if not torch.cuda.is_available():
        why = "a CPU build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but it sees no GPU"
        print(f"device check: torch {torch.__version__} is {why}: no CUDA GPU to check here")
        return 2
    logs = Path(tempfile.mkdtemp(prefix="joulelab-device-check-"))
    os.environ.setdefault("JOULELAB_CACHE", str(logs / "cache"))
    preset = presets.load("gpu", {**SETTINGS, "logs_dir": str(logs)})
    start = time.monotonic()
    failures, longest, ran = [], 0.0, 0
    for key in CONFIGS:
        if time.monotonic() - start > BUDGET_S:
            print(f"\n(time budget spent: {key} and later not run)")
            break
        spec = replace(preset.specs[key], run_id=new_run_id())
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "engine.worker"],
                input=json.dumps(spec.to_dict()),
                text=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=REPO,
                timeout=DEADLINE_S - (time.monotonic() - start),
            )
        except subprocess.TimeoutExpired:
            failures.append(f"{key}: still running at {DEADLINE_S:g} s, stopped (see {logs / spec.run_id})")
            break
        summary = load_summary(logs / spec.run_id)
        if proc.returncode != 0 or summary is None:
            last = proc.stderr.strip().splitlines()[-1:] or ["no stderr"]
            failures.append(f"{key}: worker exit {proc.returncode}: {(summary.error if summary else None) or last[0]}")
            continue
        ran += 1
        rows, problems = phase_rows(summary)
        print_run(summary, rows)
        failures += problems
        longest = max([longest] + [r["duration_s"] for r in rows if r["counter_j"] is not None])
    if ran and longest <= LONG_PHASE_S:
        failures.append(f"no phase with both NVML methods lasted over {LONG_PHASE_S:g} s: the agreement is untested")
    print(f"\nlogs: {logs}  ({ran} runs, {time.monotonic() - start:.0f} s)")
    if failures:
        print("DEVICE CHECK FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(
        f"DEVICE CHECK PASSED: counter and polled within {MAX_DISAGREEMENT:.0%} on every phase over "
        f"{LONG_PHASE_S:g} s; no GPU energy modelled"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
