"""Run a plan of specs one worker at a time, with a live view of progress, watts and joules.

`PlanRunner` is the one plan runner: the CLI (rich progress, below) and the lab (tui.app) both
drive it and only turn its updates into what they show. It owns the order of the runs, cancel,
stalls (through engine.orchestrate.worker_process), holding the next run while the lab asks whether to quit, leaving
a run going when the lab closes, the plan file's bookkeeping (engine.orchestrate.plan_files: recorded
when the plan starts, each run marked, closed at the end, so whoever started a plan can have it
resumed) and the live Prometheus metrics server's lifecycle (engine.outputs.prometheus).

The CLI's rich progress reads each run through the one event fold (engine.orchestrate.event_fold),
as the lab does, so both show the same numbers.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

from engine.core.errors import EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_TERMINATED
from engine.core.events import (
    AnyEvent,
    Done,
    Epoch,
    Error,
    Hello,
    PhaseEnd,
    PhaseStart,
    Result,
    Sample,
)
from engine.core.events import (
    Progress as ProgressEvent,
)
from engine.core.records import RunSummary
from engine.core.spec import RunSpec, new_run_id
from engine.orchestrate import logs_watch
from engine.orchestrate import plan_files as plan_store
from engine.orchestrate.event_fold import RunFold
from engine.orchestrate.followed_run import FollowedRun
from engine.orchestrate.presets import PlannedRun
from engine.orchestrate.worker_process import RunOutcome, WorkerProcess, worker_command
from engine.store.run_log import load_summary


class PlanObserver(Protocol):
    """Something that watches a plan's runs as they happen: the live Prometheus metrics
    (engine.outputs.prometheus.MetricsServer), MLflow (engine.outputs.export.MlflowLogger).
    PlanRunner starts it before the first run and stops it when the plan ends, whoever built it;
    the output rooms implement it, so this room imports none of them."""

    @property
    def url(self) -> str | None:
        """Where it serves, shown when the plan starts (None: it serves nothing)."""
        ...

    def start(self) -> object: ...

    def stop(self) -> None: ...

    def begin(self, run_id: str, configuration: str, sample_hz: float) -> None:
        """A run starts, before its first event."""

    def observe(self, event: AnyEvent) -> None:
        """One event of the run begun last."""

    def end(self, outcome: RunOutcome) -> None:
        """The run's process ended (covers a crash, which sends no `done`)."""


# -- the plan runner ----------------------------------------------------------------------------
# Events a person should see at once; the others (samples, progress) wait for the next batch.
URGENT = (Hello, PhaseStart, PhaseEnd, Epoch, Result, Error, Done)


@dataclass(frozen=True)
class PlanStep:
    """One run of a plan, as the runner needs it."""

    spec: RunSpec
    config: str  # the configuration key (engine.analysis.stats groups by it)
    follow: bool = False  # a run already going (started elsewhere): followed through its log, not started
    plan_index: int | None = None  # its place in the plan file (engine.orchestrate.plan_files), when the plan has one
    label: str = ""  # what this run is within its plan, e.g. "scratch · seed 0" (the plan file's label)
    pair: str | None = None  # runs with the same pair are compared with each other


@dataclass(frozen=True)
class PlanStarted:
    """The plan is under way: recorded in `plan_file` (None: unrecorded), metrics at `metrics_url`."""

    plan_file: Path | None
    metrics_url: str | None


@dataclass(frozen=True)
class RunStarted:
    index: int
    run_id: str
    run_path: Path


@dataclass(frozen=True)
class RunEvents:
    """A batch of one run's events, in stream order (nothing dropped)."""

    index: int
    events: list[AnyEvent]


@dataclass(frozen=True)
class RunEnded:
    index: int
    outcome: RunOutcome
    summary: RunSummary | None  # None when the run left no readable summary


@dataclass(frozen=True)
class PlanEnded:
    outcomes: list[RunOutcome]
    summaries: list[RunSummary]  # of the runs that left one, in plan order
    stopped: bool  # cancelled before the end: a run was cancelled or the rest of the plan did not run
    cancelled: bool  # cancel was asked for (Ctrl-C, x, quit)


PlanUpdate = PlanStarted | RunStarted | RunEvents | RunEnded | PlanEnded


class PlanRunner:
    """Runs `steps` in order, one worker at a time; `updates()` yields what happens.

    `cancel()` (any number of times) stops the current run (SIGTERM, then SIGKILL, its partial
    log kept) and starts nothing more. `hold()` keeps the next run from starting until `release()`
    (the lab's quit dialog). `leave_running()` marks the plan left: when the caller then stops
    iterating (the lab closes), the current worker is not stopped and finishes its own log.
    Events come in batches: every `flush_s` seconds at most, at once for an URGENT event (0: each
    event is its own batch). With `stop_on_cancelled_run`, a run that ends cancelled without the
    plan being cancelled (someone pressed x on it elsewhere, or signalled its worker) ends the plan
    too, as the lab has always done; the CLI goes on to the next run.

    The plan file: with `plan_file` (a plan being resumed) this process takes it over; else, with a
    `title`, the plan is recorded in the first run's logs directory when it starts (steps without a
    run id get one, so the file names every run). Either way each run is marked as it starts and
    ends, and the plan is closed finished or stopped. Without either, nothing is recorded.
    `observers` (PlanObserver: live metrics, MLflow) are started first (one that cannot start, a
    metrics port taken, stops the plan before anything is recorded), fed every run and event, and
    stopped when the plan ends.

    `followed_plan`: the steps are a plan another process runs (its plan file, which this runner
    only reads): each follow step waits until that plan starts its run (engine.orchestrate.logs_watch
    .item_started, by the step's plan_index), and the plan ends early when its owner ends it.
    """

    def __init__(
        self,
        steps: Sequence[PlanStep],
        *,
        command: list[str] | None = None,
        batch: str | None = None,
        plan_file: Path | None = None,
        title: str | None = None,
        source: str = "cli",
        observers: Sequence[PlanObserver] = (),
        flush_s: float = 0.0,
        stop_on_cancelled_run: bool = False,
        followed_plan: Path | None = None,
    ) -> None:
        self.steps = list(steps)
        self.followed_plan = followed_plan
        self.stop_on_cancelled_run = stop_on_cancelled_run
        self.command = list(command or worker_command())
        self.batch = batch  # the batch every started run joins (None: the spec's own)
        self.plan_file = plan_file
        self.title, self.source = title, source  # how the plan file describes a new plan
        self.observers = list(observers)
        self.flush_s = flush_s
        self.cancelled = False
        self.left = False
        self.waiting_to_start = False  # held at the gate (read by the lab's tests and dialog)
        self._may_start = asyncio.Event()
        self._may_start.set()
        self._current: WorkerProcess | FollowedRun | None = None
        self._cancelling: asyncio.Task[None] | None = None

    # -- controls (call from the loop's thread) --------------------------------------------------
    def cancel(self) -> None:
        self.cancelled = True
        self._may_start.set()  # a held plan goes on to notice the cancel and stop
        if self._current is not None and self._cancelling is None:
            self._cancelling = asyncio.get_running_loop().create_task(self._current.cancel())

    def hold(self) -> None:
        self._may_start.clear()

    def release(self) -> None:
        self._may_start.set()

    def leave_running(self) -> None:
        """Quit without stopping the run: the plan is recorded as left (offered to finish next time)."""
        self.left = True
        if self.plan_file is not None:
            plan_store.close_plan(self.plan_file, "left")

    # -- the run ---------------------------------------------------------------------------------
    async def updates(self) -> AsyncGenerator[PlanUpdate, None]:
        started: list[PlanObserver] = []
        try:
            for observer in self.observers:  # first: one that cannot start stops the plan unrecorded
                observer.start()
                started.append(observer)
            self._record()
            urls = [url for o in self.observers if (url := o.url) is not None]
            yield PlanStarted(self.plan_file, urls[0] if urls else None)
            async with aclosing(self._run()) as updates:
                async for update in updates:
                    yield update
        finally:
            for observer in reversed(started):
                observer.stop()

    def _record(self) -> None:
        """Take over the plan file, or record a new plan (see the class's docstring)."""
        if self.plan_file is not None:
            plan_store.take_over(self.plan_file)
            return
        if self.title is None or not self.steps:
            return
        self.steps = [
            replace(step, spec=replace(step.spec, run_id=step.spec.run_id or new_run_id())) for step in self.steps
        ]
        items = [
            plan_store.PlanItem(spec=self._spec(s).to_dict(), label=s.label, config=s.config, pair=s.pair)
            for s in self.steps
        ]
        first = self.steps[0].spec
        self.plan_file = plan_store.record_plan(Path(first.logs_dir), first.run_id, self.title, self.source, items)
        if self.plan_file is not None:
            self.steps = [replace(s, plan_index=i) for i, s in enumerate(self.steps)]

    def _spec(self, step: PlanStep) -> RunSpec:
        """The spec a step runs with: in the runner's batch, when it has one."""
        return replace(step.spec, batch=self.batch) if self.batch else step.spec

    async def _run(self) -> AsyncGenerator[PlanUpdate, None]:
        outcomes: list[RunOutcome] = []
        summaries: list[RunSummary] = []
        stopped = False
        for index, step in enumerate(self.steps):
            if not self._may_start.is_set():  # the quit dialog is open: start nothing until it closes
                self.waiting_to_start = True
                await self._may_start.wait()
                self.waiting_to_start = False
            if self.cancelled:
                stopped = True
                break
            if step.follow and self.followed_plan is not None and step.plan_index is not None:
                run_id = await logs_watch.item_started(
                    self.followed_plan, step.plan_index, Path(step.spec.logs_dir), give_up=lambda: self.cancelled
                )
                if run_id is None:  # its owner ended the plan before this run (or we were cancelled)
                    stopped = True
                    break
                step = replace(step, spec=replace(step.spec, run_id=run_id))
            proc = await self._open(step)
            self._mark(step, proc.spec.run_id, None)
            yield RunStarted(index, proc.spec.run_id, proc.run_path)
            for observer in self.observers:
                observer.begin(proc.spec.run_id, step.config, step.spec.sample_hz)
            async with aclosing(self._stream(index, proc)) as batches:
                async for update in batches:
                    yield update
            try:
                outcome = await proc.wait()
                if self._cancelling is not None:
                    await self._cancelling  # the group is gone before anything goes on
            except BaseException:  # the caller stopped listening (the lab closed) while the worker exits
                if not self.left:
                    await proc.cancel()
                raise
            self._current, self._cancelling = None, None
            for observer in self.observers:
                observer.end(outcome)
            summary = load_summary(outcome.run_path)
            self._mark(step, outcome.run_id, outcome.status)
            outcomes.append(outcome)
            if summary is not None:
                summaries.append(summary)
            yield RunEnded(index, outcome, summary)
            run_cancelled = outcome.status == "cancelled" and self.stop_on_cancelled_run
            if run_cancelled or self.cancelled:
                stopped = index + 1 < len(self.steps) or outcome.status == "cancelled"
                break
        if self.plan_file is not None:
            plan_store.close_plan(self.plan_file, "stopped" if stopped else "finished")
        yield PlanEnded(outcomes, summaries, stopped, self.cancelled)

    async def _open(self, step: PlanStep) -> WorkerProcess | FollowedRun:
        proc: WorkerProcess | FollowedRun
        if step.follow:
            proc = FollowedRun(Path(step.spec.logs_dir) / step.spec.run_id)
        else:
            proc = WorkerProcess(self._spec(step), list(self.command))
            await proc.start()
        self._current = proc
        if self.cancelled:  # cancelled while it was starting
            self._cancelling = asyncio.get_running_loop().create_task(proc.cancel())
        return proc

    async def _stream(self, index: int, proc: WorkerProcess | FollowedRun) -> AsyncGenerator[RunEvents, None]:
        """The run's events in batches, until its stream ends. A caller that stops listening (the
        lab closing) stops the run too, unless it was left running."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[AnyEvent | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for event in proc.events():
                    queue.put_nowait(event)
            finally:
                queue.put_nowait(None)

        reader = loop.create_task(read())
        batch: list[AnyEvent] = []
        deadline = 0.0
        try:
            while True:
                try:
                    wait = max(0.0, deadline - loop.time()) if batch else None
                    event = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    yield RunEvents(index, batch)
                    batch = []
                    continue
                if event is None:
                    break
                for observer in self.observers:
                    observer.observe(event)
                if not batch:
                    deadline = loop.time() + self.flush_s
                batch.append(event)
                if self.flush_s <= 0 or isinstance(event, URGENT):
                    yield RunEvents(index, batch)
                    batch = []
            if batch:
                yield RunEvents(index, batch)
            await reader  # re-raises what ended the stream, if it was an error
        except BaseException:
            reader.cancel()
            if not self.left:
                await proc.cancel()
            raise

    def _mark(self, step: PlanStep, run_id: str, status: str | None) -> None:
        if self.plan_file is not None and step.plan_index is not None:
            plan_store.mark_item(self.plan_file, step.plan_index, run_id, status)


# -- the CLI's view of a plan -------------------------------------------------------------------
@dataclass
class PlanResult:
    outcomes: list[RunOutcome]
    interrupted: bool  # a signal stopped the plan: the rest of it did not start
    batch: str = ""
    signal: signal.Signals | None = None  # which one (PlanSignals); None: no signal came

    @property
    def left_running(self) -> bool:
        """SIGHUP: the current run was left to finish and the plan to resume."""
        return self.signal == signal.SIGHUP


EXIT_FOR_SIGNAL = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED, signal.SIGHUP: EXIT_HANGUP}


class PlanSignals:
    """What a headless plan does on the signals a person, a scheduler or a dropped session sends.

    SIGINT (Ctrl-C) and SIGTERM (`kill`, `timeout`, systemd, Slurm) cancel the plan: the current
    worker's process group gets SIGTERM, then SIGKILL, its partial log is kept and nothing more
    starts. SIGHUP (the SSH session dropped) leaves the current run going (its worker is in its
    own session and finishes its own log without a reader), marks the plan left so `joulelab run
    --resume` finishes it, and stops the task that follows the plan (`hung_up` then). The first
    signal decides; later ones only repeat a cancel.
    """

    HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, runner: PlanRunner) -> None:
        self.runner = runner
        self.received: signal.Signals | None = None
        self._task: asyncio.Task[object] | None = None

    @property
    def hung_up(self) -> bool:
        return self.received == signal.SIGHUP

    def __enter__(self) -> PlanSignals:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for sig in self.HANDLED:
            loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.HANDLED:
            loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.hung_up:
            return  # left: nothing to cancel any more
        first = self.received = self.received or sig
        if first == signal.SIGHUP:
            self.runner.leave_running()
            if self._task is not None:
                self._task.cancel()
        else:
            self.runner.cancel()

    def stopped_following(self) -> None:
        """The task caught the cancel that SIGHUP sent it, and ends normally."""
        if self._task is not None:
            self._task.uncancel()


async def execute_plan(
    plan: list[PlannedRun],
    console: Console | None,
    *,
    title: str | None = None,
    observers: Sequence[PlanObserver] = (),
    batch: str | None = None,
) -> PlanResult:
    """Run every planned spec in order through PlanRunner. With a console, show rich progress;
    without, stay quiet.

    With a `title`, the plan is recorded in the logs directory's plan files, so `joulelab run
    --resume` can finish it if this process goes away. `observers` watch the runs (PlanRunner):
    live Prometheus metrics until the plan ends, each run logged to MLflow as soon as it has ended.

    Signals are handled here, explicitly (PlanSignals): SIGINT and SIGTERM cancel the plan (the
    cancelled run's outcome, partial energy kept, is recorded and no further run starts); SIGHUP
    leaves the current run going and the plan recorded as left, to resume. `batch` continues an
    earlier plan's batch (more trials of the same run).
    """
    batch = batch or new_run_id()
    steps = [PlanStep(p.spec, p.config.key, label=p.label, pair=p.pair) for p in plan]
    runner = PlanRunner(steps, batch=batch, title=title, source="cli", observers=observers)
    view = _PlanProgress(plan, console) if console is not None else None
    outcomes: list[RunOutcome] = []
    with PlanSignals(runner) as signals:
        try:
            async with aclosing(runner.updates()) as updates:
                async for update in updates:
                    match update:
                        case PlanStarted(metrics_url=url) if url is not None and console is not None:
                            console.print(f"serving live metrics at {url}", highlight=False)
                        case RunEnded(outcome=outcome):
                            outcomes.append(outcome)
                    if view is not None:
                        view.show(update)
        except asyncio.CancelledError:
            if not signals.hung_up:
                raise
            signals.stopped_following()
        finally:
            if view is not None:
                _quietly(view.stop)  # after a hangup the terminal may be gone
    return PlanResult(outcomes, runner.cancelled or signals.hung_up, batch, signals.received)


def _quietly(write: Callable[[], object]) -> None:
    """Write to a terminal that may have gone with the session (SIGHUP): EIO is not an error here."""
    try:
        write()
    except OSError:
        pass


def run_progress(console: Console, *, counts: bool) -> Progress:
    """The started rich progress the CLI shows runs in (a plan here, Slurm jobs in engine.orchestrate.slurm):
    one line per run with its detail and energy fields; `counts` adds an n/N column."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        *([TaskProgressColumn()] if counts else []),
        TextColumn("{task.fields[detail]}"),
        TextColumn("{task.fields[energy]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        refresh_per_second=4,
    )
    progress.start()
    return progress


class _PlanProgress:
    """Rich progress of a plan: one line per run (phase, epoch, watts, joules) and the plan's count."""

    def __init__(self, plan: list[PlannedRun], console: Console) -> None:
        self.plan = plan
        self.progress = run_progress(console, counts=True)
        self.overall = self.progress.add_task(f"[bold]{len(plan)} runs", total=len(plan), detail="", energy="")
        self.task = self.overall
        self.live = RunFold()

    def show(self, update: PlanUpdate) -> None:
        progress, live = self.progress, self.live
        match update:
            case RunStarted(index=index):
                planned = self.plan[index]
                self.live = RunFold()
                label = f"{planned.config.key} #{planned.trial + 1}"
                self.task = progress.add_task(label, total=None, detail="starting", energy="")
            case RunEvents(events=events):
                shown = False
                for event in events:
                    live.update(event)
                    shown |= isinstance(event, (ProgressEvent, Sample, PhaseStart))
                if shown:
                    total = live.steps * live.epochs if live.steps and live.epochs else None
                    done = ((live.epoch or 1) - 1) * (live.steps or 0) + (live.step or 0) if total else None
                    progress.update(
                        self.task, total=total, completed=done, detail=live.progress_text(), energy=live.energy_text()
                    )
            case RunEnded(index=index, outcome=outcome):
                progress.update(
                    self.task,
                    detail=f"{outcome.status}  {live.progress_text()}",
                    energy=live.energy_text(),
                    total=1,
                    completed=1,
                )
                progress.update(self.overall, completed=index + 1)

    def stop(self) -> None:
        self.progress.stop()


def resume_latest_plan(
    logs_dir: Path, console: Console | None = None, warn: Callable[[str], None] | None = None
) -> int:
    """`joulelab run --resume`: finish the newest interrupted plan in this logs directory, following
    a run that is still going and starting the rest (through PlanRunner, which marks each run in
    the plan file, takes it over and closes it). The runs go to `logs_dir`, where the plan file
    lies, whatever directory the plan recorded (it may have been moved, or named relatively from
    elsewhere). A damaged plan file is skipped and named through `warn`. Signals as in
    execute_plan (PlanSignals). Returns the exit code: 0 when there was nothing to resume or
    everything completed, 1 when a run did not complete, EXIT_FOR_SIGNAL of a signal that came."""
    from engine.core.spec import new_run_id, spec_from_dict

    def say(text: str) -> None:
        if console is not None:
            _quietly(lambda: console.print(text, highlight=False, markup=False, soft_wrap=True))

    plans = plan_store.interrupted_plans(logs_dir, on_damaged=lambda _path, line: warn(line) if warn else None)
    if not plans:
        say(f"no interrupted plan in {logs_dir}")
        return 0
    plan = plans[0]
    say(f"resuming {plan.describe()}")
    recorded = {rest.item.spec.get("logs_dir") for rest in plan.remaining} - {None}
    if any(Path(str(d)).resolve() != Path(logs_dir).resolve() for d in recorded):
        named = ", ".join(sorted(map(str, recorded)))
        say(f"the plan named {named} for its runs; they go to {logs_dir}, where the plan lies")
    steps = []
    for rest in plan.remaining:
        # a run still going is followed where it is; the others start afresh with a new id
        run_id = rest.item.run_id if rest.follow else new_run_id()
        spec = spec_from_dict({**rest.item.spec, "run_id": run_id, "logs_dir": str(logs_dir)}, str(plan.path))
        steps.append(
            PlanStep(
                spec,
                rest.item.config,
                follow=rest.follow,
                plan_index=rest.index,
                label=rest.item.label,
                pair=rest.item.pair,
            )
        )

    async def run() -> int:
        failed, cancelled = 0, None
        runner = PlanRunner(steps, plan_file=plan.path)
        with PlanSignals(runner) as signals:
            try:
                async with aclosing(runner.updates()) as updates:
                    async for update in updates:
                        match update:
                            case RunStarted(index=index, run_id=run_id):
                                rest = plan.remaining[index]
                                doing = "waiting for" if rest.follow else "running"
                                say(
                                    f"{doing} {rest.item.label} ({run_id})" + (", still running" if rest.follow else "")
                                )
                            case RunEnded(outcome=outcome):
                                failed += outcome.status != "complete"
                                cancelled = outcome.run_id if outcome.status == "cancelled" else cancelled
                                say(f"  {outcome.status}")
            except asyncio.CancelledError:
                if not signals.hung_up:
                    raise
                signals.stopped_following()
        if signals.received is not None:
            say(interrupted_line(signals.received, logs_dir, cancelled))
            return EXIT_FOR_SIGNAL[signals.received]
        return 1 if failed else 0

    return asyncio.run(run())


def interrupted_line(sig: signal.Signals, logs_dir: Path, cancelled_run: str | None = None) -> str:
    """The one line a headless plan ends with when a signal stopped it (PlanSignals)."""
    if sig == signal.SIGHUP:
        return (
            f"hangup: the run going now finishes on its own; the rest of the plan waits for "
            f"`joulelab run --resume --logs {logs_dir}`"
        )
    what = f"run {cancelled_run} was cancelled" if cancelled_run else "no run had started"
    return (
        f"{'interrupted' if sig == signal.SIGINT else 'terminated'}: {what}; its partial log is kept and no "
        f"further run started (see `joulelab runs --logs {logs_dir}`)"
    )
