"""Shared test helpers: tiny specs that train a real network in about a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def tiny_spec(logs: Path, **overrides) -> dict:
    return {**TINY, "logs_dir": str(logs), **overrides}


def run_worker(spec: dict, *, code: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real worker as a subprocess with the spec on stdin, as the runner does."""
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "engine.worker"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        cmd, input=json.dumps(spec), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env
    )


def the_run_dir(logs: Path) -> Path:
    dirs = [p for p in logs.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]
