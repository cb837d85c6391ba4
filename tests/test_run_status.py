"""The one reader of a run's status (engine.store.run_log.run_status), typed, that the plan files
and the Slurm follower read too."""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.core.process import process_started
from engine.orchestrate import plan_files, slurm
from engine.store.run_log import run_status, summary_status, worker_alive


def run_dir(logs: Path, run_id: str, summary: dict | str | None, pid: int | None = None) -> Path:
    path = logs / run_id
    path.mkdir(parents=True)
    manifest = {"run_id": run_id, "spec": {}, "pid": pid, "pid_started": process_started(pid) if pid else None}
    (path / "run.json").write_text(json.dumps(manifest))
    if summary is not None:
        (path / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    return path


def test_the_status_of_a_run_comes_from_its_summary_else_its_worker(tmp_path: Path):
    done = run_dir(tmp_path, "done", {"run_id": "done", "status": "cancelled", "log_schema": 2})
    going = run_dir(tmp_path, "going", None, pid=os.getpid())  # this process plays the live worker
    dead = run_dir(tmp_path, "dead", None, pid=2**22 + 17)
    torn = run_dir(tmp_path, "torn", '{"run_id": "torn", "stat')

    assert run_status(done) == summary_status(done) == "cancelled"
    assert run_status(going) == "running" and worker_alive(going) and summary_status(going) is None
    assert run_status(dead) == "crashed" and not worker_alive(dead)
    assert run_status(torn) == "crashed"  # a damaged summary is not data
    assert run_status(tmp_path / "nothing") is None


def test_plan_files_and_slurm_read_the_same_status(tmp_path: Path):
    run_dir(tmp_path, "done", {"run_id": "done", "status": "complete", "log_schema": 2})
    run_dir(tmp_path, "going", None, pid=os.getpid())
    run_dir(tmp_path, "elsewhere", None, pid=2**22 + 17)  # a Slurm run on a node we cannot see

    assert plan_files.run_status(tmp_path / "done") == "complete"
    assert plan_files.running_runs(tmp_path) == [tmp_path / "going"]
    assert slurm.run_state(tmp_path, "done") == "complete"
    assert slurm.run_state(tmp_path, "elsewhere") == "started"
    assert slurm.run_state(tmp_path, "never") == "not started"
