"""Run a plan of specs one worker at a time, with a live view of progress, watts and joules.

`LiveTotals` folds a run's events into what a person watches (phase, epoch, watts, running joules
with provenance); the CLI's rich progress and the TUI both read it, so both show the same numbers.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

from engine.meters.base import in_totals, weakest_source
from engine.presets import PlannedRun
from engine.runner import RunOutcome, WorkerProcess
from engine.spec import new_run_id

if TYPE_CHECKING:
    from engine.export import MlflowTarget  # imports pandas: only where MLflow is used


@dataclass
class LiveTotals:
    """Running state of one run, built only from its events."""

    phase: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    val_accuracy: float | None = None
    samples_per_s: float | None = None
    watts: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    joules_now: dict[str, float] = field(default_factory=dict)  # cumulative meter joules at the last sample
    joules_at_start: dict[str, float] = field(default_factory=dict)
    phase_j: dict[str, float] = field(default_factory=dict)  # finished phases: gross J (all domains)
    phase_start_j: float = 0.0
    status: str | None = None
    machine: dict | None = None  # the last second's contention: {others_cpu_share, steal_share, contended}

    def update(self, event: dict) -> None:
        kind = event["type"]
        if kind == "hello":
            for m in event.get("meters", []):
                self.sources[m["name"]] = m["source"]
                self.kinds[m["name"]] = m["kind"]
        elif kind == "sample":
            for name, d in event["domains"].items():
                self.joules_at_start.setdefault(name, d["j"])
                self.joules_now[name] = d["j"]
                if d.get("w") is not None:
                    self.watts[name] = d["w"]
                self.sources.setdefault(name, d["source"])
            if event.get("machine") is not None:
                self.machine = event["machine"]
        elif kind == "phase_start":
            self.phase = event["phase"]
            self.phase_start_j = self.total_j
            self.epoch = self.step = None
        elif kind == "phase_end":
            self.phase_j[event["phase"]] = event["total"]["gross_j"]
        elif kind == "progress":
            for key in ("epoch", "epochs", "step", "steps", "loss", "accuracy", "samples_per_s"):
                setattr(self, key, event.get(key))
        elif kind == "epoch":
            self.val_accuracy = event["val_accuracy"]
        elif kind == "done":
            self.status = event["status"]

    def _counted(self) -> list[str]:
        return [n for n in self.joules_now if in_totals(self.kinds.get(n))]

    @property
    def total_w(self) -> float:
        return sum(self.watts.get(n, 0.0) for n in self._counted())

    @property
    def total_j(self) -> float:
        return sum(self.joules_now[n] - self.joules_at_start[n] for n in self._counted())

    @property
    def source(self) -> str | None:
        names = self._counted()
        return weakest_source(self.sources[n] for n in names) if names else None

    def energy_text(self) -> str:
        if not self.joules_now:
            return "waiting for meters"
        mark = "~" if self.source == "modelled" else ""
        return f"{mark}{self.total_w:6.1f} W  {mark}{self.total_j:8.1f} J {self.source}{self.busy_text()}"

    def busy_text(self) -> str:
        """' ! busy: others 48 % CPU' while other processes contend for the machine, else ''."""
        if not (self.machine or {}).get("contended"):
            return ""
        share = self.machine.get("others_cpu_share", 0.0) + self.machine.get("steal_share", 0.0)
        return f" ! busy: others {100 * share:.0f} % CPU"

    def progress_text(self) -> str:
        parts = [self.phase or "starting"]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}/{self.epochs}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3f}")
        if self.val_accuracy is not None:
            parts.append(f"val {self.val_accuracy:.1%}")
        return "  ".join(parts)


@dataclass
class PlanResult:
    outcomes: list[RunOutcome]
    interrupted: bool  # Ctrl-C: the current run was cancelled and the rest of the plan skipped
    batch: str = ""


async def execute_plan(
    plan: list[PlannedRun],
    console: Console | None,
    *,
    metrics_port: int | None = None,
    metrics_addr: str | None = None,
    mlflow: MlflowTarget | None = None,
    batch: str | None = None,
) -> PlanResult:
    """Run every planned spec in order. With a console, show rich progress; without, stay quiet.

    With `metrics_port`, serve live Prometheus metrics of the runs (engine.metrics_server) until
    the plan ends; with `mlflow`, log each run to MLflow as soon as it has ended.

    Ctrl-C (SIGINT) is handled here, explicitly: the current worker's process group is cancelled
    (SIGTERM, then SIGKILL), its outcome (cancelled, partial energy kept) is recorded, and no
    further run starts. `batch` continues an earlier plan's batch (more trials of the same run).
    """
    outcomes: list[RunOutcome] = []
    progress = None
    batch = batch or new_run_id()
    loop = asyncio.get_running_loop()
    interrupted = False
    current: WorkerProcess | None = None
    cancelling: set[asyncio.Task] = set()

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        if current is not None and not cancelling:
            cancelling.add(loop.create_task(current.cancel()))

    metrics = None
    if metrics_port is not None:
        from engine.metrics_server import DEFAULT_ADDR, MetricsServer

        metrics = MetricsServer(metrics_port, metrics_addr or DEFAULT_ADDR).start()
        if console is not None:
            console.print(f"serving live metrics at {metrics.url}", highlight=False)
    loop.add_signal_handler(signal.SIGINT, on_sigint)
    if console is not None:
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TextColumn("{task.fields[energy]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            refresh_per_second=4,
        )
        progress.start()
        overall = progress.add_task(f"[bold]{len(plan)} runs", total=len(plan), detail="", energy="")
    try:
        for i, planned in enumerate(plan, 1):
            if interrupted:
                break
            label = f"{planned.config.key} #{planned.trial + 1}"
            live = LiveTotals()
            task = progress.add_task(label, total=None, detail="starting", energy="") if progress else None
            current = WorkerProcess(replace(planned.spec, batch=batch))
            await current.start()
            if metrics is not None:
                metrics.begin(current.spec.run_id, planned.config.key, current.spec.sample_hz)
            if interrupted:  # Ctrl-C while it was starting
                cancelling.add(loop.create_task(current.cancel()))
            try:
                async for event in current.events():
                    live.update(event)
                    if metrics is not None:
                        metrics.observe(event)
                    if progress is not None and event["type"] in ("progress", "sample", "phase_start"):
                        total = live.steps * live.epochs if live.steps and live.epochs else None
                        done = ((live.epoch or 1) - 1) * (live.steps or 0) + (live.step or 0) if total else None
                        progress.update(
                            task, total=total, completed=done, detail=live.progress_text(), energy=live.energy_text()
                        )
                outcome = await current.wait()
                if cancelling:
                    await asyncio.gather(*cancelling)  # the group is gone before we go on
            except BaseException:
                await current.cancel()
                raise
            outcomes.append(outcome)
            if metrics is not None:
                metrics.end(outcome.run_id, outcome.status)
            if mlflow is not None:
                log_run_to_mlflow(outcome, mlflow, console)
            if progress is not None:
                progress.update(
                    task,
                    detail=f"{outcome.status}  {live.progress_text()}",
                    energy=live.energy_text(),
                    total=1,
                    completed=1,
                )
                progress.update(overall, completed=i)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if progress is not None:
            progress.stop()
        if metrics is not None:
            metrics.stop()
    return PlanResult(outcomes, interrupted, batch)


def log_run_to_mlflow(outcome: RunOutcome, target: MlflowTarget, console: Console | None) -> None:
    """A preset's `mlflow = true`: log a run that has just ended. A failure to log is reported in
    one line and the plan goes on (the run's own log is complete either way)."""
    from engine.export import ExportError, log_mlflow
    from engine.store import load_run

    try:
        (logged,) = log_mlflow([load_run(outcome.run_path)], target)
    except ExportError as exc:
        print(f"warning: run {outcome.run_id} was not logged to MLflow: {exc}", file=sys.stderr)
        return
    if console is not None and logged.created:
        console.print(
            f"logged {outcome.run_id} to MLflow (run {logged.mlflow_run_id}, experiment {target.experiment!r})",
            highlight=False,
        )
