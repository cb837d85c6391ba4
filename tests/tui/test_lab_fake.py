"""The lab driven by keys against the fake worker: runs, results, cancel, crash, history, export,
presets and quitting while a run goes. Deterministic and fast: the fake replays a recording."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from engine.core.events import Done, decode_event
from engine.store.run_log import list_runs
from tests.tui.conftest import fake_command, make_app, press, wait_for, wait_settled
from tests.tui.screen_text import screen_text
from tui.screens.confirm_quit import ConfirmQuit
from tui.screens.export_dialog import ExportDialog
from tui.screens.run_detail import RunDetail
from tui.widgets.run_totals import RunTotals


@pytest.mark.slow
async def test_paired_run_shows_live_totals_side_by_side_then_the_comparison(logs: Path) -> None:
    app = make_app(logs)
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "r")
        await wait_settled(pilot, app)
        assert app.active_tab == "results"  # every run complete: the comparison comes up
        text = screen_text(app)
        assert "Transfer vs scratch (paired by seed)" in text
        assert "transfer vs scratch" in text and "Verdict" in text
        assert "transfer used" in app.results.verdict_text
        assert "[energy modelled, not measured]" in app.results.verdict_text
        assert app.results.query_one("#curve-graph").display

        await press(pilot, "v")
        await wait_for(pilot, lambda: app.live.graph.settled, what="the graph")
        totals = app.live.query(RunTotals)
        assert [t.title for t in totals] == ["transfer · seed 0", "scratch · seed 0"]
        assert all(t.status == "complete" for t in totals)
        text = screen_text(app)
        for expected in (
            "pretrain",
            "train",
            "test",
            "idle W",
            "~cpu",
            "~dram",
            "cpu (modelled)",
            "~ modelled: an estimate",
            "net of the idle baseline",
        ):
            assert expected in text, expected
        graph = app.live.graph
        assert [p for _, p in graph.boundaries] == ["idle", "warmup", "train", "test"]  # the scratch run's phases
        assert set(graph.series) == {"cpu", "dram"}
        state = app.live.states[0]
        assert state.rows["pretrain"].final and state.rows["pretrain"].total_net_j > 0
        assert [r.status for r in list_runs(logs)] == ["complete", "complete"]


@pytest.mark.slow
async def test_cancel_stops_the_worker_and_keeps_its_partial_log(logs: Path) -> None:
    app = make_app(logs, fake_command("--hold"))
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "l", "tab", "tab")  # focus moves on; the keys still work
        await press(pilot, "r")
        await wait_for(pilot, lambda: app.live.states.get(0) and app.live.states[0].metrics, what="the result")
        await press(pilot, "x")
        await wait_settled(pilot, app)
        assert app.live.statuses == {0: "cancelled", 1: "not run"}  # the plan stopped there
        assert app.active_tab == "live"
        error = app.live.query_one("#live-error", Static)
        assert error.display and "cancelled" in str(error.render())
        (record,) = list_runs(logs)
        assert record.status == "cancelled"
        assert not app.running and app.sub_title.endswith("(stopped)")


@pytest.mark.slow
async def test_a_crashed_worker_shows_its_error_and_stderr_and_the_app_stays_usable(logs: Path) -> None:
    app = make_app(logs, fake_command("--crash-after", "12"))
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "r")
        await wait_settled(pilot, app)
        error = str(app.live.query_one("#live-error", Static).render())
        assert "crashed" in error and "killed by SIGKILL" in error
        assert "fake worker: simulated crash" in error  # the tail of its stderr.log
        assert app.live.statuses == {0: "crashed", 1: "crashed"}  # one crash does not stop the plan
        assert {r.status for r in list_runs(logs)} == {"crashed"}

        app.worker_command = fake_command()  # the same app runs again
        await press(pilot, "l", "r")
        await wait_settled(pilot, app)
        assert [r.status for r in list_runs(logs)] == ["crashed", "crashed", "complete", "complete"]
        assert app.active_tab == "results"


@pytest.mark.slow
async def test_a_failing_worker_and_a_failing_start_are_visible(logs: Path, tmp_path: Path) -> None:
    app = make_app(logs, fake_command("--fail-after", "8"))
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "r")
        await wait_settled(pilot, app)
        assert "fake worker: simulated failure" in str(app.live.query_one("#live-error", Static).render())
        blocked = tmp_path / "not-a-dir"
        blocked.write_text("")
        app.logs_dir = blocked / "logs"  # cannot be created: the run worker fails to start
        await press(pilot, "r")
        await wait_for(pilot, lambda: not app.running, what="the run worker to fail")
        assert "The run stopped: logs directory" in str(app.live.query_one("#live-error", Static).render())


@pytest.mark.slow
async def test_history_reopens_a_run_compares_and_exports(logs: Path, tmp_path: Path) -> None:
    app = make_app(logs)
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "r")
        await wait_settled(pilot, app)
        app.worker_command = fake_command("--crash-in", "train")
        await press(pilot, "l", "r")
        await wait_settled(pilot, app)

        await press(pilot, "h")
        table = app.history.query_one(DataTable)
        assert table.row_count == 4 and app.focused is table  # newest first
        assert "crashed in" in screen_text(app)
        await press(pilot, "enter")  # the newest run: the crash
        detail = await wait_for(pilot, lambda: isinstance(app.screen, RunDetail) and app.screen, what="details")
        await pilot.pause()
        text = screen_text(app)
        assert "run-0004" in text and "crashed" in text and "fake worker: simulated crash" in text
        assert "train †" in text and "stopped early" in text  # killed: no phase end; what was seen
        await press(pilot, "escape")
        assert not isinstance(app.screen, RunDetail)

        await press(pilot, "down", "down", "space", "down", "space", "m")  # the two complete runs
        assert app.active_tab == "results"
        assert "Compared 2 runs from history" in screen_text(app)
        assert "transfer used" in app.results.verdict_text
        assert detail is not None

        await press(pilot, "h", "e")
        dialog = await wait_for(pilot, lambda: isinstance(app.screen, ExportDialog) and app.screen, what="export")
        out = tmp_path / "export"
        dialog.query_one("#out").value = str(out)
        await pilot.click("#ok")
        await wait_for(pilot, lambda: (out / "runs.csv").exists(), what="the export")
        rows = (out / "runs.csv").read_text().splitlines()
        assert len(rows) == 3 and "energy_source" in rows[0]  # the two selected runs
        assert {"phases.csv", "samples.csv", "curve.csv"} <= {p.name for p in out.iterdir()}


@pytest.mark.slow
async def test_a_preset_runs_from_the_presets_tab(logs: Path, tmp_path: Path) -> None:
    preset = tmp_path / "mini.toml"
    preset.write_text(
        '[preset]\nname = "mini"\ndescription = "two runs"\ntrials = 1\n'
        '[matrix]\nmode = ["transfer", "scratch"]\n[settings]\nepochs = 1\n'
    )
    app = make_app(logs, preset_paths=[preset])
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "p")
        assert "mini  2 runs  duration unknown  two runs" in screen_text(app)  # never run here
        await press(pilot, "enter")
        await wait_settled(pilot, app)
        assert app.active_tab == "results"
        assert "preset mini" in screen_text(app) and "transfer used" in app.results.verdict_text
        assert {r.spec["preset"] for r in list_runs(logs)} == {"mini"}
        # Now it has been run here: its line says how long it took (the two runs' durations).
        took = sum(r.summary.duration_s for r in list_runs(logs))
        await press(pilot, "p")
        from tui import fmt

        await wait_for(
            pilot,
            lambda: f"mini  2 runs  ~{fmt.duration(took)}  two runs" in screen_text(app),
            what="the preset's estimated duration",
        )


async def test_an_unavailable_dataset_says_why_and_is_not_run(logs: Path) -> None:
    app = make_app(logs)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: any(not e.get("found") for e in app.form.entries), what="datasets")
        app.form.query_one("#dataset").value = "motionsense"
        await pilot.pause()
        note = str(app.form.query_one("#dataset-note", Static).render())
        assert "MotionSense not available: no motionsense/ folder in /data." in note
        assert "Get it: https://github.com/mmalekzadeh/motion-sense, into /data/motionsense/" in note
        await press(pilot, "r")
        assert not app.running and not list_runs(logs)
        assert "MotionSense: no motionsense/ folder" in str(app.form.query_one("#lab-error", Static).render())


async def test_without_real_loaders_only_synthetic_is_offered(logs: Path) -> None:
    def broken(data_dir):
        from engine.worker.data import locate
        from tui.app import describe_real_datasets

        saved = locate.describe_datasets
        locate.describe_datasets = lambda d: 1 / 0
        try:
            return describe_real_datasets(data_dir)
        finally:
            locate.describe_datasets = saved

    app = make_app(logs, datasets=broken)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(
            pilot, lambda: app.form.entries[1].get("reason", "").startswith("real loaders"), what="the fallback"
        )
        assert [e["name"] for e in app.form.entries if e["found"]] == ["synthetic"]


@pytest.mark.slow
async def test_bad_numbers_are_refused_with_the_field_named(logs: Path) -> None:
    app = make_app(logs)
    async with app.run_test(size=(100, 30)) as pilot:
        app.form.query_one("#epochs").value = "0"
        await press(pilot, "r")
        assert not app.running
        assert "Epochs: 0 is outside 1 to 10000" in str(app.form.query_one("#lab-error", Static).render())


@pytest.mark.slow
async def test_quit_during_a_run_can_stop_it(logs: Path) -> None:
    app = make_app(logs, fake_command("--hold"))
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "r")
        await wait_for(pilot, lambda: app.current_run is not None, what="the run")
        await press(pilot, "q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="the question")
        assert "Stop run" in screen_text(app) and "Leave running" in screen_text(app)
        await press(pilot, "s")
        await wait_for(pilot, lambda: app.return_code is not None or not app.is_running, what="the exit")
    (record,) = list_runs(logs)
    assert record.status == "cancelled"


@pytest.mark.slow
async def test_quit_during_a_run_can_leave_it_running_to_completion(logs: Path) -> None:
    app = make_app(logs, fake_command("--speed", "0.5"))  # the recording at half speed: ~5 s
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "r")
        await wait_for(pilot, lambda: app.current_run is not None, what="the run")
        await press(pilot, "q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="the question")
        await press(pilot, "l")
    assert app.left_running is not None
    summary = app.left_running / "summary.json"
    deadline = time.monotonic() + 20
    while not summary.exists() and time.monotonic() < deadline:  # the app is gone: plain polling
        await asyncio.sleep(0.1)
    data = json.loads(summary.read_text())
    assert data["status"] == "complete"  # the worker finished on its own, log and all
    events = (app.left_running / "events.jsonl").read_text().splitlines()
    assert isinstance(decode_event(events[-1]), Done)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
async def test_every_action_has_a_key_in_the_footer(logs: Path, size) -> None:
    app = make_app(logs)
    async with app.run_test(size=size) as pilot:

        def footer() -> str:
            return screen_text(app).splitlines()[-1]

        await wait_for(pilot, lambda: "Quit" in footer(), what="the footer")
        for key in ("r Run", "x Cancel", "lvshpn Views", "q Quit"):
            assert key in footer(), (key, footer())
        await press(pilot, "h")
        await wait_for(pilot, lambda: "Export" in footer(), what="the history keys")
        for key in ("⏎ Open", "␣ Select", "m Compare", "e Export", "g Reload", "q Quit"):
            assert key in footer(), (key, footer())
        await press(pilot, "p")
        await wait_for(pilot, lambda: "Open file" in footer(), what="the preset keys")
        assert "⏎ Run preset" in footer()


@pytest.mark.slow
async def test_a_silent_worker_shows_as_stalled_through_the_runner(logs: Path, monkeypatch) -> None:
    monkeypatch.setenv("JOULELAB_STALL_S", "1")
    app = make_app(logs, fake_command("--hold"))  # before its end it says nothing: a stall
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "r")
        await wait_settled(pilot, app)
        assert app.live.statuses[0] == "stalled"
        error = str(app.live.query_one("#live-error", Static).render())
        assert "stalled" in error and "no event from the worker for 1 s" in error
        assert list_runs(logs)[0].status == "stalled"  # the runner wrote the record the app shows
