"""The Live graph (issue 14, item 5): the pair on one time axis, the current run's phases only, a
past run under it, units on the ticks, epoch ticks, a rolling window, glyphs per series."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from tests.tui.conftest import make_app, press, wait_for, wait_settled
from tests.tui.screen_text import screen_text
from tui.widgets.power_graph import GLYPHS


@pytest.mark.slow
async def test_the_pair_is_overlaid_and_a_past_run_is_the_reference(logs: Path) -> None:
    app = make_app(logs)
    async with app.run_test(size=(160, 50)) as pilot:
        await press(pilot, "r")
        await wait_settled(pilot, app)
        await press(pilot, "v")
        graph = app.live.graph
        await wait_for(pilot, lambda: graph.settled, what="the graph")
        # The transfer run stays as a line of its total watts, from its own t = 0.
        ((label, t, w),) = graph.overlays
        assert label == "transfer · seed 0" and t[0] < 0.5 and w.max() > 0
        # Phase markers of the current (scratch) run only: no pretrain from the transfer run.
        assert [p for _, p in graph.boundaries] == ["idle", "warmup", "train", "test"]
        assert "pretrain" not in [label for _, label in graph.plot.markers]
        legend = str(graph.query_one(".graph-legend", Static).render())
        assert "transfer · seed 0" in legend and "┴ epoch" in legend
        assert graph.epochs and graph.plot.ticks  # per-epoch ticks
        text = screen_text(app)
        assert " W" in text.split("W by s")[1] and " s " in text  # units on the ticks

        await press(pilot, "l", "r")  # again: the first run now has a past run to be drawn over
        await wait_settled(pilot, app)
        await press(pilot, "v")
        await wait_for(pilot, lambda: graph.reference is not None, what="the past run as a reference")
        assert graph.reference[0] == "past run-0002"  # the newest complete scratch run before
        assert "past run-0002" in str(graph.query_one(".graph-legend", Static).render())


@pytest.mark.slow
async def test_a_rolling_window_and_zoom_on_the_live_tab(logs: Path) -> None:
    app = make_app(logs)
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "r")
        await wait_settled(pilot, app)
        await press(pilot, "v")
        graph = app.live.graph
        await press(pilot, "w")
        assert graph.window_s == 60.0
        await press(pilot, "plus", "plus")
        assert graph.window_s == 10.0
        await press(pilot, "minus")
        assert graph.window_s == 30.0
        await wait_for(pilot, lambda: graph.settled, what="the graph")
        assert "last 30 s" in str(graph.query_one(".graph-legend", Static).render())
        await press(pilot, "l", "w")  # not a graph key on the Lab tab
        assert graph.window_s == 30.0


def test_each_series_has_its_own_glyphs() -> None:
    assert len({swatch for _, swatch in GLYPHS}) == len(GLYPHS) and len({m for m, _ in GLYPHS}) == len(GLYPHS)
