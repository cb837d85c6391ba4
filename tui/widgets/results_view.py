"""Results: per-configuration energy and accuracy, transfer versus scratch with intervals and a
verdict, the energy to a target accuracy (typed in its field, or a preset's target_accuracy), and the
energy-to-accuracy curves. The numbers come from engine.analysis.stats and the tables from
engine.outputs.tables, the same ones the CLI prints, so the lab and `joulelab run` never disagree."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Input, Static

from engine.analysis import stats
from engine.core.records import TRAINING_PHASES, RunSummary
from engine.core.spec import target_problem
from engine.outputs.tables import comparison_table, config_table, target_comparison_table, target_table, verdicts
from tui.widgets.lab_form import NumberField
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
    target: float | None = None  # the validation accuracy whose energy is shown (None: no target tables)

    def compose(self) -> ComposeResult:
        yield Static(
            "No results yet: they appear here when a run or a preset finishes, or when you "
            "compare runs from the History tab (select with space, then m).",
            id="results-title",
        )
        # below the tables: at 80x24 the comparison and its verdict come first, the target after
        yield Static("", id="results-tables")
        yield NumberField(
            placeholder="target accuracy, e.g. 0.9, then Enter: the energy to reach it",
            type="number",
            id="target-accuracy",
        )
        yield Static("", id="target-tables")  # the energy to the target, just below where it is typed
        yield CurveGraph(id="curve-graph")

    def on_mount(self) -> None:
        self.query_one(CurveGraph).display = False

    def show(
        self, title: str, summaries: list[RunSummary], note: str | None = None, target: float | None = None
    ) -> None:
        """Show these runs' results; `target` (a preset's target_accuracy) replaces the field's."""
        if target is not None:
            self.target = target
            self.query_one("#target-accuracy", Input).value = f"{target:g}"
        self.results_title, self.summaries, self.results_note = title, summaries, note
        self._render_results()

    @on(Input.Submitted, "#target-accuracy")
    def _target_submitted(self, event: Input.Submitted) -> None:
        raw = event.value.strip()
        problem: str | None = None
        try:
            target = float(raw) if raw else None
        except ValueError:
            target, problem = None, f"expected a number such as 0.9, got {raw!r}"
        if target is not None:
            problem = target_problem(target)
        if problem:
            self.app.notify(f"Target accuracy: {problem}", severity="error")
            return
        self.target = target
        if hasattr(self, "summaries"):
            self._render_results()

    def _render_results(self) -> None:
        summaries, target = self.summaries, self.target
        complete = [s for s in summaries if s.complete]
        # the same functions as `compare --target-accuracy`, so the lab and the CLI never disagree
        self.config_stats = stats.config_stats(complete, target)
        from engine.analysis.calibrate import load_noise_floor

        self.comparisons = stats.compare(
            complete, load_noise_floor(on_problem=lambda why: self.app.notify(why, severity="warning")), target
        )
        skipped = len(summaries) - len(complete)
        head = Text(self.results_title, style="bold")
        if skipped:
            head.append(f"  ({skipped} run{'s' if skipped > 1 else ''} not complete, left out)", style="yellow")
        if self.results_note:
            head.append(f"\n{self.results_note}", style="dim")
        self.query_one("#results-title", Static).update(head)
        parts: list[RenderableType] = []
        if self.config_stats:
            parts.append(
                _lean(config_table(self.config_stats, title="Energy (net of idle) and accuracy per configuration"))
            )
        if self.comparisons:
            parts += [Text(""), _lean(comparison_table(self.comparisons, title="Transfer vs scratch (paired by seed)"))]
        if self.comparisons:
            parts += [Text(""), Text("Verdict", style="bold"), verdicts(self.comparisons)]
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
        to_target: list[RenderableType] = []
        if any(s.to_target is not None for s in self.config_stats):
            to_target.append(_lean(target_table(self.config_stats)))
        if any(c.to_target is not None for c in self.comparisons):
            to_target += [Text(""), _lean(target_comparison_table(self.comparisons))]
        self.query_one("#target-tables", Static).update(Group(*to_target))
        curves = curves_of(complete)
        graph = self.query_one(CurveGraph)
        graph.display = bool(curves)
        graph.set_curves(curves)

    @property
    def verdict_text(self) -> str:
        return " ".join(c.verdict for c in getattr(self, "comparisons", []))
