"""The one module that reaches into textual-plot's and textual-hires-canvas's private internals.

Both libraries are pinned exactly in pyproject.toml (textual-plot, textual-hires-canvas) to the
versions tested; tests/tui/test_plot_patch.py fails loudly, naming what moved, when an upgrade
changes a version or removes anything listed in PRIVATE_USED below. Everything else in the lab
draws through PatchedPlot's public surface (plot_dataset, markers, ticks, render_pending).

- PatchedCanvas repaints only the rows that changed, looks the base style up once per frame,
  joins blanks into their style run, and renders a styled blank before it has a size (NO_COLOR).
- PatchedPlot adds dashed lines (modelled series), labelled vertical markers (phases) and epoch
  ticks, and lets the owner draw directly into the canvases instead of in a second render.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from itertools import pairwise
from typing import Self

from numpy.typing import ArrayLike
from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.containers import Grid
from textual.geometry import Region, Size
from textual.strip import Strip
from textual_hires_canvas import Canvas, HiResMode
from textual_plot import PlotWidget
from textual_plot.plot_widget import Legend, LinePlot

DASH = 2  # cells of line, then as many of gap, for a modelled series

# The private names used below, by class: what an upgrade must keep (checked by the test).
PRIVATE_USED: dict[type, tuple[str, ...]] = {
    Canvas: ("_buffer", "_styles", "_style_cache", "_canvas_size", "_refreshes_pending"),
    PlotWidget: (
        "_render_plot",
        "_render_line_plot",
        "_rerender",
        "_needs_rerender",
        "_needs_canvas_resize",
        "_datasets",
        "_x_min",
        "_x_max",
        "_scale_rectangle",
    ),
}


class PatchedCanvas(Canvas):
    """textual-hires-canvas's Canvas, repainting and rendering less, and safely:

    - a refresh repaints only the rows whose content changed since the last one;
    - the widget's base style is looked up once per frame, not once per line (that lookup walks
      the DOM and was most of a line's cost), and blanks join the style run they sit in, so a
      dashed line is one segment, not one per dash;
    - before it has a size it renders a blank with a style, not a segment without one, which
      Textual's monochrome filter (NO_COLOR) cannot take.
    """

    _base: Style | None = None
    _shown: list[int] | None = None  # a signature per row of what the terminal shows

    def reset(self, size: Size | None = None, refresh: bool = True) -> None:
        self._base = None
        super().reset(size, refresh)

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False) -> Self:
        if self._refreshes_pending or regions or layout or recompose:
            return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
        # Repaint only the rows that changed since the last repaint: between two redraws of a
        # live graph that is a few rows near the newest point, and nothing at all for tick
        # labels that did not move.
        rows = [hash(("".join(chars), tuple(styles))) for chars, styles in zip(self._buffer, self._styles)]
        shown, self._shown = self._shown, rows
        if shown is None or len(shown) != len(rows):
            return super().refresh(repaint=repaint)
        changed = [y for y, (a, b) in enumerate(zip(rows, shown)) if a != b]
        if not changed:
            return self
        if len(changed) > len(rows) // 2:
            return super().refresh(repaint=repaint)
        width = self._canvas_size.width
        return super().refresh(*(Region(0, y, width, 1) for y in changed), repaint=repaint)

    def notify_style_update(self) -> None:
        self._base = None
        self._shown = None
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        size = self._canvas_size
        if not size or not size.area or y >= size.height:
            return Strip.blank(0, self.rich_style or Style.null())
        if self._base is None:
            self._base = self.rich_style
        base = self._base
        chars, styles = self._buffer[y], self._styles[y]
        if not any(styles) and all(c == " " for c in chars):
            return Strip.blank(len(chars), base)
        cache = self._style_cache
        segments = []
        # A blank shows only its background, which every cell here shares: blanks join the run
        # they are in, so a dashed line costs one segment, not one per dash (less to draw, much
        # less to send over SSH).
        run_style, run_text = styles[0], [chars[0]]
        for char, style in zip(chars[1:], styles[1:]):
            if style == run_style or (char == " " and _blank_safe(style)):
                run_text.append(char)
                continue
            if run_text and all(c == " " for c in run_text) and _blank_safe(run_style):
                run_style = style  # a run of blanks takes the style of what follows
                run_text.append(char)
                continue
            segments.append(Segment("".join(run_text), base + (cache.get(run_style) or _parse(cache, run_style))))
            run_style, run_text = style, [char]
        segments.append(Segment("".join(run_text), base + (cache.get(run_style) or _parse(cache, run_style))))
        return Strip(segments)


def _parse(cache: dict[str, Style], style: str) -> Style | None:
    if not style:
        return None
    cache[style] = parsed = Style.parse(style)
    return parsed


_BLANK_SAFE: dict[str, bool] = {}


def _blank_safe(style: str) -> bool:
    """Whether a blank in this style looks like any other blank (no background, underline...)."""
    safe = _BLANK_SAFE.get(style)
    if safe is None:
        parsed = Style.parse(style) if style else Style.null()
        safe = _BLANK_SAFE[style] = not (
            parsed.bgcolor
            or parsed.underline
            or parsed.reverse
            or parsed.strike
            or parsed.overline
            or parsed.underline2
            or parsed.link
        )
    return safe


class PatchedPlot(PlotWidget):
    """PlotWidget plus what it lacks here: dashed lines and labelled vertical markers."""

    def compose(self) -> ComposeResult:
        # PlotWidget's layout, with the canvases above.
        with Grid():
            yield PatchedCanvas(1, 1, id="margin-top")
            yield PatchedCanvas(1, 1, id="margin-left")
            yield PatchedCanvas(1, 1, id="plot")
            yield PatchedCanvas(1, 1, id="margin-bottom")
        yield Legend(id="legend")

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, allow_pan_and_zoom=False)
        self.can_focus = False
        self.dashed: set[int] = set()  # ids of datasets drawn dashed
        self.markers: list[tuple[float, str]] = []  # (x, label) written at the top of each v-line
        self.ticks: list[float] = []  # x of each epoch's end, ticked on the bottom row
        self.last_render_s = 0.0

    def _render_plot(self) -> None:
        started = time.perf_counter()
        canvases = list(self.query(PatchedCanvas))
        # Every pixel and label the plot sets asks its canvas for a refresh: one per canvas.
        with ExitStack() as batch:
            for c in canvases:
                batch.enter_context(c.batch_refresh())
            super()._render_plot()
            self._render_markers()
        self.last_render_s = time.perf_counter() - started

    @property
    def ready(self) -> bool:
        """Laid out, with canvases of their final size (else the plot's render does it all)."""
        if self._needs_canvas_resize or not self.size.area:
            return False
        return all(c._canvas_size == c.size for c in self.query(PatchedCanvas) if c.size.area)

    def _render_markers(self) -> None:
        try:
            canvas = self.query_one("#plot", Canvas)
        except Exception:
            return
        if not canvas._canvas_size.area:  # not laid out yet: nothing to mark
            return
        # Epoch ticks along the bottom row, inside the frame.
        bottom = canvas._canvas_size.height - 2
        for x in self.ticks:
            if self._x_min <= x <= self._x_max:
                px, _ = self.get_pixel_from_coordinate(x, 0)
                canvas.write_text(px, bottom, "[bold]┴")
        if not self.markers:
            return
        # Phase names just right of their boundary, on the first row inside the frame; a name
        # that would run into the next one is shortened, then left out.
        placed = []
        for x, label in self.markers:
            if not self._x_min <= x <= self._x_max:
                continue
            px, _ = self.get_pixel_from_coordinate(x, 0)
            placed.append((px + 1, label))
        for i, (px, label) in enumerate(placed):
            limit = (placed[i + 1][0] - 2 if i + 1 < len(placed) else self._scale_rectangle.right) - px
            if limit >= 3:
                canvas.write_text(px, 1, f"[dim]{label[:limit]}")

    def _render_line_plot(self, dataset: LinePlot) -> None:
        if id(dataset) not in self.dashed:
            super()._render_line_plot(dataset)
            return
        canvas = self.query_one("#plot", Canvas)
        px = [self.get_hires_pixel_from_coordinate(xi, yi) for xi, yi in zip(dataset.x, dataset.y)]
        # Dashes anchored to the columns: two cells of line, two cells of gap, however far apart
        # the points are, so a modelled series reads as dashed in any colour (or none).
        segments = []
        for (x0, y0), (x1, y1) in pairwise(px):
            if x1 == x0:
                if math.floor(x0 / DASH) % 2 == 0:
                    segments.append((x0, y0, x1, y1))
                continue
            lo, hi = min(x0, x1), max(x0, x1)
            cuts = [lo] + [float(c) for c in range(math.floor(lo) + 1, math.ceil(hi))] + [hi]
            slope = (y1 - y0) / (x1 - x0)
            for a, b in pairwise(cuts):
                if b - a <= 1e-9 or math.floor((a + b) / 2 / DASH) % 2:
                    continue
                b = max(a, b - 0.01)  # keep clear of the next cell, which may be a gap
                segments.append((a, y0 + slope * (a - x0), b, y0 + slope * (b - x0)))
        canvas.draw_hires_lines(segments, style=dataset.line_style, hires_mode=dataset.hires_mode)

    direct = False  # set while our redraw draws the canvases itself

    def _rerender(self) -> None:
        if self.direct:
            self._needs_rerender = True  # drawn directly, right after: no repaint of the frame
        else:
            super()._rerender()

    def plot_dataset(
        self, x: ArrayLike, y: ArrayLike, style: str, dashed: bool = False, mode: HiResMode = HiResMode.BRAILLE
    ) -> None:
        self.plot(x, y, line_style=style, hires_mode=mode)
        if dashed:
            self.dashed.add(id(self._datasets[-1]))

    def clear(self) -> None:
        self.dashed = set()
        super().clear()

    def render_pending(self) -> None:
        """Render now what the plot has marked for its next render (after a direct redraw)."""
        if self._needs_rerender and self.ready:
            self._render_plot()
            self._needs_rerender = False
        elif self._needs_rerender:
            self.refresh()
