"""A past run reopened from History: its phases and energy, its power over time, and for a run
that crashed or failed, the error and the tail of its stderr.log."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from engine.core.events import FAILED_STATUSES, AnyEvent, PhaseStart, Sample
from engine.core.run_files import EVENTS, STDERR
from engine.outputs.tables import run_table
from engine.store.run_log import RunRecord, read_events
from tui import fmt
from tui.livestate import RunState
from tui.widgets.power_graph import PowerGraph
from tui.widgets.run_totals import RunTotals


def stderr_tail(run_path: Path, lines: int = 15) -> str:
    try:
        with open(run_path / STDERR, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def fold_log(record: RunRecord) -> tuple[RunState, list[AnyEvent]]:
    events, _bad = read_events(record.path / EVENTS)
    state = RunState()
    for event in events:
        state.update(event)
    return state, events


class RunDetail(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, record: RunRecord) -> None:
        super().__init__()
        self.record = record

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail", classes="dialog"):
            yield Static(id="detail-title")
            yield RunTotals("phases", id="detail-totals")
            yield PowerGraph(id="detail-graph")
            yield Static(id="detail-body")
        yield Footer()

    def on_mount(self) -> None:
        r = self.record
        s = r.summary
        state, events = fold_log(r)
        title = Text.assemble(
            (f"Run {r.run_id}", "bold"),
            "  ",
            (s.config if s is not None else None) or r.spec.get("config") or "",
            "  ",
            (r.status, "bold"),
            f"  started {r.started}",
        )
        if s is not None:
            title.append(f"  took {fmt.duration(s.duration_s)}")
        title.append(f"\n{r.path}", style="dim")
        self.query_one("#detail-title", Static).update(title)
        self.query_one(RunTotals).show(state, r.status)
        graph = self.query_one(PowerGraph)
        graph.set_meters(state.meters)
        t0 = state.t0
        if t0 is not None:
            for e in events:
                match e:
                    case Sample():
                        graph.add_sample(e.t - t0, {n: (d["w"], d["source"]) for n, d in e.domains.items()})
                    case PhaseStart():
                        graph.add_boundary(e.t - t0, e.phase)
        graph.display = bool(graph.series)
        body: list[RenderableType] = []
        metrics = s.metrics if s is not None else None
        if metrics is not None and metrics.accuracy_frac is not None:
            body.append(
                Text(
                    f"accuracy {fmt.percent(metrics.accuracy_frac)}  F1 {metrics.f1_macro_frac or 0:.3f}  "
                    f"J/train sample {fmt.per_unit(metrics.j_per_train_sample)}  "
                    f"J/inference {fmt.per_unit(metrics.j_per_inference)}"
                )
            )
        if s is not None and s.phases:
            body += [Text(""), run_table(s)]
        if r.status in ("cancelled", *FAILED_STATUSES):
            error = (
                (s.error if s is not None else None)
                or state.error
                or (
                    f"the worker ended without a summary; last phase: {r.last_phase or 'none'}"
                    if r.status == "crashed"
                    else None
                )
            )
            if error:
                body += [Text(""), Text(f"{r.status}: {error}", style="bold red")]
            tail = stderr_tail(r.path)
            if tail.strip():
                body += [Text("last lines of stderr.log:", style="bold"), Text(tail)]
        if state.missing:
            body += [
                Text(""),
                Text("not metered: " + "; ".join(m.get("reason", "") for m in state.missing), style="dim"),
            ]
        self.query_one("#detail-body", Static).update(Group(*body))

    def action_close(self) -> None:
        self.dismiss(None)
