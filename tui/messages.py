"""Messages the run worker posts to the app. Workers post these and never touch widgets.

Events from a worker's stream arrive throttled: `RunEvents` carries every event since the last one
(nothing is dropped: the graph needs each sample, the totals need none but the last), at most about
four per second, plus one at once for each event a person should see without delay (a phase
change, an epoch, an error, the end). A batch is folded whole, so four redraws a second at most.
The batches are engine.orchestrate.plan_runner.PlanRunner's (its RunEvents); the run worker only re-posts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.message import Message

from engine.core.events import AnyEvent, RunStatus
from engine.core.records import RunSummary
from engine.orchestrate.plan_files import InterruptedPlan
from engine.store.run_log import RunRecord
from tui.lab_plan import PlanItem, RunPlan


@dataclass
class PlanStarted(Message):
    plan: RunPlan


@dataclass
class RunStarted(Message):
    index: int
    item: PlanItem
    run_path: Path


@dataclass
class RunEvents(Message):
    """A throttled batch of one run's events, in stream order."""

    index: int
    events: list[AnyEvent] = field(default_factory=list)


@dataclass
class RunFinished(Message):
    index: int
    item: PlanItem
    run_id: str
    run_path: Path
    status: str  # complete | cancelled | failed | crashed
    exit_code: int
    error: str | None
    summary: RunSummary | None
    stderr_tail: str = ""


@dataclass
class PlanFinished(Message):
    plan: RunPlan
    summaries: list[RunSummary]
    statuses: list[RunStatus]
    stopped: bool  # the user cancelled: the rest of the plan did not run


@dataclass
class DatasetsDescribed(Message):
    """What engine.worker.data.locate found on disk (or why only synthetic is offered)."""

    entries: list[dict[str, Any]]  # as engine.worker.data.locate.describe_datasets gives them
    note: str | None = None


@dataclass
class ExportDone(Message):
    paths: list[Path]
    error: str | None = None


@dataclass
class LogsScanned(Message):
    """What the logs directory holds that the lab could pick up: runs still going (whoever started
    them) and plans a dropped session left unfinished (engine.orchestrate.plan_files)."""

    running: list[Path]
    interrupted: list[InterruptedPlan]  # newest first
    records: list[RunRecord] = field(default_factory=list)  # every run in the logs


@dataclass
class ReferenceLoaded(Message):
    """A past complete run of the same configuration: its total watts, to draw under the live run."""

    index: int
    label: str
    t: list[float]
    w: list[float]
