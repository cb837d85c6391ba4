"""The headless CLI under the signals servers, schedulers and dropped sessions send: SIGTERM does
what Ctrl-C does (the run cancelled, its partial energy kept, one line, exit 143); SIGHUP leaves
the run going to its end and the rest of the plan to `joulelab run --resume` (exit 129).
A real CLI subprocess, real workers, real signals."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest

from engine.core.errors import EXIT_HANGUP, EXIT_TERMINATED
from engine.orchestrate import plan_files
from engine.store.run_log import list_runs, load_run, run_dirs
from tests.helpers import LONG, preset_file, start_cli, training_worker, wait_until

pytestmark = pytest.mark.slow  # the real CLI and its workers, in subprocesses


def plan_in(logs: Path) -> dict:
    (path,) = (logs / plan_files.PLANS_DIR).glob("*.json")
    return json.loads(path.read_text())


def gone(worker: psutil.Process) -> bool:
    return not psutil.pid_exists(worker.pid) or worker.status() == psutil.STATUS_ZOMBIE


def test_sigterm_cancels_the_run_keeps_its_partial_energy_and_exits_143(tmp_path):
    logs = tmp_path / "logs"
    proc = start_cli("run", str(preset_file(tmp_path, **LONG)), "--trials", "2", "--logs", str(logs))
    worker = training_worker(logs)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_TERMINATED, err
    said = [line for line in err.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("terminated: run ") and "partial log is kept" in said[0], err
    wait_until(lambda: gone(worker), timeout=5, what="the worker to be gone")
    (run_dir,) = run_dirs(logs)  # the plan's second run never started
    record = load_run(run_dir)
    assert record.status == "cancelled"
    train = record.summary.phases["train"]
    assert train.partial is True and train.total.gross_j > 0
    plan = plan_in(logs)
    assert plan["state"] == "stopped" and [i["status"] for i in plan["items"]] == ["cancelled", None]


def test_sighup_leaves_the_run_finishing_and_the_plan_to_resume(tmp_path):
    logs = tmp_path / "logs"
    # long enough that the worker is still training when the CLI has gone (seconds after the
    # hangup), short enough that the left run and the resumed one finish soon
    preset = preset_file(tmp_path, epochs=250, synthetic_seconds=60.0)
    proc = start_cli("run", str(preset), "--trials", "2", "--logs", str(logs))
    worker = training_worker(logs)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_HANGUP, err
    said = [line for line in err.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("hangup: the run going now finishes on its own"), err
    assert f"joulelab run --resume --logs {logs}" in said[0] and "Traceback" not in err
    assert not gone(worker), "the worker must outlive the CLI"
    assert plan_in(logs)["state"] == "left"
    wait_until(lambda: gone(worker), timeout=120, what="the left run to finish")
    (first,) = list_runs(logs)
    assert first.status == "complete"  # it ran to its end with nobody reading
    (interrupted,) = plan_files.interrupted_plans(logs)
    assert (interrupted.done, interrupted.total) == (1, 2)

    resume = start_cli("run", "--resume", "--logs", str(logs))
    out, err = resume.communicate(timeout=180)
    assert resume.returncode == 0, err
    assert "resuming preset p: 2 runs: 1 of 2 runs done" in out
    plan = plan_in(logs)
    assert plan["state"] == "finished" and [i["status"] for i in plan["items"]] == ["complete", "complete"]
    assert sorted(r.spec["seed"] for r in list_runs(logs) if r.status == "complete") == [0, 1]
