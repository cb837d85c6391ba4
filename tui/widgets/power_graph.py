"""The lab's graphs, drawn with textual-plot (whose private internals only plot_patch.py touches).

`PowerGraph` shows watts over time per domain (CPU package, DRAM, each GPU) with phase boundaries;
`CurveGraph` shows the energy-to-accuracy curve. Both keep their data themselves and redraw on a
timer (4 Hz) only when something changed, and only while they are shown.

- Bounded history: a deque per domain; older samples fall off.
- Decimation: min and max per time bucket, about twice the plot's width in all (a spike is
  never averaged away).
- The y-axis bound moves at most once a second, and the x-axis ends on a round number and
  moves in steps: between steps the drawn part stays put and only the rows the newest points
  touch are repainted and sent to the terminal (a live graph costs little over SSH).
- A modelled domain (an estimate, not a measurement) is drawn dashed and labelled "(modelled)";
  a measured one is a solid line. Each domain has its own glyphs (braille, half blocks,
  quadrants), so series stay apart without colour (NO_COLOR), and no line is drawn dim.
- The paired runs share one time axis, each from its own t = 0: when the next run of a pair
  starts, the one before stays as a grey dashed line of its total watts; a past run of the same
  configuration can be laid under as a reference. Phase names are the current run's only.
- Ticks say their units (W, s); epochs are ticked along the bottom; a rolling window and zoom
  show the newest seconds.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Static
from textual_hires_canvas import HiResMode
from textual_plot.axis_formatter import NumericAxisFormatter

from engine.core.energy import in_totals
from engine.core.events import MeterInfo
from tui.widgets.plot_patch import PatchedPlot

REDRAW_HZ = 4.0
HISTORY = 6000  # samples per domain: 10 minutes at 10 Hz
Y_BOUND_EVERY_S = 1.0


def clock() -> float:
    """The clock of the y-axis throttle (a function, so a test can hold it)."""
    return time.monotonic()


# Colours by kind of domain; several of a kind cycle through the list.
PALETTE = {
    "cpu": ["bright_cyan", "cyan", "blue"],
    "dram": ["bright_magenta", "magenta", "purple"],
    "gpu": ["bright_green", "green", "yellow", "bright_yellow"],
    "platform": ["white"],
}
OTHER = ["bright_red", "orange3", "white"]
# Glyphs per series, in order, with the legend's swatch for each: told apart without colour.
GLYPHS = [(HiResMode.BRAILLE, "⣀⣀"), (HiResMode.HALFBLOCK, "▄▄"), (HiResMode.QUADRANT, "▗▖")]
OVERLAY_STYLE = "grey70"  # the pair's earlier run
REFERENCE_STYLE = "grey50"  # a past run of the same configuration
ZOOM_STEPS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0)  # the rolling window's widths, in seconds


class UnitFormatter(NumericAxisFormatter):
    """Numeric ticks that say their unit: 20 W, 15 s."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [f"{label}{self.unit}" for label in super().get_labels_for_ticks(ticks)]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10 x 10^k at or above `value`."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        candidate = step * 10**exp
        if candidate >= value * (1 - 1e-9):
            return float(candidate)
    return float(10 ** (exp + 1))


def decimate(t: np.ndarray, y: np.ndarray, x0: float, bucket_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per time bucket (`bucket_s` wide, counted from `x0`), the minimum and the maximum, in
    time order: a spike is never averaged away, and a bucket already full draws the same
    pixels every time, so only the newest part of the graph changes between redraws."""
    if len(t) < 4 or bucket_s <= 0:
        return t, y
    idx = np.floor((t - x0) / bucket_s).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    if 2 * len(starts) >= len(t):
        return t, y
    bucket = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(t)]))
    lows, highs = np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)
    picks = []
    for extreme in (lows, highs):
        hits = np.flatnonzero(y == extreme[bucket])
        _, first = np.unique(bucket[hits], return_index=True)
        picks.append(hits[first])
    keep = np.unique(np.concatenate(picks))
    return t[keep], y[keep]


class _GraphBase(Widget):
    """A legend line over a plot, redrawn by a timer only when dirty and shown."""

    def __init__(
        self, *, redraw_hz: float | None = REDRAW_HZ, id: str | None = None, classes: str | None = None
    ) -> None:
        """`redraw_hz=None`: no timer of its own; the owner calls `tick()` on its own timer, so
        the two share one screen update."""
        super().__init__(id=id, classes=classes)
        self._redraw_hz = redraw_hz
        self._dirty = False
        self._timer: Timer | None = None
        self.redraws = 0
        self.redraw_s: deque[float] = deque(maxlen=512)  # wall time of each redraw (prepare + draw)

    X_UNIT, Y_UNIT = " s", "W"  # what the axes' ticks say: watts over time

    def compose(self) -> ComposeResult:
        yield Static("", classes="graph-legend")
        yield PatchedPlot(classes="graph-plot")

    @property
    def plot(self) -> PatchedPlot:
        return self.query_one(PatchedPlot)

    def on_mount(self) -> None:
        plot = self.plot
        # Units and names go in the legend line above, so the plot keeps every row for data.
        plot.margin_top, plot.margin_bottom, plot.margin_left = 0, 1, 7
        plot.set_x_formatter(UnitFormatter(self.X_UNIT))
        plot.set_y_formatter(UnitFormatter(self.Y_UNIT))
        if self._redraw_hz:
            self._timer = self.set_interval(1 / self._redraw_hz, self.tick)

    def on_show(self) -> None:
        if self._timer is not None:
            self._timer.resume()

    def on_resize(self) -> None:
        self._dirty = True  # decimation follows the plot's width

    def on_hide(self) -> None:
        if self._timer is not None:
            self._timer.pause()

    def mark_dirty(self) -> None:
        self._dirty = True

    def tick(self) -> None:
        """Redraw if there is something new and the graph is shown."""
        if not self._dirty or not self.display or not self.is_on_screen:
            return
        self.redraw()

    def redraw(self) -> None:
        self._dirty = False
        started = time.perf_counter()
        plot = self.plot
        with self.app.batch_update():
            # Draw into the canvases now rather than in the plot's next render, which would
            # refresh the canvases from inside a render and so cost a second screen update.
            plot.direct = plot.ready
            try:
                self._draw(plot)
            finally:
                plot.direct = False
            plot.render_pending()
        self.redraws += 1
        self.redraw_s.append(time.perf_counter() - started)

    def _draw(self, plot: PatchedPlot) -> None:  # pragma: no cover - subclasses draw
        raise NotImplementedError

    @property
    def plot_width(self) -> int:
        return max(10, self.size.width - self.plot.margin_left - 2)


class PowerGraph(_GraphBase):
    """Watts over time per domain, with phase boundaries."""

    def __init__(
        self,
        *,
        history: int = HISTORY,
        redraw_hz: float | None = REDRAW_HZ,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(redraw_hz=redraw_hz, id=id, classes=classes)
        self.history = history
        self.series: dict[str, tuple[deque[float], deque[float]]] = {}  # name -> (seconds, watts)
        self.labels: dict[str, tuple[str, str, bool, int]] = {}  # name -> (label, style, dashed, glyph)
        self.kinds: dict[str, str] = {}  # name -> kind, as the hello event gave it (else guessed from the name)
        self.boundaries: list[tuple[float, str]] = []
        self.epochs: list[float] = []
        # the counted domains' total: (seconds, watts)
        self.total: tuple[deque[float], deque[float]] = (deque(maxlen=history), deque(maxlen=history))
        self.overlays: list[tuple[str, np.ndarray, np.ndarray]] = []  # the pair's earlier runs: total W
        self.reference: tuple[str, np.ndarray, np.ndarray] | None = None  # a past run: total W
        self.window_s: float | None = None  # a rolling window of the newest seconds, or the whole run
        self._y_max: float | None = None
        self._y_changed_at = -math.inf
        self._x_span: float | None = None

    # -- data in -------------------------------------------------------------------------
    def reset(self) -> None:
        """A new plan: nothing of the runs before stays."""
        self.overlays = []
        self.reference = None
        self._clear_run()

    def next_run(self, keep_as: str | None) -> None:
        """The next run of a pair starts: the current one's total stays as a grey line (labelled
        `keep_as`) on the same time axis; its phases and epochs go."""
        if keep_as is not None and self.total[0]:
            ts, ws = self.total
            self.overlays.append((keep_as, np.fromiter(ts, float, len(ts)), np.fromiter(ws, float, len(ws))))
        self._clear_run()

    def set_reference(self, label: str, t: Sequence[float], w: Sequence[float]) -> None:
        """A past run of the same configuration, drawn under the live one (total W)."""
        self.reference = (label, np.asarray(t, float), np.asarray(w, float))
        self._update_legend()
        self.mark_dirty()

    def add_epoch(self, t: float) -> None:
        self.epochs.append(t)
        self._dirty = True

    def zoom(self, how: str) -> None:
        """in / out: a narrower or wider rolling window; window: the newest 60 s, or the whole run."""
        if how == "window":
            self.window_s = None if self.window_s else 60.0
        elif how == "in":
            self.window_s = max([s for s in ZOOM_STEPS if s < (self.window_s or math.inf)] or [ZOOM_STEPS[0]])
        elif how == "out" and self.window_s is not None:
            wider = [s for s in ZOOM_STEPS if s > self.window_s]
            self.window_s = wider[0] if wider else None
        self._x_span = None
        self._update_legend()
        self.mark_dirty()

    def _clear_run(self) -> None:
        self.series.clear()
        self.labels.clear()
        self.kinds.clear()
        self.boundaries = []
        self.epochs = []
        self.total = (deque(maxlen=self.history), deque(maxlen=self.history))
        self._y_max = None
        self._y_changed_at = -math.inf
        self._x_span = None
        self.mark_dirty()

    def set_meters(self, meters: list[MeterInfo]) -> None:
        """Name the domains from the hello event: [{name, source, method, kind}]."""
        for meter in meters:
            self._ensure(meter["name"], meter.get("source"), meter.get("kind"))
        self._update_legend()

    def add_sample(self, t: float, watts: dict[str, tuple[float | None, str | None]]) -> None:
        """One sample: seconds since the run started, and per domain (watts, source)."""
        new = False
        total = None
        for name, (w, source) in watts.items():
            if w is None:
                continue
            if in_totals(self.kinds.get(name) or _guess_kind(name)):  # as the engine's totals: no psys, no cross-check
                total = (total or 0.0) + w
            if name not in self.series:
                self._ensure(name, source, None)
                new = True
            ts, ws = self.series[name]
            ts.append(t)
            ws.append(w)
        if total is not None:
            self.total[0].append(t)
            self.total[1].append(total)
        if new:
            self._update_legend()
        self._dirty = True

    def add_boundary(self, t: float, phase: str) -> None:
        if self.boundaries and self.boundaries[-1][1] == "setup" and t - self.boundaries[-1][0] < 0.3:
            self.boundaries.pop()  # the next phase came straight after: no setup worth marking
        self.boundaries.append((t, phase))
        self._dirty = True

    def _ensure(self, name: str, source: str | None, kind: str | None) -> None:
        if name not in self.series:
            self.series[name] = (deque(maxlen=self.history), deque(maxlen=self.history))
        if kind:
            self.kinds[name] = kind
        kind = kind or _guess_kind(name)
        used = sum(1 for n in self.labels if n != name and _guess_kind(n) == kind)
        colours = PALETTE.get(kind, OTHER)
        modelled = source == "modelled"
        style = colours[used % len(colours)]
        label = f"{name} (modelled)" if modelled else (f"{name} (polled)" if source == "polled" else name)
        glyph = list(self.series).index(name) % len(GLYPHS)
        self.labels[name] = (label, style, modelled, glyph)

    def _update_legend(self) -> None:
        text = Text("W by s", style="bold")
        for name in self.series:
            label, style, dashed, glyph = self.labels[name]
            text.append("  ")
            text.append(GLYPHS[glyph][1] + ("┄ " if dashed else " "), style=style)
            text.append(label)
        for label, *_ in self.overlays:
            text.append("  ")
            text.append("▗▖┄ ", style=OVERLAY_STYLE)
            text.append(label)
        if self.reference is not None:
            text.append("  ")
            text.append("▗▖┄ ", style=REFERENCE_STYLE)
            text.append(self.reference[0], style=REFERENCE_STYLE)
        if self.boundaries or self.series:
            text.append("  │ phase ┴ epoch", style="dim")
        if self.window_s:
            text.append(f"  last {self.window_s:g} s", style="bold")
        self.query_one(".graph-legend", Static).update(text)

    # -- drawing -------------------------------------------------------------------------
    @property
    def y_max(self) -> float | None:
        return self._y_max

    def desired_y_max(self) -> float | None:
        peaks = [max(ws) for _, ws in self.series.values() if ws]
        peaks += [float(w.max()) for _, _, w in self.overlays + ([self.reference] if self.reference else []) if len(w)]
        peaks += [max(self.total[1])] if self.total[1] else []
        if not peaks:
            return None
        return nice_ceiling(max(peaks) * 1.1 if max(peaks) > 0 else 1.0)

    @property
    def settled(self) -> bool:
        """True when nothing waits to be drawn and the y-axis shows what the data needs."""
        return not self._dirty and self._y_max == self.desired_y_max()

    def _draw(self, plot: PatchedPlot) -> None:
        plot.clear()
        spans = [(ts[0], ts[-1]) for ts, _ in self.series.values() if ts]
        if not spans:
            plot.set_xlimits(0, 10)
            plot.set_ylimits(0, 1)
            return
        first, last = min(a for a, _ in spans), max(b for _, b in spans)
        others = self.overlays + ([self.reference] if self.reference else [])
        full = any(len(ts) >= self.history for ts, _ in self.series.values())
        # The x-axis ends on a round number and moves in steps, like the y-axis: between two
        # steps, what is drawn stays put and only the newest points are new.
        x0 = min(first, self.boundaries[0][0]) if self.boundaries and not full else first
        if others and not full:
            x0 = min(x0, 0.0)  # each run from its own t = 0, on one axis
        end = max([last] + [float(t[-1]) for _, t, _ in others if len(t)])
        if self.window_s:  # the newest seconds of the current run, moving in twentieths
            self._x_span = self.window_s
            step = self.window_s / 20
            x0 = max(0.0, math.ceil((last - self.window_s) / step) * step) if last > self.window_s else min(x0, 0.0)
        elif self._x_span is None or end - x0 > self._x_span or full:
            self._x_span = nice_ceiling(max(1.0, (end - x0) * 1.1))
        if full and not self.window_s:  # older samples fall off: the axis starts on a step of a twentieth
            step = self._x_span / 20
            x0 = math.floor(first / step) * step
        x1 = x0 + self._x_span
        for i, (_, t, w) in enumerate(others):
            if len(t):
                style = REFERENCE_STYLE if self.reference is not None and i == len(others) - 1 else OVERLAY_STYLE
                ot, ow = decimate(t, w, x0, self._x_span / max(2, self.plot_width))
                plot.plot_dataset(ot, ow, style, dashed=True, mode=HiResMode.QUADRANT)
        bucket_s = self._x_span / max(2, self.plot_width)  # two points (min, max) a column
        for name, (ts, ws) in self.series.items():
            if not ts:
                continue
            t, w = decimate(np.fromiter(ts, float, len(ts)), np.fromiter(ws, float, len(ws)), x0, bucket_s)
            _, style, dashed, glyph = self.labels[name]
            plot.plot_dataset(t, w, style, dashed, GLYPHS[glyph][0])
        for at, _phase in self.boundaries:
            if x0 <= at <= x1:
                plot.add_v_line(at, "grey50")
        plot.markers = [(t, phase) for t, phase in self.boundaries if x0 <= t <= x1]
        plot.ticks = [t for t in self.epochs if x0 <= t <= x1]
        want = self.desired_y_max()
        now = clock()
        if self._y_max is None or (want != self._y_max and now - self._y_changed_at >= Y_BOUND_EVERY_S):
            self._y_max, self._y_changed_at = want, now
        elif want != self._y_max:
            self._dirty = True  # try again when the second is up
        plot.set_xlimits(x0, x1)
        plot.set_ylimits(0, self._y_max)


class CurveGraph(_GraphBase):
    """Energy-to-accuracy: validation accuracy (%) against cumulative joules, one series a run."""

    STYLES = ["bright_cyan", "bright_magenta", "bright_green", "yellow", "bright_red", "white"]
    X_UNIT, Y_UNIT = " J", "%"  # cumulative training energy, validation accuracy

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.curves: list[tuple[str, list[float], list[float], bool]] = []

    def set_curves(self, curves: list[tuple[str, list[float], list[float], bool]]) -> None:
        """[(label, joules, accuracy %, modelled)]."""
        self.curves = curves
        text = Text("val % / J of training", style="bold")
        for i, (label, _, _, modelled) in enumerate(curves):
            text.append("  ")
            style = self.STYLES[i % len(self.STYLES)] + (" dim" if modelled else "")
            text.append(f"{'╍╍' if modelled else '━━'}{_marker(i)} ", style=style)
            text.append(label + (" ~" if modelled else ""))
        if any(m for *_, m in curves):
            text.append("   ~ energy modelled", style="dim")
        self.query_one(".graph-legend", Static).update(text)
        self.mark_dirty()

    def _draw(self, plot: PatchedPlot) -> None:
        plot.clear()
        xs = [x for _, jx, _, _ in self.curves for x in jx]
        if not xs:
            plot.set_xlimits(0, 1)
            plot.set_ylimits(0, 100)
            return
        for i, (_, jx, acc, modelled) in enumerate(self.curves):
            style = self.STYLES[i % len(self.STYLES)] + (" dim" if modelled else "")
            if len(jx) > 1:
                plot.plot_dataset(jx, acc, style, dashed=modelled)
            plot.scatter(jx, acc, marker=_marker(i), marker_style=style)
        plot.set_xlimits(0, nice_ceiling(max(xs) * 1.05))
        plot.set_ylimits(0, 105)  # 100 % inside the frame, not on it


def _marker(i: int) -> str:
    return "●○◆◇■□"[i % 6]


def _guess_kind(name: str) -> str:
    lowered = name.lower()
    if lowered.startswith(("gpu", "nvml")):
        return "gpu"
    if "dram" in lowered:
        return "dram"
    if lowered.startswith(("package", "cpu", "core")):
        return "cpu"
    if "psys" in lowered or "platform" in lowered:
        return "platform"
    return "other"
