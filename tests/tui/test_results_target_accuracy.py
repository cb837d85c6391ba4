"""The Results tab's target accuracy: typed in its field, the energy to it per configuration with its
interval and the runs that never reached it named, from the same functions and tables as
`compare --target-accuracy` (golden logs: scratch reaches 0.833 at epoch 2, transfer stays at 0.667)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Input, Static

from engine.analysis.stats import config_stats
from engine.store.run_log import list_runs
from tests.helpers import GOLDEN_LOGS
from tests.tui.conftest import make_app, press, wait_for


def tables_text(app) -> str:
    """The Results tables (and the target's, below its field) as plain words (captions wrap:
    compare words, not lines)."""
    console = Console(width=200, record=True, color_system=None)
    for part in ("#results-tables", "#target-tables"):
        console.print(app.results.query_one(part, Static).content)
    return " ".join(console.export_text().split())


@pytest.fixture
def golden_logs(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    shutil.copytree(GOLDEN_LOGS, logs)
    return logs


@pytest.mark.slow
async def test_a_typed_target_shows_the_energy_to_it_and_who_never_reached_it(golden_logs: Path) -> None:
    app = make_app(golden_logs)
    async with app.run_test(size=(160, 50)) as pilot:
        await press(pilot, "h")
        await wait_for(pilot, lambda: app.history.highlighted is not None, what="the history")
        await press(pilot, "space", "down", "space", "m")
        assert app.active_tab == "results" and "Energy to" not in tables_text(app)  # no target yet

        field = app.results.query_one("#target-accuracy", Input)
        field.focus()
        await press(pilot, *"0.7", "enter")
        text = await wait_for(pilot, lambda: "Energy to 70 %" in (t := tables_text(app)) and t, what="the target")
        assert "Energy to 70 % validation accuracy" in text and "Energy to 70 % (paired by seed)" in text
        assert "synthetic/small/transfer*: not reached by golden-transfer (seed 0)" in text
        assert "transfer: 0 of 1 trial reached 70 %, scratch: 1 of 1 trial reached 70 %" in text
        # the same figures as compare's: config_stats over the same summaries with the same target
        expected = {s.key: s.to_target for s in config_stats([r.summary for r in list_runs(golden_logs)], 0.7)}
        shown = {s.key: s.to_target for s in app.results.config_stats}
        assert shown == expected and shown["synthetic/small/scratch/baseline"].joules is not None

        # a percentage instead of a fraction: one line saying how to write it; the tables stay
        await press(pilot, "backspace", "backspace", "backspace", *"70", "enter")
        await wait_for(pilot, lambda: app._notifications, what="the notification")
        (note,) = list(app._notifications)
        assert note.message.startswith("Target accuracy: expected a fraction of 1 in (0, 1]")
        assert "(for 70 % write 0.7)" in note.message and app.results.target == 0.7
        assert "Energy to 70 %" in tables_text(app)

        # emptied: the target tables go
        await press(pilot, "backspace", "backspace", "enter")
        await wait_for(pilot, lambda: "Energy to" not in tables_text(app), what="no target")
        assert app.results.target is None


async def test_a_presets_target_fills_the_field() -> None:
    """The plan of a preset with target_accuracy shows its results with that target (app.py passes it)."""
    summaries = [r.summary for r in list_runs(GOLDEN_LOGS) if r.summary is not None]
    app = make_app(GOLDEN_LOGS)
    async with app.run_test(size=(160, 50)) as pilot:
        app.results.show("Results: preset golden", summaries, None, 0.6)
        await pilot.pause()
        assert app.results.query_one("#target-accuracy", Input).value == "0.6"
        assert "Energy to 60 % validation accuracy" in tables_text(app)
        assert {s.to_target.target for s in app.results.config_stats if s.to_target} == {0.6}
