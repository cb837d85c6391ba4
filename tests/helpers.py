"""Shared test helpers: tiny specs that train a real network in about a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "dataset": "synthetic",
    "size": "small",
    "epochs": 1,
    "batch_size": 64,
    "synthetic_subjects": 6,
    "synthetic_seconds": 40.0,
    "stride": 32,
    "idle_s": 0.3,
    "test_min_s": 0.3,
    "sample_hz": 20.0,
}


# Settings for a run that trains long enough to be interrupted, stopped or killed mid-training.
LONG = {"epochs": 200, "synthetic_seconds": 60.0}


def tiny_spec(logs: Path, **overrides) -> dict:
    return {**TINY, "logs_dir": str(logs), **overrides}


def preset_file(tmp_path: Path, **settings) -> Path:
    """A one-configuration preset (synthetic, scratch) with TINY's settings and `settings`."""
    values = {**TINY, **settings}
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items() if k not in ("dataset", "size"))
    path = tmp_path / "p.toml"
    path.write_text(f"# test\n[matrix]\nmode = ['scratch']\n[settings]\n{body}\n")
    return path


def start_cli(*args: str, **popen: Any) -> subprocess.Popen:
    """The real CLI (`python -m engine.cli ARGS`) as a user starts it, stdout and stderr piped;
    `env` adds to the environment, other keywords go to Popen."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **popen.pop("env", {})}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
        **popen,
    )


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll `predicate` until it is true (returned) or `timeout` seconds have passed (failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def training_worker(logs: Path):
    """The worker (a psutil.Process) of the only run in `logs`, once it is training."""
    import psutil

    from engine.store.run_log import list_runs

    def ready():
        runs = list_runs(logs)
        if (
            runs
            and runs[0].last_phase == "train"
            and runs[0].manifest.pid
            and '"type":"progress"' in (runs[0].path / "events.jsonl").read_text()
        ):
            return psutil.Process(runs[0].manifest.pid)
        return None

    return wait_until(ready, what="the worker to start training")


def run_worker(
    spec: dict, *, code: str | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the real worker as a subprocess with the spec on stdin, as the runner does."""
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "engine.worker"]
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        cmd, input=json.dumps(spec), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env
    )


def start_worker(spec: dict, env: dict | None = None, **popen: Any) -> subprocess.Popen:
    """Start the real worker with the spec on stdin, its stream (text) to read as it goes; stderr is
    a pipe unless `popen` says otherwise."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        **{"stderr": subprocess.PIPE, **popen},
    )
    proc.stdin.write(json.dumps(spec))
    proc.stdin.close()
    return proc


def events_in(stream: str) -> list:
    """A worker's stdout (or an events.jsonl's text) as typed events."""
    from engine.core.events import decode_event

    return [decode_event(line) for line in stream.splitlines()]


def the_run_dir(logs: Path) -> Path:
    from engine.store.run_log import run_dirs

    dirs = run_dirs(logs)  # the runs, not the plan record (.plans)
    assert len(dirs) == 1, dirs
    return dirs[0]


GOLDEN_LOGS = REPO / "tests" / "golden" / "logs"


def golden_summary(name: str):
    """A golden log's summary (log schema 1, read as every reader reads it)."""
    from engine.store.run_log import load_summary

    summary = load_summary(GOLDEN_LOGS / name)
    assert summary is not None, name
    return summary


def make_summary(
    config: str,
    seed: int,
    train_j: float,
    accuracy_frac: float,
    *,
    pretrain_j: float | None = None,
    source: str = "modelled",
    j_per_inference: float = 0.001,
    status: str = "complete",
    **fields,
):
    """A complete run's summary built from the records types: train and test phases with their
    totals, and the metrics the statistics read. `fields` set any other RunSummary field."""
    from engine.core.records import Metrics, PerUnitEnergy, PhaseRecord, PhaseTotal, RunSummary

    def phase(net_j: float) -> PhaseRecord:
        return PhaseRecord(duration_s=1.0, total=PhaseTotal(net_j=net_j, gross_j=net_j, source=source))

    phases = {"train": phase(train_j), "test": phase(1.0)}
    if pretrain_j is not None:
        phases["pretrain"] = phase(pretrain_j)
    return RunSummary(
        run_id=fields.pop("run_id", f"{config.replace('/', '-')}-{seed}"),
        status=status,
        config=config,
        synthetic=True,
        spec={"seed": seed},
        phases=phases,
        metrics=Metrics(
            accuracy_frac=accuracy_frac,
            f1_macro_frac=accuracy_frac,
            j_per_inference=PerUnitEnergy(value=j_per_inference, source=source),
        ),
        **fields,
    )
