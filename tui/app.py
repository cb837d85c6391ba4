"""The JouleLab app: a view of the engine. Everything that runs goes through engine.orchestrate.worker_process.

    JouleLabApp(logs_dir=..., worker_command=..., data_dir=..., spec_defaults=...)

The app is built with its dependencies injected (where logs go, which worker command runs a spec,
where the real data is, defaults for every spec), so tests run it against a fake worker.

Runs happen in one declared Textual worker (`run_plan`, group "run", exclusive): it drives the
engine's plan runner (engine.orchestrate.plan_runner.PlanRunner: sequencing, cancel, stalls, the plan file) and turns
its updates into messages, events in throttled batches; widgets never touch the process. One
Worker.StateChanged handler turns any failure of a worker into a visible error, and the app stays
usable.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, overload

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import Button, TabbedContent
from textual.worker import Worker, WorkerState

from engine.core.errors import JouleLabError
from engine.core.events import FAILED_STATUSES
from engine.core.records import RunSummary
from engine.core.spec import SpecError, new_run_id
from engine.core.timestamps import clock_time, compact_stamp
from engine.orchestrate import plan_files as plan_store
from engine.orchestrate import plan_runner as runs
from engine.orchestrate.logs_watch import LogsWatch
from engine.orchestrate.plan_runner import PlanObserver
from engine.orchestrate.worker_process import worker_command as default_worker_command
from engine.store.run_log import RunRecord, default_logs_dir, load_summary, worker_alive
from tui import fmt
from tui.lab_plan import RunPlan, attached_plan, followed_plan, lab_plan, preset_plan, resumed_plan
from tui.messages import (
    DatasetsDescribed,
    ExportDone,
    LogsScanned,
    PlanFinished,
    PlanStarted,
    ReferenceLoaded,
    RunEvents,
    RunFinished,
    RunStarted,
)
from tui.screens.confirm_quit import LEAVE, STOP, ConfirmQuit
from tui.screens.export_dialog import ExportDialog, ExportRequest
from tui.screens.main import TAB_IDS, MainScreen
from tui.screens.path_prompt import PathPrompt
from tui.screens.resume_plan import FINISH, SET_ASIDE, ResumePlan
from tui.screens.run_detail import RunDetail, stderr_tail
from tui.widgets.history_view import HistoryTable, HistoryView
from tui.widgets.lab_form import NO_LOADERS, LabForm, fallback_entries
from tui.widgets.live_view import LiveView
from tui.widgets.presets_view import PresetList, PresetsView
from tui.widgets.results_view import ResultsView

WATCH_S = 1.0  # how often the logs directory is listed: a run started elsewhere is followed within ~1 s
FLUSH_S = 0.25  # events reach the widgets at most this late (engine.orchestrate.plan_runner.PlanRunner batches them)
PANE_FOCUS = {
    "lab": "#dataset",
    "history": "#history-table",
    "presets": "#preset-list",
    "results": "#results",
    "live": None,
}


def describe_real_datasets(data_dir: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """engine.worker.data.locate's description of each dataset, or only synthetic, saying why."""
    try:
        from engine.worker.data.locate import describe_datasets, resolve_data_dir
    except ImportError:
        return fallback_entries(NO_LOADERS), NO_LOADERS
    try:
        return describe_datasets(resolve_data_dir(data_dir)), None
    except Exception as exc:
        return fallback_entries(NO_LOADERS), f"{NO_LOADERS} ({type(exc).__name__}: {exc})"


AnyMessage = TypeVar("AnyMessage", bound=Message)


@overload
def while_open(
    handler: Callable[[JouleLabApp, AnyMessage], Awaitable[None]],
) -> Callable[[JouleLabApp, AnyMessage], Awaitable[None]]: ...
@overload
def while_open(handler: Callable[[JouleLabApp, AnyMessage], None]) -> Callable[[JouleLabApp, AnyMessage], None]: ...
def while_open(handler: Callable[[JouleLabApp, AnyMessage], Any]) -> Callable[[JouleLabApp, AnyMessage], Any]:
    """For handlers of a worker's messages: one that arrives after the lab closed (its screens are
    gone, so views raise NoMatches) is dropped, never an error at exit."""
    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def guarded_async(self: JouleLabApp, message: AnyMessage) -> None:
            try:
                await handler(self, message)
            except NoMatches:
                pass

        return guarded_async

    @functools.wraps(handler)
    def guarded(self: JouleLabApp, message: AnyMessage) -> None:
        try:
            handler(self, message)
        except NoMatches:
            pass

    return guarded


class JouleLabApp(App[None]):
    TITLE = "JouleLab"
    SUB_TITLE = "energy and accuracy of training mechanisms"
    CSS_PATH = Path(__file__).parent / "app.tcss"  # absolute: subclasses elsewhere find it too
    ENABLE_COMMAND_PALETTE = False  # every action is on a key; the footer's room goes to them
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False, priority=True)]

    def __init__(
        self,
        *,
        logs_dir: str | Path | None = None,
        worker_command: list[str] | None = None,
        data_dir: str | None = None,
        spec_defaults: dict[str, Any] | None = None,
        run_id_factory: Callable[[], str] | None = None,
        preset_paths: list[Path] | None = None,
        datasets: Callable[[str | None], tuple[list[dict[str, Any]], str | None]] | None = None,
        metrics_port: int | None = None,
        metrics_addr: str | None = None,
        carbon_intensity: float | None = None,
    ) -> None:
        super().__init__()
        # g CO2e per kWh for the totals, and the export: one figure, shown with where it comes from
        self.carbon_intensity, self.carbon_source = fmt.carbon_setting(carbon_intensity)
        self.metrics_port, self.metrics_addr = metrics_port, metrics_addr  # live Prometheus metrics
        self.logs_dir = Path(logs_dir) if logs_dir is not None else default_logs_dir()
        self.worker_command = list(worker_command or default_worker_command())
        self.data_dir = data_dir
        self.spec_defaults = dict(spec_defaults or {})
        self.run_id_factory = run_id_factory or new_run_id
        if preset_paths is None:
            from engine.orchestrate.presets import available

            preset_paths = available()
        self.preset_paths = list(preset_paths)
        self._datasets = datasets or describe_real_datasets
        self.running = False
        self.plan: RunPlan | None = None
        self.current_run: tuple[int, Path] | None = None
        self.runner: runs.PlanRunner | None = None  # the plan going now
        self._quit_after_run = False
        self._history_stale = True
        self.left_running: Path | None = None
        self.plan_summaries: dict[int, RunSummary] = {}  # the plan's ended runs, by plan index
        self._not_followed: set[Path] = set()  # followed plans the user cancelled
        self.messages: list[tuple[str, str, str, str]] = []  # (time, severity, title, text) of each toast

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """A toast, kept in the message log too (n opens it): an export's path outlives its toast."""
        self.messages.append((clock_time(), severity, title, str(message)))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def action_messages(self) -> None:
        from tui.screens.message_log import MessageLog

        self.push_screen(MessageLog(self.messages))

    @property
    def waiting_to_start(self) -> bool:
        """The plan waits for the quit dialog to close before its next run (read by tests)."""
        return self.runner is not None and self.runner.waiting_to_start

    def get_default_screen(self) -> MainScreen:
        return MainScreen()

    # -- views ---------------------------------------------------------------------------
    @property
    def main_screen(self) -> Screen[None]:
        """The screen under any dialogs. Raises NoMatches once the lab has closed (the stack is
        empty then), so a worker's late message is dropped where views are looked up."""
        if not self.screen_stack:
            raise NoMatches("the lab has closed")
        return self.screen_stack[0]

    @property
    def form(self) -> LabForm:
        return self.main_screen.query_one(LabForm)

    @property
    def live(self) -> LiveView:
        return self.main_screen.query_one(LiveView)

    @property
    def results(self) -> ResultsView:
        return self.main_screen.query_one(ResultsView)

    @property
    def history(self) -> HistoryView:
        return self.main_screen.query_one(HistoryView)

    @property
    def presets_view(self) -> PresetsView:
        return self.main_screen.query_one(PresetsView)

    @property
    def active_tab(self) -> str:
        tab_id = self.main_screen.query_one(TabbedContent).active
        return next((name for name, tid in TAB_IDS.items() if tid == tab_id), "lab")

    @property
    def ready(self) -> bool:
        """The main screen is composed: keys typed ahead of this are ignored, never fatal."""
        main = self.screen_stack[0] if self.screen_stack else None
        return isinstance(main, MainScreen) and main.composed

    def show_tab(self, name: str) -> None:
        main = self.main_screen
        main.query_one(TabbedContent).active = TAB_IDS[name]
        if name == "history" and self._history_stale:
            self.reload_history()
        if name == "live" and not self.running:
            self.scan_logs(offer_plans=False)  # a run started elsewhere since: follow it
        self._focus_pane(name)

    def _focus_pane(self, name: str) -> None:
        """Keys go to the shown tab: focus its main widget unless focus is already inside it (a
        click on the tab bar, or focus left in a hidden pane, would otherwise keep the keys)."""
        main = self.main_screen
        pane = main.query_one(f"#{TAB_IDS[name]}")
        focused = main.focused
        if focused is not None and pane in focused.ancestors:
            return
        main.refresh_bindings()  # the graph's keys belong to Live
        target = PANE_FOCUS.get(name)
        if target is None:
            main.set_focus(None)  # Live has nothing to type into: the screen's keys apply
        else:
            main.query_one(target).focus()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if not self.ready:  # the lab is closing (or not yet open): nothing to focus
            return
        name = next((n for n, tid in TAB_IDS.items() if tid == event.pane.id), None)
        if name == "history" and self._history_stale:
            self.reload_history()
        if name is not None:
            self._focus_pane(name)

    def reload_history(self) -> None:
        self._history_stale = False
        self.history.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("run", "cancel_run") and not self.ready:
            return False
        if action == "run":
            return None if self.running else True
        if action == "cancel_run":
            return True if self.running else None
        return True

    def _set_running(self, running: bool) -> None:
        self.running = running
        self.form.set_running(running)
        self.main_screen.refresh_bindings()

    # -- datasets ------------------------------------------------------------------------
    @work(thread=True, group="datasets", exit_on_error=False)
    def find_datasets(self) -> None:
        entries, note = self._datasets(self.data_dir)
        self.post_message(DatasetsDescribed(entries, note))

    @while_open
    def on_datasets_described(self, message: DatasetsDescribed) -> None:
        self.form.set_datasets(message.entries)
        self.presets_view.set_datasets(message.entries)
        if message.note and message.note != NO_LOADERS:
            self.notify(message.note, title="Real datasets", severity="warning")

    # -- running -------------------------------------------------------------------------
    def action_run(self) -> None:
        if self.running:
            self.notify("A run is in progress: x cancels it.", severity="warning")
            return
        if self.active_tab == "presets":
            path = self.presets_view.highlighted
            if path is None:
                self.notify("No preset to run.", severity="warning")
                return
            why = self.presets_view.unavailable(path)
            if why:
                self.notify(why, title=f"Cannot run {path.stem}: data missing", severity="error", timeout=10)
                return
            self.run_preset(path)
            return
        try:
            choice = self.form.choice()
            plan = lab_plan(
                choice,
                defaults=self.spec_defaults,
                logs_dir=self.logs_dir,
                data_dir=self.data_dir,
                run_id=self.run_id_factory,
            )
        except JouleLabError as exc:  # a form value or spec that cannot run: the message names it
            self.form.show_error(str(exc))
            self.show_tab("lab")
            self.notify(getattr(exc, "short", str(exc)), title="Cannot run", severity="error")
            return
        self.say_user_code(plan)
        self.start(plan)

    def say_user_code(self, plan: RunPlan) -> None:
        """Before a plan that imports a network of the user's own: whose code, from where."""
        from engine.orchestrate.presets import user_networks

        for line in user_networks(item.spec for item in plan.items):
            self.notify(line, title="Your network", timeout=8)

    def run_preset(self, path: Path) -> None:
        try:
            plan = preset_plan(path, logs_dir=self.logs_dir, data_dir=self.data_dir, run_id=self.run_id_factory)
        except JouleLabError as exc:
            self.notify(str(exc), title="Cannot run the preset", severity="error")
            return
        self.say_user_code(plan)
        self.start(plan)

    def start(self, plan: RunPlan, show: bool = True) -> None:
        self.plan = plan
        steps = [
            runs.PlanStep(item.spec, item.config, item.follow, item.plan_index, item.label, item.pair)
            for item in plan.items[plan.first :]
        ]
        # What Results shows of the plan: every run of it that has ended (those that ended before
        # a followed plan was found are read now), grown as each run ends.
        self.plan_summaries = {
            i: summary
            for i, item in enumerate(plan.items[: plan.first])
            if (summary := load_summary(self.logs_dir / item.spec.run_id)) is not None
        }
        # The runner records the lab's and presets' plans (a dropped session leaves a plan the lab
        # can finish), takes over a resumed one, and serves the metrics while the plan runs.
        recorded = plan.plan_file is None and plan.source in ("lab", "preset")
        self.runner = runs.PlanRunner(
            steps,
            command=self.worker_command,
            plan_file=plan.plan_file,
            title=plan.title if recorded else None,
            source=plan.source,
            observers=self.plan_observers(),
            flush_s=FLUSH_S,
            stop_on_cancelled_run=True,
            followed_plan=plan.followed_file,
        )
        self._set_running(True)
        self.live.start_plan(plan)
        if show:
            self.show_tab("live")
        self.sub_title = f"running: {plan.title}"
        self.run_plan(plan, self.runner)

    def plan_observers(self) -> list[PlanObserver]:
        """What watches each plan the lab runs: live Prometheus metrics with --metrics-port."""
        if self.metrics_port is None:
            return []
        from engine.outputs.prometheus import DEFAULT_ADDR, MetricsServer

        return [MetricsServer(self.metrics_port, self.metrics_addr or DEFAULT_ADDR)]

    def action_cancel_run(self) -> None:
        if not self.running or self.runner is None:
            self.notify("Nothing is running.", severity="information")
            return
        self.runner.cancel()
        self.sub_title = "cancelling…"

    @work(exclusive=True, group="run", exit_on_error=False)
    async def run_plan(self, plan: RunPlan, runner: runs.PlanRunner) -> None:
        """Turn the plan runner's updates into messages; never touch a widget."""
        self.post_message(PlanStarted(plan))
        async with aclosing(runner.updates()) as updates:
            async for update in updates:
                match update:  # the runner counts its own steps; the plan may begin before them
                    case runs.RunStarted() | runs.RunEvents() | runs.RunEnded():
                        update = replace(update, index=update.index + plan.first)
                match update:
                    case runs.RunStarted(index=index, run_path=run_path):
                        self.post_message(RunStarted(index, plan.items[index], run_path))
                    case runs.RunEvents(index=index, events=events):
                        self.post_message(RunEvents(index, events))
                    case runs.RunEnded(index=index, outcome=outcome, summary=summary):
                        tail = "" if outcome.status == "complete" else stderr_tail(outcome.run_path)
                        error = outcome.error or (summary.error if summary is not None else None)
                        self.post_message(
                            RunFinished(
                                index,
                                plan.items[index],
                                outcome.run_id,
                                outcome.run_path,
                                outcome.status,
                                outcome.exit_code,
                                error,
                                summary,
                                tail,
                            )
                        )
                    case runs.PlanEnded(outcomes=outcomes, summaries=summaries, stopped=stopped):
                        statuses = [o.status for o in outcomes]
                        self.post_message(PlanFinished(plan, summaries, statuses, stopped))

    # -- runs and plans found in the logs directory ---------------------------------------
    @work(thread=True, group="scan", exclusive=True, exit_on_error=False)
    def scan_logs(self, offer_plans: bool = True) -> None:
        """Runs going in the logs directory (to follow) and, with `offer_plans`, unfinished plans."""
        from engine.store.run_log import list_runs

        interrupted = plan_store.interrupted_plans(self.logs_dir, self._damaged_plan) if offer_plans else []
        self.post_message(LogsScanned(plan_store.running_runs(self.logs_dir), interrupted, list_runs(self.logs_dir)))

    def _damaged_plan(self, path: Path, line: str) -> None:
        """A plan file that cannot be read is skipped, and said so in one line (from the scan's thread)."""
        self.call_from_thread(self.notify, line, title="Damaged plan file", severity="warning", timeout=10)

    @work(thread=True, group="records", exclusive=True, exit_on_error=False)
    def scan_records(self) -> None:
        """The presets' estimates after a run completed (only the records, no offer to resume)."""
        from engine.store.run_log import list_runs

        self.post_message(LogsScanned([], [], list_runs(self.logs_dir)))

    @while_open
    def on_logs_scanned(self, message: LogsScanned) -> None:
        self.presets_view.set_history(message.records)
        if self.running:
            return
        if message.interrupted:
            interrupted = message.interrupted[0]

            def chosen(choice: str | None) -> None:
                if choice == FINISH:
                    self.start(resumed_plan(interrupted, self.run_id_factory))
                elif choice == SET_ASIDE:
                    plan_store.close_plan(interrupted.path, "stopped")
                    self.scan_logs()
                elif message.running:
                    self.attach(message.running[-1])

            self.push_screen(ResumePlan(interrupted.describe(), str(interrupted.path)), chosen)
        elif message.running:
            self.attach(message.running[-1])

    def attach(self, run_path: Path, show: bool = True) -> None:
        """Follow a run started elsewhere (the CLI, another lab, an earlier session): Live shows
        it, x cancels it. A run of a recorded plan is followed with the rest of its plan."""
        try:
            plan = followed_plan(run_path, self.logs_dir) or attached_plan(run_path)
        except (OSError, ValueError, KeyError, TypeError, SpecError) as exc:
            self.notify(f"{run_path}: {exc}", title="Cannot follow the run", severity="warning")
            return
        if plan.followed_file is not None and plan.followed_file in self._not_followed:
            return  # the user cancelled following this plan: its later runs are theirs to watch
        what = f"run {plan.first + 1}/{len(plan.items)} of plan {plan.title}" if plan.followed else run_path.name
        self.notify(f"{what} is running: following it (x cancels it)", title="Run in progress")
        self.start(plan, show=show)

    # -- watching the logs directory -------------------------------------------------------
    def start_watching(self) -> None:
        """Notice runs that start or end in the logs directory while the lab is open (whoever
        started them): one directory listing a second (engine.orchestrate.logs_watch.LogsWatch)."""
        self.logs_watch = LogsWatch(self.logs_dir)
        self.logs_watch.poll()  # what is there already: scan_logs offers and follows that
        self.set_interval(WATCH_S, self._watch_logs)

    def _watch_logs(self) -> None:
        if not self.ready:
            return
        change = self.logs_watch.poll()
        if change is None:
            return
        self._history_stale = True
        if self.active_tab == "history":
            self.reload_history()  # new runs and changed statuses, the selection kept
        if change.ended:
            self.scan_records()  # the presets' estimates
        if not change.started:
            return
        if self.running and self.plan is not None:
            mine = {item.spec.run_id for item in self.plan.items}
            for run_id in change.started:
                if run_id not in mine:
                    self.notify(
                        f"another run started: {run_id}; h shows it in History, Live follows it after this plan",
                        title="Run started elsewhere",
                    )
            return
        self.follow_going()

    def follow_going(self) -> None:
        """Live is idle (or what it followed has ended): follow the newest run going, if any."""
        going = [self.logs_dir / r for r in sorted(self.logs_watch.going)]
        alive = [path for path in going if worker_alive(path)]
        if alive and not self.running:
            self.attach(alive[-1], show=self.active_tab in ("lab", "live"))

    @while_open
    async def on_run_started(self, message: RunStarted) -> None:
        self.current_run = (message.index, message.run_path)
        await self.live.run_started(message.index)
        self.load_reference(message.index, message.item.config, message.item.spec.run_id)
        n = len(self.plan.items) if self.plan else 1
        self.sub_title = f"run {message.index + 1}/{n}: {message.item.label}"

    @work(thread=True, group="reference", exclusive=True, exit_on_error=False)
    def load_reference(self, index: int, config: str, run_id: str) -> None:
        """The newest complete run of this configuration before this one, as total watts by time."""
        from engine.core.run_files import EVENTS
        from engine.orchestrate.event_fold import power_trace
        from engine.store.run_log import list_runs, read_events

        for record in reversed(list_runs(self.logs_dir)):
            summary = record.summary
            if record.run_id == run_id or record.status != "complete" or summary is None or summary.config != config:
                continue
            events, _ = read_events(record.path / EVENTS)
            t, w = power_trace(events)  # the engine's totals: no platform (psys), no cross-check domain
            if t:
                self.post_message(ReferenceLoaded(index, f"past {record.run_id}", t, w))
            return

    @while_open
    def on_reference_loaded(self, message: ReferenceLoaded) -> None:
        if self.live.current == message.index:
            self.live.graph.set_reference(message.label, message.t, message.w)

    @while_open
    def on_run_events(self, message: RunEvents) -> None:
        self.live.fold(message.index, message.events)

    @while_open
    def on_run_finished(self, message: RunFinished) -> None:
        if message.status == "complete":
            self.scan_records()
        self.live.run_finished(message.index, message.status, message.error, message.stderr_tail)
        if message.summary is not None:
            self.plan_summaries[message.index] = message.summary
        plan = self.plan
        if plan is not None and len(plan.items) > 1 and message.index + 1 < len(plan.items):
            # Results grow with the plan: the comparison of every run of it that has ended so far.
            ended = sum(1 for st in self.live.statuses.values() if st not in ("queued", "running"))
            self.results.show(
                f"Results so far: {plan.title}",
                self.ordered_summaries(),
                f"{ended} of {len(plan.items)} runs ended; updated as each run ends",
                plan.target_accuracy,
            )
        self._history_stale = True
        if self.active_tab == "history":
            self.reload_history()

    def ordered_summaries(self) -> list[RunSummary]:
        return [self.plan_summaries[i] for i in sorted(self.plan_summaries)]

    @while_open
    def on_plan_finished(self, message: PlanFinished) -> None:
        self.current_run = None
        self._set_running(False)
        # The plan's count: a followed plan's runs that ended before the lab found it count too.
        statuses = [*message.plan.ended_before, *message.statuses]
        complete = sum(1 for s in statuses if s == "complete")
        failed = sum(1 for s in message.statuses if s in FAILED_STATUSES)
        if failed:
            self.notify(
                f"{failed} of {len(message.statuses)} run{'s' if len(message.statuses) > 1 else ''} "
                "failed: the Live tab shows the error and the end of stderr.log",
                title="Run failed",
                severity="error",
                timeout=6,
            )
        self.sub_title = f"done: {complete}/{len(message.plan.items)} complete" + (
            " (stopped)" if message.stopped else ""
        )
        summaries = self.ordered_summaries() or message.summaries
        if summaries:
            note = None
            if message.stopped:
                note = "stopped before the end: the runs that did not happen are missing"
            self.results.show(f"Results: {message.plan.title}", summaries, note, message.plan.target_accuracy)
            if complete == len(message.plan.items) and self.active_tab == "live":
                self.show_tab("results")
        self.live.plan_finished()
        if message.stopped and message.plan.followed_file is not None and self.runner and self.runner.cancelled:
            self._not_followed.add(message.plan.followed_file)  # x: stop following this plan
        if self._quit_after_run:
            self.exit()
            return
        if hasattr(self, "logs_watch"):
            self.follow_going()  # a run that started elsewhere meanwhile

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        """The one place a worker's failure becomes a visible error."""
        worker = event.worker
        if event.state == WorkerState.ERROR:
            error = worker.error
            # A JouleLabError's one line is written for the user; anything else is a bug: name its type.
            if isinstance(error, JouleLabError):
                message = str(error)
            else:
                message = f"{type(error).__name__}: {error}" if error is not None else "unknown error"
            if worker.group == "run":
                self.live.show_error(
                    f"The run stopped: {message}\n(the app is still usable; fix the problem and press r to run again)"
                )
                self._set_running(False)
                self.sub_title = "run failed"
            self.notify(message, title=f"{worker.group or 'worker'} failed", severity="error", timeout=10)
        elif worker.group == "run" and event.state == WorkerState.CANCELLED and self.running:
            self._set_running(False)  # cancelled from outside (the app closing): nothing runs now

    # -- buttons -------------------------------------------------------------------------
    @on(Button.Pressed, "#run")
    def _run_pressed(self) -> None:
        self.action_run()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel_run()

    # -- history -------------------------------------------------------------------------
    @on(HistoryTable.Requested)
    def _history_request(self, message: HistoryTable.Requested) -> None:
        history = self.history
        if message.what == "reload":
            self.reload_history()
        elif message.what == "toggle":
            history.toggle()
        elif message.what == "open":
            record = history.highlighted
            if record is not None:
                self.push_screen(RunDetail(record))
        elif message.what == "compare":
            records = history.chosen()
            summaries = [r.summary for r in records if r.summary]
            if not summaries:
                self.notify("Select runs with a summary (space), then m.", severity="warning")
                return
            self.results.show(f"Compared {len(records)} run{'s' if len(records) != 1 else ''} from history", summaries)
            self.show_tab("results")
        elif message.what == "export":
            records = history.chosen()
            if not records:
                self.notify("No runs to export.", severity="warning")
                return
            stamp = compact_stamp()

            def done(request: ExportRequest | None) -> None:
                if request is not None:
                    self.export_runs(records, request)

            self.push_screen(ExportDialog(len(records), self.logs_dir, stamp), done)

    @work(thread=True, group="export", exit_on_error=False)
    def export_runs(self, records: list[RunRecord], request: ExportRequest) -> None:
        from engine.outputs.export import ExportError, write

        try:
            paths = write(records, request.fmt, request.out, carbon_intensity=self.carbon_intensity)
        except ExportError as exc:
            self.post_message(ExportDone([], str(exc)))
            return
        self.post_message(ExportDone(paths))

    def on_export_done(self, message: ExportDone) -> None:
        if message.error:
            self.notify(message.error, title="Export failed", severity="error", timeout=10)
        else:
            where = ", ".join(str(p) for p in message.paths[:4]) + (" …" if len(message.paths) > 4 else "")
            self.notify(f"wrote {where}", title="Exported", timeout=8)

    # -- presets -------------------------------------------------------------------------
    @on(PresetList.Requested)
    def _preset_request(self, message: PresetList.Requested) -> None:
        if message.what == "run":
            self.action_run()
        elif message.what == "open":

            def opened(value: str | None) -> None:
                if value:
                    path = Path(value).expanduser()
                    if not path.is_file():
                        self.notify(f"{path}: no such file", severity="error")
                        return
                    self.presets_view.add_path(path)

            self.push_screen(PathPrompt("Open a preset file (.toml)", "path/to/preset.toml"), opened)

    # -- quitting ------------------------------------------------------------------------
    async def action_quit(self) -> None:
        if not self.running:
            self.exit()
            return
        index, run_path = self.current_run or (0, self.logs_dir)
        what = ""
        if self.plan is not None:
            what = f"run {index + 1} of {len(self.plan.items)}: {self.plan.items[index].label}"
            rest = len(self.plan.items) - index - 1
            if rest and self.plan.followed:  # another process runs the plan: quitting the lab stops none of it
                what += f" of plan {self.plan.title}; its process starts the {rest} after it"
            elif rest:
                what += f"; the {rest} queued after it will not start"

        runner = self.runner

        def chosen(choice: str | None) -> None:
            if choice == STOP:
                self._quit_after_run = True
                self.action_cancel_run()  # the run going now, whichever it is; nothing new starts
                self.notify("Stopping the run, then quitting…")
            elif choice == LEAVE:
                self.left_running = run_path
                if runner is not None:
                    runner.leave_running()  # the plan is offered to finish next time
                self.exit()
                return
            if runner is not None:
                runner.release()

        if runner is not None:
            runner.hold()  # while the dialog is open the plan starts no new run
        self.push_screen(ConfirmQuit(what, str(run_path)), chosen)


def run_app(
    logs_dir: str | Path | None = None,
    data_dir: str | None = None,
    worker_command: list[str] | None = None,
    metrics_port: int | None = None,
    metrics_addr: str | None = None,
) -> None:
    """The `joulelab` entry point (engine/cli.py calls this with no arguments)."""
    app = JouleLabApp(
        logs_dir=logs_dir,
        data_dir=data_dir,
        worker_command=worker_command,
        metrics_port=metrics_port,
        metrics_addr=metrics_addr,
    )
    app.run()
    if app.left_running is not None:
        print(f"joulelab: the run goes on in the background; its log: {app.left_running}")
