"""The live view of a plan while it runs: power graph, progress, and running joule totals.

The app hands it the worker's messages (`run_started`, `fold`, `run_finished`); it folds events
into one `RunState` per run and redraws its text at most four times a second, and only when
something changed. The graph shows the current run; the totals show every run of the current
pair side by side (transfer and scratch with the same seed) as they accumulate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from rich.text import Span, Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from engine.core.events import AnyEvent, Epoch, Hello, PhaseEnd, PhaseStart, Sample
from tui import fmt
from tui.lab_plan import RunPlan
from tui.livestate import RunState
from tui.widgets.power_graph import PowerGraph
from tui.widgets.run_totals import RunTotals

if TYPE_CHECKING:
    from textual import getters

    from tui.app import JouleLabApp

IDLE_HINT = "Nothing running: r runs the Lab's choice; p lists presets."  # one line at 80 columns
TICK_HZ = 2.0  # text and graph redraw rate: one screen update each half second, cheap at 200x60
TEXT_EVERY = 2  # the numbers once a second: enough to read them, and half the repaints


_SHOWN: WeakKeyDictionary[Static, tuple[str, tuple[Span, ...]]] = WeakKeyDictionary()  # what each Static shows


def set_text(widget: Static, text: Text, layout: bool = False) -> None:
    """Update a Static only when its text changed (no repaint, no layout for nothing)."""
    key = (text.plain, tuple(text.spans))
    if _SHOWN.get(widget) != key:
        _SHOWN[widget] = key
        widget.update(text, layout=layout)


class LiveView(Vertical):
    if TYPE_CHECKING:
        app = getters.app(JouleLabApp)  # for mypy: self.app is the lab (declared only; no import at run time)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.plan: RunPlan | None = None
        self.states: dict[int, RunState] = {}
        self.statuses: dict[int, str] = {}
        self.current: int | None = None
        self.shown_pair: list[int] = []
        self.durations: list[float] = []
        self.errors: dict[int, str] = {}
        self.totals: dict[int, RunTotals] = {}
        self._dirty = False

    def compose(self) -> ComposeResult:
        yield Static(IDLE_HINT, id="live-title")
        yield Static("", id="live-progress")
        yield PowerGraph(id="power-graph", redraw_hz=None)  # drawn on this view's timer
        yield Horizontal(id="live-totals")
        yield Static("", id="live-notes")
        yield Static("", id="live-error")

    def on_mount(self) -> None:
        # One timer for text and graph, so a tick is one screen update; paused while hidden.
        self._ticks = 0
        self._timer = self.set_interval(1 / TICK_HZ, self._tick)
        self.query_one("#live-error").display = False

    def on_show(self) -> None:
        self._timer.resume()

    def on_hide(self) -> None:
        self._timer.pause()

    @property
    def graph(self) -> PowerGraph:
        return self.query_one(PowerGraph)

    # -- fed by the app ------------------------------------------------------------------
    def start_plan(self, plan: RunPlan) -> None:
        self.plan = plan
        self.states, self.statuses, self.errors = {}, {i: "queued" for i in range(len(plan.items))}, {}
        self.statuses.update(enumerate(plan.ended_before))  # a followed plan's runs that ended before
        self.current, self.shown_pair, self.durations = None, [], []
        self.query_one("#live-error", Static).display = False
        self.graph.reset()
        self._dirty = True

    async def run_started(self, index: int) -> None:
        members = self.plan.pair_members(index) if self.plan else [index]
        if members == self.shown_pair and self.current is not None and self.current in members:
            # The next run of the pair: the one before stays on the graph, on the same time axis.
            self.graph.next_run(self.plan.items[self.current].label if self.plan else None)
        else:
            self.graph.reset()
        self.current = index
        self.states[index] = RunState()
        self.statuses[index] = "running"
        if members != self.shown_pair:
            self.shown_pair = members
            box = self.query_one("#live-totals", Horizontal)
            await box.remove_children()
            self.totals = {
                i: RunTotals(self.plan.items[i].label if self.plan else f"run {i + 1}", classes="run-totals")
                for i in members
            }
            for widget in self.totals.values():
                widget.g_per_kwh = self.app.carbon_intensity
            await box.mount_all(list(self.totals.values()))
        self._dirty = True

    def fold(self, index: int, events: list[AnyEvent]) -> None:
        state = self.states.setdefault(index, RunState())
        graph = self.graph if index == self.current else None
        for event in events:
            state.update(event)
            if graph is None:
                continue
            match event:
                case Sample():
                    graph.add_sample(
                        state.since_start(event.t), {n: (d["w"], d["source"]) for n, d in event.domains.items()}
                    )
                case Hello():
                    graph.set_meters(state.meters)
                case PhaseStart():
                    graph.add_boundary(state.since_start(event.t), event.phase)
                case PhaseEnd() if event.phase != "test":
                    graph.add_boundary(state.since_start(event.t), "setup")  # until the next phase starts
                case Epoch():
                    graph.add_epoch(state.since_start(event.t))
        self._dirty = True

    def run_finished(self, index: int, status: str, error: str | None, stderr_tail: str) -> None:
        self.statuses[index] = status
        state = self.states.get(index)
        if state is not None and state.elapsed_s:
            self.durations.append(state.elapsed_s)
        if status != "complete":
            label = self.plan.items[index].label if self.plan else f"run {index + 1}"
            lines = [f"{label}: {status}" + (f" - {error}" if error else "")]
            if stderr_tail.strip():
                lines += ["", "last lines of stderr.log:", stderr_tail.rstrip()]
            self.errors[index] = "\n".join(lines)
            panel = self.query_one("#live-error", Static)
            panel.update(Text("\n\n".join(self.errors.values())))
            panel.display = True
            panel.set_class(status == "cancelled", "-cancelled")
        self._dirty = True

    def plan_finished(self) -> None:
        """The plan ended: runs still queued will not run (no 'more runs' left on the screen)."""
        for i, status in self.statuses.items():
            if status in ("queued", "running"):
                self.statuses[i] = "not run" if status == "queued" else "ended"
        self._dirty = True
        self.refresh_text()

    def show_error(self, message: str) -> None:
        panel = self.query_one("#live-error", Static)
        panel.update(Text(message))
        panel.display = True

    # -- drawing -------------------------------------------------------------------------
    def _tick(self) -> None:
        if not self.display or not self.is_on_screen:
            return
        self._ticks += 1
        if self._dirty and self._ticks % TEXT_EVERY == 0:
            self.refresh_text()
        self.graph.tick()

    def refresh_text(self) -> None:
        self._dirty = False
        if self.plan is None:
            return
        for i, widget in self.totals.items():
            widget.show(self.states.get(i), self.statuses.get(i))
        # These lines have fixed heights (app.tcss): a changed text needs no new layout.
        set_text(self.query_one("#live-title", Static), self._title(self.plan))
        set_text(self.query_one("#live-progress", Static), self._progress())
        set_text(self.query_one("#live-notes", Static), self._notes())

    def _title(self, plan: RunPlan) -> Text:
        n = len(plan.items)
        if self.current is None:
            return Text.assemble((plan.title, "bold"), "  starting…")
        item = plan.items[self.current]
        config = item.config.removesuffix("/baseline")
        where = f"run {self.current + 1}/{n}"
        if plan.followed:  # another process runs the plan: say which one this is
            where += f" of plan {plan.title}"
        return Text.assemble(
            (where, "bold"),
            "  ",
            (config, "bold"),
            f"  seed {item.spec.seed}  ",
            (item.spec.run_id, "dim"),
        )

    def _progress(self) -> Text:
        if self.current is None or self.current not in self.states:
            return Text("")
        s = self.states[self.current]
        status = self.statuses.get(self.current, "running")
        parts: list[tuple[str, str] | str] = [((s.phase or "starting") if status == "running" else status, "bold")]
        training = s.phase not in ("idle", "test", None) or status != "running"
        if training and s.epoch is not None and status == "running":
            parts.append(f"epoch {s.epoch}/{s.epochs}")
            if s.steps:
                parts.append(f"step {s.step}/{s.steps}")
        if training and s.loss is not None:
            parts.append(f"loss {s.loss:.3f}")
        if training and s.accuracy is not None:
            parts.append(f"acc {fmt.percent(s.accuracy)}")
        if s.val_accuracy is not None:
            parts.append(f"val {fmt.percent(s.val_accuracy)}")
        if training and s.samples_per_s and status == "running":
            parts.append(f"{s.samples_per_s:,.0f} samples/s")
        parts.append(f"elapsed {fmt.duration(s.elapsed_s)}")
        left = s.phase_remaining_s if status == "running" else None
        if left is not None:
            parts.append(f"{s.phase} left ~{fmt.duration(left)}")
        queued = sum(1 for st in self.statuses.values() if st == "queued")
        if queued:
            mean = sum(self.durations) / len(self.durations) if self.durations else None
            parts.append(
                f"{queued} more run{'s' if queued > 1 else ''}" + (f" ~{fmt.duration(mean * queued)}" if mean else "")
            )
        parts.append(f"{s.mark()}{s.total_w:.1f} W" if s.watts else "")
        if status == "running" and s.busy_text():
            # Other processes are taking the CPU: what is measured now is not the mechanism alone.
            parts.append((s.busy_text().strip(), "bold reverse"))
        text = Text()
        for part in parts:
            if not part:
                continue
            if text:
                text.append("  ")
            if isinstance(part, tuple):
                text.append(part[0], style=part[1])
            else:
                text.append(part)
        return text

    def _notes(self) -> Text:
        if self.current is None or self.current not in self.states:
            return Text("")
        s = self.states[self.current]
        sources = {source for n in s.domain_names() if (source := s.domain_source(n))}
        text = Text(fmt.source_notes(sources), style="dim")
        if sources:
            text.append(" · J net of the idle baseline", style="dim")
            text.append(f"\ngCO2e at {self.app.carbon_intensity:g} g/kWh ({self.app.carbon_source})", style="dim")
        if s.missing:
            text.append(
                "\nnot metered: " + "; ".join(m.get("reason", m.get("meter", "")) for m in s.missing), style="dim"
            )
        return text
