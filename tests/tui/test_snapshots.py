"""Snapshots of the lab at 80x24 and 160x50 against the fake worker (deterministic: recorded
streams, fixed run ids and wall clock, logs under a relative path).

Update after an intended change: python -m pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.conftest import fake_command, make_app, press, wait_for, wait_settled
from tui.screens.confirm_quit import ConfirmQuit
from tui.screens.run_detail import RunDetail

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 50), id="160x50")]


@pytest.fixture
def here(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # logs appear as "logs", whatever the machine
    monkeypatch.delenv("NO_COLOR", raising=False)
    return Path("logs")


async def datasets_known(pilot) -> None:
    app = pilot.app
    await wait_for(
        pilot, lambda: any(not e.get("found") and e.get("problem") for e in app.form.entries), what="the datasets"
    )
    await pilot.pause()


async def paired_run(pilot) -> None:
    app = pilot.app
    await datasets_known(pilot)
    await press(pilot, "r")
    await wait_settled(pilot, app)


async def settle_live(pilot) -> None:
    app = pilot.app
    await press(pilot, "v")
    await wait_for(pilot, lambda: app.live.graph.settled and not app.live._dirty, what="the live view")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_lab(snap_compare, here, size) -> None:
    assert snap_compare(make_app(here), terminal_size=size, run_before=datasets_known)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_live_after_a_paired_run(snap_compare, here, size) -> None:
    async def run_before(pilot):
        await paired_run(pilot)
        await settle_live(pilot)

    assert snap_compare(make_app(here), terminal_size=size, run_before=run_before)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_results(snap_compare, here, size) -> None:
    async def run_before(pilot):
        await paired_run(pilot)
        await wait_for(pilot, lambda: pilot.app.results.query_one("#curve-graph").redraws > 0, what="the curves")

    assert snap_compare(make_app(here), terminal_size=size, run_before=run_before)


@pytest.mark.slow
def test_crash_at_80x24(snap_compare, here) -> None:
    async def run_before(pilot):
        await paired_run(pilot)
        await settle_live(pilot)

    assert snap_compare(
        make_app(here, fake_command("--crash-in", "train")), terminal_size=(80, 24), run_before=run_before
    )


@pytest.mark.slow
def test_history_and_a_reopened_crash_at_160x50(snap_compare, here) -> None:
    async def run_before(pilot):
        app = pilot.app
        await paired_run(pilot)
        app.worker_command = fake_command("--crash-in", "train")
        await press(pilot, "l", "r")
        await wait_settled(pilot, app)
        await press(pilot, "h", "enter")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, RunDetail) and app.screen.query_one("#detail-graph").settled,
            what="the run's details",
        )

    assert snap_compare(make_app(here), terminal_size=(160, 50), run_before=run_before)


@pytest.mark.slow
def test_history_at_80x24(snap_compare, here) -> None:
    async def run_before(pilot):
        await paired_run(pilot)
        await press(pilot, "h", "down", "space")

    assert snap_compare(make_app(here), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.slow
def test_quit_while_running_at_80x24(snap_compare, here) -> None:
    async def run_before(pilot):
        app = pilot.app
        await datasets_known(pilot)
        await press(pilot, "r")
        await wait_for(pilot, lambda: app.live.states.get(0) and app.live.states[0].metrics, what="the run")
        await wait_for(pilot, lambda: app.live.graph.settled and not app.live._dirty, what="the live view")
        await press(pilot, "q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="the question")

    assert snap_compare(make_app(here, fake_command("--hold")), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.slow
def test_live_without_colour_at_80x24(snap_compare, here, monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")

    async def run_before(pilot):
        await paired_run(pilot)
        await settle_live(pilot)

    assert snap_compare(make_app(here), terminal_size=(80, 24), run_before=run_before)
