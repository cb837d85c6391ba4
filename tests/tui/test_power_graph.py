"""The power graph: bounded history, decimation, a y-axis that moves at most once a second,
redraws only when there is something new and only while shown, estimates marked as such."""

from __future__ import annotations

import re

import numpy as np
from textual.app import App, ComposeResult
from textual.widgets import Static

from tests.tui.conftest import wait_for
from tests.tui.screen_text import screen_text
from tui.widgets import power_graph
from tui.widgets.power_graph import CurveGraph, PowerGraph, decimate, nice_ceiling

METERS = [
    {"name": "package-0", "source": "counter", "method": "rapl:package-0", "kind": "cpu"},
    {"name": "cpu", "source": "modelled", "method": "model:tdp-cpu-time", "kind": "cpu"},
]


def test_decimate_keeps_extremes_bounds_the_points_and_is_stable() -> None:
    t = np.arange(10_000, dtype=float) / 10
    y = np.sin(t)
    y[4321] = 50.0  # one spike among ten thousand
    y[777] = -3.0
    dt, dy = decimate(t, y, 0.0, 1000 / 100)  # 100 buckets
    assert len(dt) <= 200
    assert dy.max() == 50.0 and dy.min() == -3.0
    assert np.all(np.diff(dt) > 0)  # still in time order
    # More data later: the buckets already full decimate exactly as before.
    later_t, _ = decimate(np.r_[t, t[-1] + 0.1], np.r_[y, 0.5], 0.0, 10.0)
    assert np.array_equal(later_t[: len(dt) - 2], dt[:-2])
    fine_t, _ = decimate(t[:50], y[:50], 0.0, 0.05)  # buckets finer than the samples: all kept
    assert len(fine_t) == 50


def test_nice_ceiling() -> None:
    assert [nice_ceiling(v) for v in (0.0, 0.9, 1.0, 7.3, 13, 41, 260)] == [1.0, 1.0, 1.0, 8.0, 15.0, 50.0, 300.0]


class GraphApp(App):
    def compose(self) -> ComposeResult:
        yield PowerGraph(history=100, id="graph")
        yield Static("other", id="other")


async def test_history_is_bounded_and_modelled_series_are_marked() -> None:
    app = GraphApp()
    async with app.run_test(size=(100, 20)) as pilot:
        graph = app.query_one(PowerGraph)
        graph.set_meters(METERS)
        for i in range(250):
            graph.add_sample(i / 10, {"package-0": (20.0, "counter"), "cpu": (15.0, "modelled")})
        assert all(len(ts) == 100 for ts, _ in graph.series.values())
        legend = str(graph.query_one(".graph-legend", Static).render())
        assert "cpu (modelled)" in legend and "package-0" in legend and "package-0 (" not in legend
        # Modelled: dashed, never dim (dim vanishes under NO_COLOR); its own glyphs
        assert graph.labels["cpu"][2] is True and "dim" not in graph.labels["cpu"][1]
        assert graph.labels["cpu"][3] != graph.labels["package-0"][3]
        assert graph.labels["package-0"][2] is False
        # the modelled series, drawn dashed; waited for, since a redraw may clear the plot and
        # draw again (under load the first check could fall between the two)
        await wait_for(
            pilot, lambda: graph.redraws >= 1 and len(graph.plot.dashed) == 1, what="the modelled series drawn dashed"
        )
        assert len(graph.plot.dashed) == 1


async def test_redraws_only_when_new_data_and_only_while_shown() -> None:
    app = GraphApp()
    async with app.run_test(size=(100, 20)) as pilot:
        graph = app.query_one(PowerGraph)
        graph.add_sample(0.0, {"cpu": (5.0, "modelled")})
        await wait_for(pilot, lambda: graph.redraws >= 1 and not graph._dirty, what="the first redraw")
        drawn = graph.redraws
        await pilot.pause(0.6)  # two more ticks with nothing new
        assert graph.redraws == drawn
        graph.display = False
        graph.add_sample(0.1, {"cpu": (6.0, "modelled")})
        await pilot.pause(0.6)
        assert graph.redraws == drawn  # hidden: nothing drawn
        graph.display = True
        await wait_for(pilot, lambda: graph.redraws == drawn + 1, what="a redraw once shown again")


async def test_y_axis_moves_at_most_once_a_second(monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(power_graph, "clock", lambda: clock[0])
    app = GraphApp()
    async with app.run_test(size=(100, 20)) as pilot:
        graph = app.query_one(PowerGraph)
        graph.add_sample(0.0, {"cpu": (5.0, "modelled")})
        graph.redraw()
        assert graph.y_max == 6.0
        graph.add_sample(0.1, {"cpu": (40.0, "modelled")})
        clock[0] += 0.5
        graph.redraw()
        assert graph.y_max == 6.0 and not graph.settled  # too soon: the bound waits
        clock[0] += 0.6
        graph.redraw()
        assert graph.y_max == 50.0
        await pilot.pause()


async def test_the_total_line_counts_what_the_engine_totals_count() -> None:
    """NVML's polled power is a cross-check beside the GPU's counter and psys covers the others: the
    graph's total must leave both out, as the run's totals do (engine.worker.meters.base.in_totals)."""
    meters = [
        {"name": "package-0", "source": "counter", "method": "rapl:package-0", "kind": "cpu"},
        {"name": "psys", "source": "counter", "method": "rapl:psys", "kind": "platform"},
        {"name": "gpu0", "source": "counter", "method": "nvml:gpu0:energy-counter", "kind": "gpu"},
        {"name": "gpu0-polled", "source": "polled", "method": "nvml:gpu0:power-integrated", "kind": "cross-check"},
    ]
    app = GraphApp()
    async with app.run_test(size=(100, 20)):
        graph = app.query_one(PowerGraph)
        graph.set_meters(meters)
        graph.add_sample(
            0.1,
            {
                "package-0": (20.0, "counter"),
                "psys": (90.0, "counter"),
                "gpu0": (60.0, "counter"),
                "gpu0-polled": (61.0, "polled"),
            },
        )
        assert list(graph.total[1]) == [80.0]


class CurveApp(App):
    CSS = "CurveGraph { layout: vertical; height: 1fr; } .graph-legend { height: 1; } .graph-plot { height: 1fr; }"

    def compose(self) -> ComposeResult:
        yield CurveGraph(id="curve")


async def test_the_energy_to_accuracy_axes_say_joules_and_percent() -> None:
    """Defect: the curve inherited the power graph's tick labels, in W and s."""
    app = CurveApp()
    async with app.run_test(size=(100, 30)) as pilot:
        graph = app.query_one(CurveGraph)
        graph.set_curves([("transfer s0", [10.0, 20.0, 30.0], [40.0, 60.0, 75.0], False)])
        graph.redraw()
        await pilot.pause()
        screen = screen_text(app)
        y_labels = re.findall(r"^\s*(\d+\S*) [┫╋]", screen, re.M)
        assert y_labels and all(label.endswith("%") for label in y_labels), screen
        assert not re.search(r"\d(W| s)\b", screen), screen
        x_labels = re.findall(r"(\d+(?:\.\d+)?) J\b", screen.split("╋")[-1])
        assert len(x_labels) >= 2, screen
