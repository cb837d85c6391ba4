"""The device check (run by check.sh on a machine with an NVIDIA GPU; not a pytest test).

One prepared call of under 4 minutes, in this order:

1. imports the whole worker side (every module of engine.worker), so a missing package shows in
   one line before anything runs;
2. a short CPU run through the real worker as a smoke test ("smoke run: complete");
3. stops with exit 2 where torch sees no CUDA GPU;
4. runs a few configurations of presets/gpu.toml with short settings, one worker at a time, and
   prints one screen: per phase NVML's energy-counter joules, the integrated polled-power joules over
   the same phase and their difference, the GPU's share of the phase's measured energy, RAPL
   package/DRAM joules where powercap is readable, whether the run started warm, and the other
   processes on the GPU;
5. trains the first configuration's network in a plain CUDA loop (same model, batch size, steps,
   optimiser) and sets its seconds and joules per step beside JouleLab's train phase.

With $OUT set (or --out DIR) the same report is written there as device-check.json, with every run
log as device-check-logs.tar.gz, so a single call brings everything back. Fails (exit 1) when

- counter and polled disagree by more than 10 % on a phase longer than 5 s, or
- any GPU energy is labelled modelled, or the run's GPU was not metered at all, or
- no phase was longer than 5 s (the agreement would be untested), or
- the smoke run or a GPU run did not complete.

Exit 2: nothing to check here (no CUDA GPU for torch, the project not importable).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pkgutil
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from engine.core.records import EnergyValue, RunSummary

# Nothing from the project is imported at module level: import_worker_side() reports a missing
# package in one line.

MAX_DISAGREEMENT = 0.10
LONG_PHASE_S = 5.0
GPU_BUDGET_S = 130.0  # start no GPU run after this (from the check's start)
DEADLINE_S = 215.0  # a run still going then is stopped, so the report prints before check.sh's 235 s
LOOP_RESERVE_S = 25.0  # the plain loop runs only with this much left before the deadline
JSON_NAME = "device-check.json"
ARCHIVE_NAME = "device-check-logs.tar.gz"
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
# The wide network (training dominates) first: its scratch fp32 run is the one the plain loop
# repeats; then transfer, mixed precision, and the study's own width. Later ones may not fit.
CONFIGS = [
    "synthetic/big-x16/scratch/baseline",
    "synthetic/big-x16/transfer/baseline",
    "synthetic/big-x16/scratch/amp",
    "synthetic/big/scratch/baseline",
    "synthetic/big-x16/transfer/amp",
]
LOOP_CONFIG = CONFIGS[0]
# The smoke run: a tiny network for about a second on the CPU, through the real worker.
SMOKE_SPEC = {
    "dataset": "synthetic",
    "size": "small",
    "device": "cpu",
    "epochs": 1,
    "batch_size": 64,
    "synthetic_subjects": 6,
    "synthetic_seconds": 40.0,
    "stride": 32,
    "idle_s": 0.3,
    "test_min_s": 0.3,
}
PLAIN_LOOP_WARMUP_STEPS = 5


def import_worker_side() -> list[str]:
    """Import every module of engine.worker and what this check reads (presets, the log store)."""
    import engine.worker

    names = ["engine.worker"] + [m.name for m in pkgutil.walk_packages(engine.worker.__path__, "engine.worker.")]
    names += ["engine.orchestrate.presets", "engine.store.run_log"]
    for name in names:
        importlib.import_module(name)
    return names


def versions() -> dict[str, str | None]:
    """The interpreter and the packages the worker side runs on, as imported (carried or installed)."""
    from importlib import metadata

    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "numpy", "msgspec", "platformdirs", "pyRAPL", "nvidia-ml-py", "psutil", "pandas"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def run_worker(spec: dict[str, Any], timeout: float) -> tuple[int, str]:
    """The real worker on `spec` (stdin), as the runner starts it: its exit code and last stderr line."""
    proc = subprocess.run(
        [sys.executable, "-m", "engine.worker"],
        input=json.dumps(spec),
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
        timeout=timeout,
    )
    return proc.returncode, (proc.stderr.strip().splitlines()[-1:] or ["no stderr"])[0]


def smoke_run(logs: Path) -> dict[str, Any]:
    """One tiny CPU run through the real worker: does the worker side run here at all?"""
    from engine.core.spec import new_run_id
    from engine.store.run_log import load_summary

    run_id = new_run_id()
    start = time.monotonic()
    code, last = run_worker({**SMOKE_SPEC, "logs_dir": str(logs), "run_id": run_id}, timeout=120)
    summary = load_summary(logs / run_id)
    status = summary.status if summary else "no summary"
    return {
        "run_id": run_id,
        "status": status,
        "exit_code": code,
        "seconds": time.monotonic() - start,
        "error": None if status == "complete" else ((summary.error if summary else None) or last),
    }


def phase_rows(summary: RunSummary) -> tuple[list[dict[str, Any]], list[str]]:
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
        others = [p for g in record.gpu_contention.values() for p in g.other_processes]
        row = {
            "phase": phase,
            "duration_s": record.duration_s,
            "counter_j": both.counter_j if both else None,
            "polled_j": both.polled_j if both else None,
            "diff_j": both.diff_j if both else None,
            "diff_rel": both.diff_rel if both else None,
            "rapl_package_j": sum(e.gross_j for e in rapl if e.kind == "cpu") if rapl else None,
            "rapl_dram_j": sum(e.gross_j for e in rapl if e.kind == "dram") if rapl else None,
            "gpu_share": gpu_j / total if total > 0 else None,
            "cpu_source": _cpu_source(energy),
            "contended": record.gpu_contended,
            "other_processes": [f"{p.get('pid')}:{p.get('name') or '?'}" for p in others],
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


def run_entry(summary: RunSummary, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One GPU run as the report holds it."""
    thermal = summary.thermal or {}
    return {
        "config": summary.config,
        "run_id": summary.run_id,
        "status": summary.status,
        "precision": summary.precision,
        "started_warm": summary.started_warm,
        "why_warm": thermal.get("why_warm"),
        "waited_s": thermal.get("waited_s"),
        "idle_before": thermal.get("idle_before"),
        "idle_after": thermal.get("idle_after"),
        "rows": rows,
    }


def plain_loop(
    net: Any,
    x: Any,
    y: Any,
    *,
    batch_size: int,
    lr: float,
    steps: int,
    energy_j: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """`steps` training steps of `net` on (x, y) as plain PyTorch does them: Adam, cross-entropy,
    a random batch gathered on the device, no metering, no progress, no validation. Time and, with
    `energy_j` (a cumulative joule counter), energy from after a short warm-up to the last step's end."""
    import torch

    def sync() -> None:
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()

    def step() -> None:
        idx = torch.randint(0, len(x), (batch_size,), device=x.device)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x[idx]), y[idx]).backward()
        optimizer.step()

    for _ in range(PLAIN_LOOP_WARMUP_STEPS):
        step()
    sync()
    j0 = energy_j() if energy_j else None
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - t0
    joules = energy_j() - j0 if energy_j and j0 is not None else None
    return {
        "steps": steps,
        "seconds": seconds,
        "s_per_step": seconds / steps,
        "j_per_step": joules / steps if joules is not None else None,
    }


def joulelab_train_step(summary: RunSummary, train_samples: int) -> dict[str, Any]:
    """JouleLab's train phase per step: its seconds and its GPU counter joules over its steps
    (epochs x ceil(samples / batch size), as engine.worker.train.fit runs them). It includes the
    worker's per-epoch validation and progress reads, which the plain loop leaves out."""
    spec = summary.spec
    steps = spec["epochs"] * math.ceil(train_samples / spec["batch_size"])
    train = summary.phases["train"]
    gpu_j = [e.gross_j for e in train.energy.values() if e.kind == "gpu" and e.source == "counter"]
    return {
        "steps": steps,
        "seconds": train.duration_s,
        "s_per_step": train.duration_s / steps,
        "j_per_step": sum(gpu_j) / steps if gpu_j else None,
    }


def loop_comparison(joulelab: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    """JouleLab's train step beside the plain loop's: the ratios (JouleLab / plain)."""

    def ratio(key: str) -> float | None:
        a, b = joulelab.get(key), plain.get(key)
        return a / b if a is not None and b else None

    return {
        "config": LOOP_CONFIG,
        "joulelab": joulelab,
        "plain": plain,
        "time_ratio": ratio("s_per_step"),
        "energy_ratio": ratio("j_per_step"),
    }


def nvml_energy_counter(uuid: str | None) -> Callable[[], float] | None:
    """The GPU's cumulative energy counter in joules (NVML reports mJ), or None where unreadable."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid) if uuid else pynvml.nvmlDeviceGetHandleByIndex(0)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:  # no NVML, no such GPU, no counter on this GPU: the loop is timed only
        return None
    return lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(report: dict[str, Any]) -> str:
    """The one screen check_gpu prints: the device, a row per phase of every run, the plain-loop
    comparison, and the verdict."""
    lines = []
    v = report.get("versions") or {}
    lines.append("== JouleLab device check: " + ", ".join(f"{k} {val}" for k, val in v.items() if val))
    smoke = report.get("smoke")
    if smoke:
        lines.append(
            f"worker side: {report.get('worker_modules')} modules imported; smoke run: {smoke['status']} "
            f"on the CPU in {smoke['seconds']:.1f} s" + (f" ({smoke['error']})" if smoke.get("error") else "")
        )
    d = report.get("device")
    if d:
        lines.append(
            f"GPU: {d.get('name')} {d.get('uuid')}, driver {d.get('driver')}, CUDA {d.get('cuda')}, "
            f"cuDNN {d.get('cudnn')}, limit {d.get('power_limit_w')} W, clocks {d.get('clocks')}"
        )
    runs = report.get("runs") or []
    if runs:
        lines.append(
            f"{'configuration':<36}{'phase':<9}{'s':>7}{'counter J':>11}{'polled J':>10}{'diff J':>8}{'diff':>8}"
            f"{'GPU':>5}{'RAPL pkg':>9}{'dram':>7} {'warm':<5}other procs"
        )
    for run in runs:
        warm = {True: "yes", False: "no"}.get(run["started_warm"], "-")
        name = f"{run['config'].removeprefix('synthetic/')} ({run['precision'] or '-'})"
        if run["status"] != "complete":
            name += f" {run['status']}"
        for r in run["rows"]:
            others = ",".join(r["other_processes"]) or ("yes" if r["contended"] else "none")
            lines.append(
                f"{name[:35]:<36}{r['phase']:<9}{r['duration_s']:>7.2f}"
                f"{_fmt(r['counter_j'], '.1f'):>11}{_fmt(r['polled_j'], '.1f'):>10}{_fmt(r['diff_j'], '+.1f'):>8}"
                f"{_fmt(r['diff_rel'], '+.1%'):>8}{_fmt(r['gpu_share'], '.0%'):>5}"
                f"{_fmt(r['rapl_package_j'], '.1f'):>9}{_fmt(r['rapl_dram_j'], '.1f'):>7} {warm:<5}{others}"
            )
            name = ""
    for run in runs:
        if run["started_warm"]:
            why = "; ".join(run.get("why_warm") or []) or "outside the idle band"
            lines.append(f"started warm: {run['config']}: {why} (waited {run.get('waited_s')} s)")
    for key in report.get("not_run") or []:
        lines.append(f"(not run, out of time: {key})")
    loop = report.get("loop")
    if loop:
        j, p = loop["joulelab"], loop["plain"]
        lines.append(f"train step, {loop['config']} (fp32): JouleLab's train phase vs a plain CUDA loop")
        lines.append(f"  {'':<10}{'steps':>7}{'ms/step':>10}{'J/step':>10}")
        for label, side in (("JouleLab", j), ("plain", p)):
            ms = side["s_per_step"] * 1000
            lines.append(f"  {label:<10}{side['steps']:>7}{ms:>10.2f}{_fmt(side['j_per_step'], '.3f'):>10}")
        lines.append(
            f"  {'ratio':<10}{'':>7}{_fmt(loop['time_ratio'], '.2f'):>10}{_fmt(loop['energy_ratio'], '.2f'):>10}"
            "   (JouleLab / plain; JouleLab's includes its per-epoch validation)"
        )
    failures = report.get("failures") or []
    if report.get("logs"):
        lines.append(f"logs: {report['logs']}  ({len(runs)} GPU runs, {report.get('elapsed_s', 0):.0f} s)")
    if report["exit_code"] == 2:
        lines.append(f"device check: {report['verdict']}")
    elif failures:
        lines.append("DEVICE CHECK FAILED:\n  " + "\n  ".join(failures))
    else:
        lines.append(f"DEVICE CHECK PASSED: {report['verdict']}")
    return "\n".join(lines)


def write_out(out: Path, report: dict[str, Any], logs: Path) -> list[Path]:
    """The report as JSON and every run log as one archive, in `out` (what a device call brings back)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_NAME
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    archive = out / ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(logs, arcname="device-check-logs")
    return [json_path, archive]


def _finish(report: dict[str, Any], logs: Path, out: Path | None, start: float) -> int:
    report["elapsed_s"] = time.monotonic() - start
    print(render(report), flush=True)
    if out is not None:
        written = write_out(out, report, logs)
        print("written: " + ", ".join(f"{p} ({p.stat().st_size // 1024} KiB)" for p in written))
    return int(report["exit_code"])


def _refuse(report: dict[str, Any], verdict: str) -> dict[str, Any]:
    return {**report, "exit_code": 2, "verdict": verdict}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The JouleLab device check (see tests/device/check.sh).")
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT") or None, help="report folder ($OUT)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    logs = Path(tempfile.mkdtemp(prefix="joulelab-device-check-"))
    report: dict[str, Any] = {"versions": versions(), "logs": str(logs), "runs": [], "failures": []}
    try:
        report["worker_modules"] = len(import_worker_side())
    except ImportError as exc:
        how = "install the project, or run tests/device/wheels.sh here and carry .device-wheels"
        return _finish(_refuse(report, f"cannot import the worker side ({exc}); {how}"), logs, args.out, start)

    from engine.core.settings import env_var

    os.environ.setdefault(env_var("cache"), str(logs / "cache"))
    report["smoke"] = smoke = smoke_run(logs / "smoke")
    if smoke["status"] != "complete":
        report["failures"].append(f"smoke run on the CPU: {smoke['status']} ({smoke['error']})")
        return _finish({**report, "exit_code": 1, "verdict": "smoke run failed"}, logs, args.out, start)
    print(f"smoke run: complete ({smoke['seconds']:.1f} s on the CPU)", flush=True)

    import torch

    if not torch.cuda.is_available():
        why = "a CPU build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but it sees no GPU"
        return _finish(
            _refuse(report, f"torch {torch.__version__} is {why}: no CUDA GPU to check here"), logs, args.out, start
        )
    report.update(gpu_runs(logs, start))
    report["exit_code"] = 1 if report["failures"] else 0
    report["verdict"] = (
        "failed"
        if report["failures"]
        else f"counter and polled within {MAX_DISAGREEMENT:.0%} on every phase over {LONG_PHASE_S:g} s; "
        "no GPU energy modelled"
    )
    return _finish(report, logs, args.out, start)


def gpu_runs(logs: Path, start: float) -> dict[str, Any]:
    """The short GPU configurations one worker at a time, then the plain loop beside the first."""
    from engine.core.spec import new_run_id
    from engine.orchestrate import presets
    from engine.store.run_log import load_summary

    preset = presets.load("gpu", {**SETTINGS, "logs_dir": str(logs)})
    runs, failures, not_run = [], [], []
    device, longest, loop_summary = None, 0.0, None
    for key in CONFIGS:
        if time.monotonic() - start > GPU_BUDGET_S:
            not_run.append(key)
            continue
        spec = replace(preset.specs[key], run_id=new_run_id())
        print(f"running {key} ...", flush=True)
        try:
            code, last = run_worker(spec.to_dict(), timeout=DEADLINE_S - (time.monotonic() - start))
        except subprocess.TimeoutExpired:
            failures.append(f"{key}: still running at {DEADLINE_S:g} s, stopped (see {logs / spec.run_id})")
            break
        summary = load_summary(logs / spec.run_id)
        if code != 0 or summary is None:
            failures.append(f"{key}: worker exit {code}: {(summary.error if summary else None) or last}")
            continue
        rows, problems = phase_rows(summary)
        runs.append(run_entry(summary, rows))
        failures += problems
        device = device or summary.device
        longest = max([longest] + [r["duration_s"] for r in rows if r["counter_j"] is not None])
        if key == LOOP_CONFIG and summary.status == "complete":
            loop_summary = summary
    if runs and longest <= LONG_PHASE_S:
        failures.append(f"no phase with both NVML methods lasted over {LONG_PHASE_S:g} s: the agreement is untested")
    loop = None
    if loop_summary is not None and DEADLINE_S - (time.monotonic() - start) > LOOP_RESERVE_S:
        print("plain CUDA loop ...", flush=True)
        loop = run_plain_loop(logs, loop_summary)
    return {"device": device, "runs": runs, "failures": failures, "not_run": not_run, "loop": loop}


def run_plain_loop(logs: Path, summary: RunSummary) -> dict[str, Any]:
    """The plain loop on the same network (size, width, input, classes) as `summary`'s run."""
    import torch

    from engine.worker.models import build_network

    dataset = json.loads((logs / summary.run_id / "run.json").read_text())["dataset"]
    spec = summary.spec
    shape = (len(dataset["channels"]), dataset["window"])
    n, classes = dataset["train_samples"], dataset["target_classes"]
    device = torch.device("cuda")
    torch.manual_seed(spec["seed"])
    net = build_network(shape, spec["size"], classes, width=spec["width"]).to(device)
    x = torch.randn((n, *shape), device=device)
    y = torch.randint(0, classes, (n,), device=device)
    joulelab = joulelab_train_step(summary, n)
    plain = plain_loop(
        net,
        x,
        y,
        batch_size=spec["batch_size"],
        lr=spec["lr"],
        steps=joulelab["steps"],
        energy_j=nvml_energy_counter((summary.device or {}).get("uuid")),
    )
    return loop_comparison(joulelab, plain)


if __name__ == "__main__":
    sys.exit(main())
