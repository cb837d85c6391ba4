"""One run's joules per phase and domain, net of the idle baseline, with their provenance."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from rich.console import Group, RenderableType
from rich.text import Text
from textual.widgets import Static

from engine.core.energy import in_totals
from engine.core.events import PHASES
from engine.outputs.tables import SOURCE_MARK, STATUS_STYLE
from tui import fmt
from tui.livestate import RunState

CUT = " †"  # a phase that stopped early: its joules are what was measured until then


def _short(name: str, width: int = 10) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def totals_rows(state: RunState, running: bool = True) -> tuple[list[str], list[tuple[list[str], str]]]:
    """(header, [(cells, style)]): phases down, domains across, net joules of each."""
    names = [n for n in state.domain_names() if in_totals(state.domain_kind(n))]
    platform = [n for n in state.domain_names() if not in_totals(state.domain_kind(n))]  # psys, cross-checks
    shown = names + platform
    header = ["phase", *[SOURCE_MARK.get(state.domain_source(n) or "", "") + _short(n) for n in shown], "net J"]
    rows = []
    for phase in PHASES:
        row = state.rows.get(phase)
        if row is None:
            continue
        if phase == "idle":
            label = "idle W"
            values = [fmt.joules(state.idle_w.get(n) if row.final else None, state.domain_source(n)) for n in shown]
            total = fmt.joules(sum(state.idle_w.get(n, 0.0) for n in names), state.overall_source) if row.final else "…"
        else:
            unfinished = "" if row.final else ("…" if running else CUT)
            label = phase + (CUT if row.partial else unfinished)
            values = [fmt.joules(row.net_j.get(n), state.domain_source(n)) for n in shown]
            total = fmt.joules(row.total_net_j, state.overall_source)
        rows.append(([label, *values, total], "" if row.final else "italic"))
    if state.watts and running:
        rows.append(
            (
                [
                    "now W",
                    *[fmt.joules(state.watts.get(n), state.domain_source(n)) for n in shown],
                    fmt.joules(state.total_w, state.overall_source),
                ],
                "dim",
            )
        )
    return header, rows


def totals_text(header: list[str], rows: list[tuple[list[str], str]]) -> Text:
    """Laid out by hand, not by rich.Table: this is redrawn four times a second."""
    widths = [max(len(header[i]), *(len(cells[i]) for cells, _ in rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return " " + first + "".join("  " + c.rjust(w) for c, w in zip(cells[1:], widths[1:]))

    text = Text(line(header), style="bold", no_wrap=True, overflow="ellipsis")
    for cells, style in rows:
        text.append("\n")
        text.append(line(cells), style=style or None)
    if any(cells[0].endswith(CUT) for cells, _ in rows):
        text.append("\n † stopped early (joules until then)", style="dim")
    return text


class RunTotals(Static):
    """A titled totals table for one run; several sit side by side in a paired comparison."""

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self.title = title
        self.status = "queued"
        self.g_per_kwh = fmt.carbon_setting()[0]  # the app sets its own (configurable) figure

    def show(self, state: RunState | None, status: str | None = None) -> None:
        if status:
            self.status = status
        head = Text.assemble((self.title, "bold"), "  ", (self.status, f"bold {STATUS_STYLE.get(self.status, '')}"))
        if state is None or not state.rows:
            waiting = {
                "queued": "queued: starts when the run before it ends",
                "running": "waiting for the worker…",
            }.get(self.status, "did not run: the plan stopped")
            self._set(("waiting", self.status), 2, lambda: Group(head, Text(waiting, style="dim")))
            return
        header, rows = totals_rows(state, running=self.status == "running")
        net = state.net_total_j
        units = Text(
            " " + fmt.energy_units(net, state.overall_source, self.g_per_kwh),
            style="bold",
            no_wrap=True,
            overflow="ellipsis",
        )
        key = (self.status, tuple(header), tuple((tuple(cells), style) for cells, style in rows), units.plain)
        cut = any(cells[0].endswith(CUT) for cells, _ in rows)
        self._set(key, 3 + len(rows) + cut, lambda: Group(head, totals_text(header, rows), units))

    def _set(self, key: Hashable, lines: int, make: Callable[[], RenderableType]) -> None:
        """Repaint only when something changed; lay out again only when the height did."""
        if key == getattr(self, "_key", None):
            return
        self._key = key
        layout = lines != getattr(self, "_lines", None)
        self._lines = lines
        self.update(make(), layout=layout)
