"""Text that goes stale or is cut (issue 14, item 6): after a cancel, at 80 and 60 columns, while
the datasets are looked for, and one number format."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.tui.conftest import DATASETS_NONE_FOUND, fake_command, make_app, press, wait_for, wait_settled
from tests.tui.screen_text import screen_text
from tui import fmt
from tui.widgets.live_view import IDLE_HINT


@pytest.mark.slow
async def test_after_a_cancel_nothing_says_more_runs_or_waiting(logs: Path) -> None:
    app = make_app(logs, fake_command("--hold"))
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "r")
        await wait_for(pilot, lambda: app.live.states.get(0) and app.live.states[0].metrics, what="the result")
        await press(pilot, "x")
        await wait_settled(pilot, app)
        text = screen_text(app)
        assert "more run" not in text and "waiting for the worker" not in text
        assert "did not run: the plan stopped" in text


@pytest.mark.slow
async def test_at_80_columns_the_hint_and_the_history_columns_fit(logs: Path) -> None:
    app = make_app(logs)
    async with app.run_test(size=(80, 24)) as pilot:
        await press(pilot, "v")
        assert IDLE_HINT in screen_text(app)  # whole, not cut mid-sentence
        await press(pilot, "l", "r")
        await wait_settled(pilot, app)
        await press(pilot, "h")
        await wait_for(pilot, lambda: app.history.records, what="the history")
        await pilot.pause()
        header = next(line for line in screen_text(app).splitlines() if "configuration" in line)
        assert "train J" in header and "seed" in header


@pytest.mark.slow
async def test_at_60_columns_each_run_keeps_its_net_joules(logs: Path) -> None:
    app = make_app(logs)
    async with app.run_test(size=(60, 40)) as pilot:
        await press(pilot, "r")
        await wait_settled(pilot, app)
        await press(pilot, "v")
        await wait_for(pilot, lambda: app.active_tab == "live", what="Live")
        await pilot.pause()
        assert screen_text(app).count("net J") == 2  # transfer's and scratch's


@pytest.mark.slow
async def test_datasets_say_checking_until_they_are_known(logs: Path) -> None:
    gate = threading.Event()

    def slow_finder(data_dir):
        gate.wait(10)
        return DATASETS_NONE_FOUND, None

    app = make_app(logs, datasets=slow_finder)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "checking which real datasets are here" in text and "not available" not in text
        gate.set()
        await wait_for(pilot, lambda: "not available" in screen_text(app), what="the datasets' answer")
        assert "checking" not in screen_text(app)


def test_one_number_format_without_exponents() -> None:
    assert [fmt.number(v) for v in (0.0219, 13.4, 6.04e-05, 123.4, 12345.0, 0.0, 9.996, 99.96)] == [
        "0.0219",
        "13.4",
        "0.0000604",
        "123",
        "12,345",
        "0",
        "10.0",
        "100",
    ]
    assert fmt.joules(6.04e-05, "modelled") == "~0.0000604"
    assert [fmt.si(v, "Wh") for v in (0.00693, 2.5, 1234.0, 6.04e-05)] == [
        "6.93 mWh",
        "2.50 Wh",
        "1.23 kWh",
        "60.4 µWh",
    ]
