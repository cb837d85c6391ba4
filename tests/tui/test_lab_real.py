"""The lab against the REAL worker on the tiny synthetic spec of tests/helpers.py: a paired run
watched live to the comparison table, and a cancel in the middle of training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Static

from engine.orchestrate.worker_process import worker_command
from engine.store.run_log import list_runs
from tests.tui.conftest import make_app, press, wait_for, wait_settled
from tests.tui.screen_text import screen_text
from tui.widgets.run_totals import RunTotals

pytestmark = pytest.mark.slow


async def test_a_real_paired_run_live_then_the_comparison(logs: Path) -> None:
    app = make_app(logs, worker_command())
    async with app.run_test(size=(160, 50)) as pilot:
        await press(pilot, "r")  # the form's default: transfer vs scratch, one trial, 1 epoch... of TINY
        live = app.live
        # While it runs: watts on the graph, phases in the totals, progress on its line.
        await wait_for(pilot, lambda: len(live.graph.series) >= 1 and live.graph.redraws > 0, 60, "watts on the graph")
        await wait_for(
            pilot,
            lambda: "pretrain" in live.states.get(0, None).rows if 0 in live.states else False,
            60,
            "the pretrain phase",
        )
        assert app.running and app.active_tab == "live"
        progress = str(live.query_one("#live-progress", Static).render())
        assert "elapsed" in progress
        await wait_settled(pilot, app, timeout=90)

        assert [r.status for r in list_runs(logs)] == ["complete", "complete"]
        assert app.active_tab == "results"
        text = screen_text(app)
        assert "Transfer vs scratch (paired by seed)" in text and "Verdict" in text
        assert "synthetic/small/transfer*" in text and "synthetic/small/scratch*" in text
        assert app.results.comparisons and app.results.comparisons[0].treatment == "transfer"

        await press(pilot, "v")
        totals = list(live.query(RunTotals))
        assert [t.status for t in totals] == ["complete", "complete"]
        transfer = live.states[0]
        assert {"idle", "pretrain", "train", "test"} <= set(transfer.rows)
        assert all(row.final for row in transfer.rows.values())
        # The live totals end where the worker's own summary does.
        summary = json.loads((list_runs(logs)[0].path / "summary.json").read_text())
        assert transfer.rows["train"].total_net_j == pytest.approx(summary["phases"]["train"]["total"]["net_j"])
        meters = {m["name"]: m["source"] for m in transfer.meters}
        labels = " ".join(label for label, *_ in live.graph.labels.values())
        for name, source in meters.items():
            assert (f"{name} (modelled)" in labels) == (source == "modelled")


async def test_cancelling_a_real_run_in_training(logs: Path) -> None:
    app = make_app(logs, worker_command(), spec_defaults={**app_defaults(), "synthetic_seconds": 120.0})
    async with app.run_test(size=(100, 30)) as pilot:
        app.form.query_one("#mode").value = "scratch"
        app.form.query_one("#epochs").value = "200"
        await pilot.pause()
        await press(pilot, "r")
        live = app.live
        await wait_for(pilot, lambda: 0 in live.states and live.states[0].epoch is not None, 60, "training")
        await press(pilot, "x")
        await wait_settled(pilot, app, timeout=30)
        assert live.statuses[0] == "cancelled"
        (record,) = list_runs(logs)
        assert record.status == "cancelled" and record.summary.phases["train"].partial
        assert "train †" in screen_text(app) and "stopped early" in screen_text(app)


def app_defaults() -> dict:
    from tests.tui.conftest import SPEC_DEFAULTS

    return dict(SPEC_DEFAULTS)
