"""Runs are first-class wherever they were started (issue 14, items 3 and 4): the quit dialog holds
the plan, a run started by `joulelab run` in another process is followed and can be cancelled from
the lab, and a plan left unfinished is offered and finished."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.core.process import process_started
from engine.orchestrate import plan_files as plans
from engine.orchestrate.worker_process import worker_command
from engine.store.run_log import list_runs
from tests.helpers import REPO
from tests.tui.conftest import counter_ids, fake_command, make_app, press, wait_for
from tui.screens.confirm_quit import ConfirmQuit
from tui.screens.resume_plan import ResumePlan


def plan_files(logs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((logs / plans.PLANS_DIR).glob("*.json"))]


@pytest.mark.slow
async def test_the_quit_dialog_holds_the_plan_and_stop_stops_the_run_going(logs: Path) -> None:
    app = make_app(logs, fake_command("--rate", "20", "--duration", "1.5"))
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "r")
        await wait_for(pilot, lambda: app.current_run is not None, what="the first run")
        await press(pilot, "q")
        assert isinstance(app.screen, ConfirmQuit)
        # The first run ends while the dialog is open: the second does not start.
        await wait_for(
            pilot,
            lambda: app.live.statuses.get(0) == "complete" and app.waiting_to_start,
            what="the plan to wait at the dialog",
        )
        assert app.live.statuses[1] == "queued"
        assert [r.status for r in list_runs(logs)] == ["complete"]
        await press(pilot, "s")  # Stop: nothing is going, the queued run never starts; the lab quits
        await wait_for(pilot, lambda: not app.is_running or app.return_code is not None, what="the lab to quit")
    assert [r.status for r in list_runs(logs)] == ["complete"]
    (record,) = plan_files(logs)
    assert record["state"] == "stopped" and [i["status"] for i in record["items"]] == ["complete", None]


@pytest.mark.slow
async def test_staying_lets_the_held_plan_go_on(logs: Path) -> None:
    app = make_app(logs, fake_command("--rate", "20", "--duration", "1.5"))
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "r")
        await wait_for(pilot, lambda: app.current_run is not None, what="the first run")
        await press(pilot, "q")
        await wait_for(pilot, lambda: app.waiting_to_start, what="the plan to wait at the dialog")
        await press(pilot, "escape")
        await wait_for(pilot, lambda: not app.running, what="the plan to finish")
        assert app.live.statuses == {0: "complete", 1: "complete"}


@pytest.mark.slow
async def test_a_plan_left_running_is_offered_and_finished(logs: Path) -> None:
    # the run left going lasts 6 s: the next session finds it still running, follows it, starts the rest
    command = fake_command("--rate", "20", "--duration", "6")
    first = make_app(logs, command)
    async with first.run_test(size=(100, 30)) as pilot:
        await press(pilot, "r")
        await wait_for(pilot, lambda: first.current_run is not None, what="the first run")
        await press(pilot, "q", "l")  # leave it running and quit: the scratch half has not started
    (record,) = plan_files(logs)
    assert record["state"] == "left"

    second = make_app(logs, command, run_id_factory=counter_ids("later"))  # a new session, new run ids
    async with second.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(second.screen, ResumePlan), what="the offer to finish the plan")
        assert second.screen.description.endswith("0 of 2 runs done, 1 still running, 1 to start")
        await press(pilot, "f")
        await wait_for(pilot, lambda: second.plan is not None and not second.running, 30, "the rest of the plan")
    runs = list_runs(logs)
    assert sorted(r.spec["mode"] for r in runs) == ["scratch", "transfer"]
    assert {r.status for r in runs} == {"complete"}
    (record,) = plan_files(logs)
    assert record["state"] == "finished" and [i["status"] for i in record["items"]] == ["complete", "complete"]
    assert plans.interrupted_plans(logs) == []


@pytest.mark.slow
def test_a_plan_whose_session_dropped_is_interrupted(logs: Path) -> None:
    """No Leave: the lab's process just went away (SSH dropped). Its plan is interrupted."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = plans.record_plan(
        logs,
        "plan-1",
        "t",
        "lab",
        [plans.PlanItem(spec={"run_id": "r1", "mode": "transfer"}, label="a", config="c")],
    )
    data = json.loads(path.read_text())
    data["owner"] = {"pid": int(gone.stdout), "pid_started": 1.0}
    path.write_text(json.dumps(data))
    (found,) = plans.interrupted_plans(logs)
    assert found.total == 1 and [r.index for r in found.remaining] == [0] and not found.remaining[0].follow
    data["owner"] = {"pid": __import__("os").getpid(), "pid_started": process_started(__import__("os").getpid())}
    path.write_text(json.dumps(data))
    assert plans.interrupted_plans(logs) == []  # its owner is alive: not interrupted


LONG_IDLE = """
[preset]
name = "long-idle"
description = "one scratch run whose idle baseline lasts long enough to attach to it"
trials = 1

[matrix]
dataset = ["synthetic"]
size = ["small"]
mode = ["scratch"]
mechanism = ["baseline"]

[settings]
epochs = 1
batch_size = 64
idle_s = 60.0
test_min_s = 0.3
sample_hz = 10.0
synthetic_subjects = 6
synthetic_seconds = 40.0
stride = 32
"""


@pytest.mark.slow
async def test_a_run_started_by_the_cli_is_followed_and_cancelled_from_the_lab(logs: Path, tmp_path: Path) -> None:
    preset = tmp_path / "long-idle.toml"
    preset.write_text(LONG_IDLE)
    joulelab = Path(sys.executable).parent / "joulelab"
    cli = subprocess.Popen(
        [str(joulelab), "run", str(preset), "--logs", str(logs)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        app = make_app(logs, worker_command())
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: plans.running_runs(logs), 60, "the CLI's run to start")
            # followed as the one run of the CLI's recorded plan, noticed without being asked to look
            await wait_for(pilot, lambda: app.running and app.plan.source == "followed", 30, "the lab to attach")
            await wait_for(
                pilot,
                lambda: app.live.states.get(0) and app.live.states[0].phase == "idle",
                60,
                "the run's events, tailed from its log",
            )
            assert app.active_tab == "live"
            await press(pilot, "x")
            await wait_for(pilot, lambda: not app.running, 30, "the cancel")
            assert app.live.statuses[0] == "cancelled"
        assert cli.wait(timeout=30) == 1  # its only run did not complete
        (record,) = list_runs(logs)
        assert record.status == "cancelled"
    finally:
        if cli.poll() is None:
            cli.kill()


@pytest.mark.slow
def test_joulelab_run_resume_finishes_an_interrupted_plan(logs: Path) -> None:
    from tests.helpers import tiny_spec

    spec = tiny_spec(logs, mode="scratch", run_id="resume-0001", config="synthetic/small/scratch/baseline")
    path = plans.record_plan(
        logs,
        "plan-1",
        "tiny scratch",
        "lab",
        [plans.PlanItem(spec=spec, label="scratch · seed 0", config=spec["config"])],
    )
    plans.close_plan(path, "left")
    joulelab = Path(sys.executable).parent / "joulelab"
    done = subprocess.run(
        [str(joulelab), "run", "--resume", "--logs", str(logs)], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming tiny scratch: 0 of 1 runs done" in done.stdout
    (record,) = list_runs(logs)
    assert record.status == "complete" and record.run_id != "resume-0001"  # started afresh, a new id
    (data,) = plan_files(logs)
    assert data["state"] == "finished" and data["items"][0]["status"] == "complete"
    again = subprocess.run(
        [str(joulelab), "run", "--resume", "--logs", str(logs)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and "no interrupted plan" in again.stdout


async def test_a_scan_that_lands_after_the_lab_closed_is_dropped(logs: Path) -> None:
    """A scan thread's result can arrive while the lab exits (its screens already gone): CI once
    failed a test on the IndexError this raised. Delivered through the app's own queue here."""
    from tui.messages import LogsScanned, RunEvents

    app = make_app(logs, fake_command())
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.ready, what="the lab")
    assert not app.screen_stack
    assert app.on_logs_scanned(LogsScanned([], [], list_runs(logs))) is None
    assert app.on_run_events(RunEvents(0, [])) is None


async def test_the_lab_names_a_damaged_plan_file_in_one_line(logs: Path) -> None:
    damaged = logs / plans.PLANS_DIR / "damaged.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text('[{"plan_id": "p"}]')  # a top-level list, not a plan
    app = make_app(logs)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app._notifications, what="a notification")
        (note,) = list(app._notifications)
        assert note.title == "Damaged plan file" and note.severity == "warning"
        assert note.message.startswith(f"plan file {damaged} is damaged: ") and "\n" not in note.message
        assert not isinstance(app.screen, ResumePlan)
