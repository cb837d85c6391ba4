"""Totals in J, Wh and gCO2e at the export's carbon intensity; a message log of the toasts."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core.records import BASELINE_PHASES
from engine.store.run_log import load_summary
from tests.tui.conftest import make_app, press, wait_for, wait_settled
from tests.tui.screen_text import screen_text
from tui import fmt
from tui.screens.export_dialog import ExportDialog
from tui.screens.message_log import MessageLog


@pytest.mark.slow
async def test_totals_in_joules_watt_hours_and_grams_of_co2e(logs: Path, monkeypatch) -> None:
    monkeypatch.delenv("JOULELAB_CARBON_INTENSITY", raising=False)
    app = make_app(logs, carbon_intensity=250.0)
    async with app.run_test(size=(160, 50)) as pilot:
        await press(pilot, "r")
        await wait_settled(pilot, app)
        await press(pilot, "v")
        await wait_for(pilot, lambda: not app.live._dirty, what="the live view")
        await pilot.pause()
        # the worker's own record of the run, not the lab's fold of it
        summary = load_summary(logs / app.plan.items[1].spec.run_id)
        assert summary is not None
        net = sum(r.total.net_j for p, r in summary.phases.items() if p not in BASELINE_PHASES)  # no idle, no warm-up
        text = screen_text(app)
        assert fmt.energy_units(net, "modelled", 250.0) in text
        assert f"~{fmt.si(net / 3.6e6 * 250, 'gCO2e')}" in text and "µgCO2e" in text  # a few J: micrograms
        assert "gCO2e at 250 g/kWh (set for this session)" in text


def test_the_carbon_intensity_defaults_to_the_exports_and_says_where_it_comes_from(monkeypatch) -> None:
    from engine.core.settings import DEFAULT_CARBON_INTENSITY

    monkeypatch.delenv("JOULELAB_CARBON_INTENSITY", raising=False)
    value, source = fmt.carbon_setting()
    assert value == DEFAULT_CARBON_INTENSITY and "Ember" in source
    monkeypatch.setenv("JOULELAB_CARBON_INTENSITY", "56")
    assert fmt.carbon_setting() == (56.0, "JOULELAB_CARBON_INTENSITY")


@pytest.mark.slow
async def test_an_exports_path_stays_in_the_message_log(logs: Path, tmp_path: Path) -> None:
    app = make_app(logs)
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "r")
        await wait_settled(pilot, app)
        await press(pilot, "h")
        await wait_for(pilot, lambda: app.history.records, what="the history")
        await press(pilot, "e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportDialog), what="the dialog")
        out = app.screen.query_one("#out")
        out.value = str(tmp_path / "export")
        out.focus()
        await press(pilot, "enter")
        await wait_for(pilot, lambda: any(title == "Exported" for _, _, title, _ in app.messages), what="the export")
        await press(pilot, "n")
        assert isinstance(app.screen, MessageLog)
        shown = str(app.screen.query_one("#message-text").render()).replace("\n", "")
        assert f"Exported: wrote {tmp_path / 'export'}" in shown
        await press(pilot, "escape")
        assert not isinstance(app.screen, MessageLog)
