"""Every plan is recorded in LOGS/.plans/, whoever starts it (PlanRunner records it): a headless
`joulelab run` leaves its plan with each run marked, and a headless session that goes away (SSH
dropped: the process is killed) leaves a plan that `joulelab run --resume` finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.orchestrate import plan_files
from engine.store.run_log import list_runs
from tests.helpers import REPO, TINY

pytestmark = pytest.mark.slow
runner = CliRunner()


def scratch_preset(tmp_path: Path, trials: int) -> Path:
    settings = "\n".join(f"{k} = {json.dumps(v)}" for k, v in TINY.items() if k not in ("dataset", "size"))
    path = tmp_path / "two.toml"
    path.write_text(
        f"[preset]\nname = 'two'\ntrials = {trials}\n[matrix]\nmode = ['scratch']\n[settings]\n{settings}\n"
    )
    return path


def plans_in(logs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((logs / plan_files.PLANS_DIR).glob("*.json"))]


def test_a_headless_run_records_its_plan_and_marks_each_run(tmp_path):
    logs = tmp_path / "logs"
    result = runner.invoke(app, ["run", str(scratch_preset(tmp_path, 2)), "--logs", str(logs), "--format", "json"])
    assert result.exit_code == 0, result.output
    (plan,) = plans_in(logs)
    assert plan["state"] == "finished" and plan["source"] == "cli" and plan["title"] == "preset two: 2 runs"
    assert [i["status"] for i in plan["items"]] == ["complete", "complete"]
    ran = [r["run_id"] for r in json.loads(result.stdout)["runs"]]
    assert [i["run_id"] for i in plan["items"]] == ran
    assert [i["label"] for i in plan["items"]] == ["scratch · seed 0", "scratch · seed 1"]
    assert plan["plan_id"] == ran[0]
    assert plan_files.interrupted_plans(logs) == []


def test_a_headless_plan_cut_short_is_finished_by_run_resume(tmp_path):
    logs = tmp_path / "logs"
    cli = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(scratch_preset(tmp_path, 2)), "--logs", str(logs)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (plans := plans_in(logs)) or plans[0]["items"][0]["status"] != "complete":
            assert cli.poll() is None and time.monotonic() < deadline, "the first run did not complete"
            time.sleep(0.05)
    finally:
        cli.send_signal(signal.SIGKILL)  # the session goes away; a worker it started goes on alone
        cli.wait()
    (interrupted,) = plan_files.interrupted_plans(logs)
    assert interrupted.done == 1 and interrupted.total == 2
    result = runner.invoke(app, ["run", "--resume", "--logs", str(logs)])
    assert result.exit_code == 0, result.output
    assert "resuming preset two: 2 runs: 1 of 2 runs done" in result.output
    (plan,) = plans_in(logs)
    assert plan["state"] == "finished" and [i["status"] for i in plan["items"]] == ["complete", "complete"]
    # the second trial was followed (its worker outlived the session) or started afresh
    assert {r.spec["seed"] for r in list_runs(logs) if r.status == "complete"} == {0, 1}
    assert plan_files.interrupted_plans(logs) == []
