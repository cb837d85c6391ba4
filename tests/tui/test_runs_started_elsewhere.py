"""The lab follows what happens in its logs directory (issue 25): a plan that `joulelab run`
starts in another process while the lab is open is followed run by run as one plan, Results grow
as its runs end, History stays current without `g`, and a run that starts while the lab's own
plan is on screen is announced in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.core.process import process_started
from engine.core.run_files import RUN_JSON, SUMMARY
from engine.orchestrate.logs_watch import LogsChange, LogsWatch
from engine.orchestrate.worker_process import worker_command
from engine.store.run_log import list_runs
from tests.helpers import REPO, TINY, start_cli, tiny_spec
from tests.tui.conftest import fake_command, make_app, press, wait_for

TINY_PAIRED = """
[preset]
name = "tiny-paired"
description = "transfer vs scratch, two trials, as small as a run gets"
trials = 2

[matrix]
dataset = ["synthetic"]
size = ["small"]
mode = ["transfer", "scratch"]
mechanism = ["baseline"]

[settings]
epochs = 1
pretrain_epochs = 1
batch_size = 64
idle_s = 0.3
test_min_s = 0.3
sample_hz = 10.0
synthetic_subjects = 6
synthetic_seconds = 40.0
stride = 32
"""


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.slow
async def test_a_plan_started_by_the_cli_is_followed_run_by_run(logs: Path, tmp_path: Path) -> None:
    preset = tmp_path / "tiny-paired.toml"
    preset.write_text(TINY_PAIRED)
    app = make_app(logs, worker_command())
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.ready, what="the lab")
        await pilot.pause(1.5)  # open on an empty logs directory, before anything runs
        assert not app.running and not logs.exists()
        cli = start_cli("run", str(preset), "--logs", str(logs))
        try:
            headers: dict[int, str] = {}  # plan index -> Live's header while it followed that run
            overlays: dict[int, list[str]] = {}  # plan index -> the runs kept on the graph beside it
            grown: list[int] = []  # how many runs Results compared, each time it changed
            plans = set()
            noticed: list[float] = []

            def watch() -> bool:
                live, plan = app.live, app.plan
                if plan is not None and plan.followed and live.current is not None:
                    plans.add(id(plan))
                    headers.setdefault(live.current, live._title(plan).plain)
                    overlays[live.current] = [label for label, _, _ in live.graph.overlays]
                    if not noticed:
                        noticed.append(time.time())
                summaries = getattr(app.results, "summaries", None)
                if summaries is not None and (not grown or grown[-1] != len(summaries)):
                    grown.append(len(summaries))
                return len(headers) == 4 and not app.running and app.sub_title.startswith("done")

            await wait_for(pilot, watch, 240, "the lab to follow the CLI's four runs")
            assert cli.wait(timeout=60) == 0, cli.stderr.read() if cli.stderr else ""
        finally:
            stop(cli)
        # Noticed within about 2 s of the first run's start (its run.json), though nothing was
        # going when the lab opened (a loose bound: two busy cores).
        first = min(list_runs(logs), key=lambda r: r.started)
        assert noticed[0] - (first.path / RUN_JSON).stat().st_mtime < 4.0
        # One plan followed, each run in turn, and the header says which of the plan's runs it is.
        assert len(plans) == 1
        for k in range(4):
            assert headers[k].startswith(f"run {k + 1}/4 of plan preset tiny-paired: 4 runs"), headers[k]
        # The pair overlay: each scratch run is drawn beside its seed's transfer run.
        labels = [item.label for item in app.plan.items]
        assert overlays == {0: [], 1: [labels[0]], 2: [], 3: [labels[2]]}, overlays
        # The title bar counts the plan; Results grew as runs ended, then compared the whole plan.
        assert app.sub_title == "done: 4/4 complete"
        assert grown[-1] == 4 and [n for n in grown if n] == sorted(n for n in grown if n) and len(grown) >= 3, grown
        assert app.results.comparisons and app.active_tab == "results"
        assert app.results.comparisons[0].verdict  # the transfer vs scratch verdict, as `compare --last`
        # History lists all four (no g pressed at any point).
        await press(pilot, "h")
        await wait_for(pilot, lambda: len(app.history.records) == 4, 10, "History to list the four runs")
        assert {r.status for r in app.history.records} == {"complete"}


def start_fake_run(logs: Path, run_id: str, *args: str) -> subprocess.Popen:
    """A fake worker started from outside the lab (as a user's own script would), its spec on stdin."""
    spec = tiny_spec(logs, run_id=run_id, mode="scratch", config="synthetic/small/scratch/baseline")
    proc = subprocess.Popen(fake_command(*args), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec).encode())
    proc.stdin.close()
    return proc


@pytest.mark.slow
async def test_history_shows_new_runs_and_their_end_without_a_reload(logs: Path) -> None:
    start_fake_run(logs, "20260101-100000-old").wait(timeout=60)  # a run from before, complete
    app = make_app(logs, fake_command())
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.ready, what="the lab")
        await press(pilot, "h", "space")  # History, the old run selected
        history = app.history
        assert [r.run_id for r in history.records] == ["20260101-100000-old"] and history.selected
        proc = start_fake_run(logs, "20260101-100100-new", "--rate", "20", "--duration", "3")
        try:
            await wait_for(
                pilot,
                lambda: [(r.run_id, r.status) for r in history.records][:1] == [("20260101-100100-new", "running")],
                10,
                "the new run, running, at the top of History",
            )
            # The selection is kept, and the cursor stays on the run it was on.
            assert history.selected == {"20260101-100000-old"}
            assert history.highlighted is not None and history.highlighted.run_id == "20260101-100000-old"
            # Live follows it in the background: the lab does not leave the tab the user is on.
            assert app.active_tab == "history"
            await wait_for(
                pilot,
                lambda: history.records[0].status == "complete",
                30,
                "History to show the new run complete",
            )
            assert history.selected == {"20260101-100000-old"} and history.highlighted.run_id == "20260101-100000-old"
        finally:
            stop(proc)


@pytest.mark.slow
async def test_a_run_started_while_the_labs_own_is_on_screen_is_announced(logs: Path) -> None:
    app = make_app(logs, fake_command("--rate", "20", "--duration", "6"))
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "r")
        await wait_for(pilot, lambda: app.current_run is not None, what="the lab's own run")
        proc = start_fake_run(logs, "20260101-100200-other", "--rate", "20", "--duration", "2")
        try:
            await wait_for(
                pilot,
                lambda: any("another run started: 20260101-100200-other" in m[3] for m in app.messages),
                10,
                "the one-line notice",
            )
            (notice,) = [m[3] for m in app.messages if "another run started" in m[3]]
            assert "\n" not in notice and "h shows it in History" in notice
            assert app.plan is not None and app.plan.source == "lab" and app.live.current == 0  # still the lab's own
        finally:
            stop(proc)
            app.action_cancel_run()
            await wait_for(pilot, lambda: not app.running, 30, "the lab's run to stop")


def write_run(logs: Path, run_id: str, pid: int) -> Path:
    path = logs / run_id
    path.mkdir(parents=True)
    manifest = {"run_id": run_id, "spec": {**TINY, "run_id": run_id}, "pid": pid, "pid_started": process_started(pid)}
    (path / RUN_JSON).write_text(json.dumps(manifest))
    return path


def test_the_watch_reports_runs_that_start_and_end_from_the_listing(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    watch = LogsWatch(logs)
    assert watch.poll() is None  # no logs directory yet: nothing, and no error
    ended = write_run(logs, "20260101-000000-done", os.getpid())
    (ended / SUMMARY).write_text("{}")
    assert watch.poll() == LogsChange(appeared=("20260101-000000-done",))  # there, but not going
    going = write_run(logs, "20260101-000001-going", os.getpid())
    assert watch.poll() == LogsChange(started=("20260101-000001-going",), appeared=("20260101-000001-going",))
    assert watch.poll() is None  # nothing new: the listing is the same, the run still going
    (logs / "20260101-000002-half").mkdir()  # its worker has not written run.json yet
    assert watch.poll() == LogsChange(appeared=("20260101-000002-half",))
    (going / SUMMARY).write_text("{}")
    assert watch.poll() == LogsChange(ended=("20260101-000001-going",))
    assert watch.going == set() and "20260101-000002-half" in watch.pending


def tmux(socket: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=10).stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_through_tmux_at_80x24_a_cli_plan_is_followed(logs: Path, tmp_path: Path) -> None:
    """The first test as a person over SSH sees it: the real `joulelab` in an 80x24 tmux pane."""
    preset = tmp_path / "tiny-paired.toml"
    preset.write_text(TINY_PAIRED)
    socket = f"joulelab-test-{os.getpid()}"
    joulelab = Path(sys.executable).parent / "joulelab"
    env = f"cd {REPO} && TERM=xterm-256color exec {joulelab} --logs {logs}"
    tmux(socket, "new-session", "-d", "-x", "80", "-y", "24", "-s", "lab", env)
    cli = None
    try:
        deadline = time.monotonic() + 60
        while "Lab" not in tmux(socket, "capture-pane", "-p", "-t", "lab") and time.monotonic() < deadline:
            time.sleep(0.3)
        time.sleep(1.5)  # open on an empty logs directory
        cli = start_cli("run", str(preset), "--logs", str(logs))
        seen: set[int] = set()
        screen = ""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            screen = tmux(socket, "capture-pane", "-p", "-t", "lab")
            seen |= {k for k in range(1, 5) if f"run {k}/4 of plan" in screen}
            if "Results: preset tiny-paired" in screen:
                break
            time.sleep(0.3)
        # Each run followed in turn, then the plan's comparison (at 24 rows the title bar is hidden).
        assert seen == {1, 2, 3, 4}, screen
        assert "Results: preset tiny-paired: 4 runs" in screen and "Transfer vs scratch (paired by seed)" in screen
        tmux(socket, "send-keys", "-t", "lab", "h")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            screen = tmux(socket, "capture-pane", "-p", "-t", "lab")
            if "4 runs in" in screen and screen.count("complete") >= 4:
                break
            time.sleep(0.3)
        assert "4 runs in" in screen and screen.count("complete") >= 4, screen
        assert cli.wait(timeout=60) == 0
    finally:
        if cli is not None:
            stop(cli)
        tmux(socket, "kill-server")
