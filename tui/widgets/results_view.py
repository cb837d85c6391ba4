"""Results: per-configuration energy and accuracy, transfer versus scratch with intervals and a
verdict, and the energy-to-accuracy curves. The numbers come from engine.analysis.stats and the tables from
engine.outputs.tables, the same ones the CLI prints, so the lab and `joulelab run` never disagree."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.analysis import stats
from engine.core.records import TRAINING_PHASES, RunSummary
from engine.outputs.tables import comparison_table, config_table, verdicts
from tui.widgets.power_graph import CurveGraph


def curves_of(summaries: list[RunSummary]) -> list[tuple[str, list[float], list[float], bool]]:
    """One curve per run: the target task's epochs (train, then pruning's fine-tuning continuing
    from where training ended), validation accuracy in % against cumulative joules."""
    out = []
    for s in summaries:
        points = [p for p in s.curve if p.phase in TRAINING_PHASES]
        if not points:
            continue
        offset, xs, ys, modelled = 0.0, [], [], False
        train_total = s.total("train")
        for p in points:
            if p.phase == "prune" and train_total is not None:
                offset = train_total.gross_j
            xs.append(offset + p.cumulative_j)
            ys.append(100 * p.val_accuracy_frac)
            modelled = modelled or p.source == "modelled"
        label = f"{s.spec.get('mode', '?')} s{s.spec.get('seed', '?')}"
        out.append((label, xs, ys, modelled))
    return out


def _lean(table: Table) -> Table:
    """engine.outputs.tables's table with lighter rules, so it fits 80 columns without folding as much."""
    table.box = box.SIMPLE_HEAD
    table.show_edge = False
    table.pad_edge = False
    return table


class ResultsView(VerticalScroll):
    can_focus = True

    def compose(self) -> ComposeResult:
        yield Static(
            "No results yet: they appear here when a run or a preset finishes, or when you "
            "compare runs from the History tab (select with space, then m).",
            id="results-title",
        )
        yield Static("", id="results-tables")
        yield CurveGraph(id="curve-graph")

    def on_mount(self) -> None:
        self.query_one(CurveGraph).display = False

    def show(self, title: str, summaries: list[RunSummary], note: str | None = None) -> None:
        complete = [s for s in summaries if s.complete]
        self.summaries = summaries
        self.config_stats = stats.config_stats(complete)
        from engine.analysis.calibrate import load_noise_floor

        self.comparisons = stats.compare(
            complete, load_noise_floor(on_problem=lambda why: self.app.notify(why, severity="warning"))
        )
        skipped = len(summaries) - len(complete)
        head = Text(title, style="bold")
        if skipped:
            head.append(f"  ({skipped} run{'s' if skipped > 1 else ''} not complete, left out)", style="yellow")
        if note:
            head.append(f"\n{note}", style="dim")
        self.query_one("#results-title", Static).update(head)
        parts: list[RenderableType] = []
        if self.config_stats:
            parts.append(
                _lean(config_table(self.config_stats, title="Energy (net of idle) and accuracy per configuration"))
            )
        if self.comparisons:
            parts += [
                Text(""),
                _lean(comparison_table(self.comparisons, title="Transfer vs scratch (paired by seed)")),
                Text(""),
                Text("Verdict", style="bold"),
                verdicts(self.comparisons),
            ]
        elif self.config_stats:
            parts += [
                Text(""),
                Text(
                    "No comparison: it needs complete transfer and scratch runs with the same "
                    "seeds (mode: transfer vs scratch).",
                    style="dim",
                ),
            ]
        if not parts:
            parts.append(Text("No complete run to summarise.", style="yellow"))
        self.query_one("#results-tables", Static).update(Group(*parts))
        curves = curves_of(complete)
        graph = self.query_one(CurveGraph)
        graph.display = bool(curves)
        graph.set_curves(curves)

    @property
    def verdict_text(self) -> str:
        return " ".join(c.verdict for c in getattr(self, "comparisons", []))
