"""What changes in a logs directory while someone watches it: runs that start, runs that end, and
the recorded plan (engine.orchestrate.plan_files) a run belongs to.

    watch = LogsWatch(logs_dir)
    change = watch.poll()   # cheap enough to call every second: see LogsWatch

`recorded_plan_of(logs_dir, run_id)` finds the plan file that names a run (the CLI's and the lab's
plans name every run id when they start), and `item_started` waits until a plan's next run has
started, so a plan run by another process can be followed run by run.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.process import same_process_alive
from engine.core.run_files import RUN_ID_RE, RUN_JSON, SUMMARY
from engine.orchestrate.plan_files import PLANS_DIR, DamagedPlanFile, PlanItem, read_plan
from engine.store.run_log import worker_alive

PENDING_S = 30.0  # a run directory without its run.json yet is looked at again for this long


def run_names(logs_dir: Path) -> set[str]:
    """The names of the run directories in `logs_dir`: one directory listing, no file opened."""
    try:
        with os.scandir(logs_dir) as entries:
            return {e.name for e in entries if RUN_ID_RE.match(e.name) and e.is_dir()}
    except OSError:  # not there yet (nothing has run), or unreadable: nothing to see
        return set()


@dataclass(frozen=True)
class LogsChange:
    """What one poll found: runs that started (worker alive) and runs that ended since the last."""

    started: tuple[str, ...] = ()  # run ids, oldest first
    ended: tuple[str, ...] = ()
    appeared: tuple[str, ...] = ()  # every new run directory, going or not (a copied-in run too)


@dataclass
class LogsWatch:
    """Polls `logs_dir` for runs that start and end. A poll lists the directory once and looks
    only at the runs it believes are going (a summary.json written, or the worker gone, ends
    one), so it costs the same with ten runs in the logs as with ten thousand. The first poll
    takes in what is there already (and reports the runs going then as started)."""

    logs_dir: Path
    known: set[str] = field(default_factory=set)
    going: set[str] = field(default_factory=set)
    pending: dict[str, float] = field(default_factory=dict)  # run id -> when first seen without run.json

    def poll(self) -> LogsChange | None:
        """What changed since the last poll, or None when nothing did."""
        names = run_names(self.logs_dir)
        new = sorted(names - self.known)
        self.known = names
        started, ended = [], []
        now = time.monotonic()
        for run_id in new:
            if (self.logs_dir / run_id / SUMMARY).exists():
                continue  # ended already (copied in, or started and ended between two polls)
            self.pending[run_id] = now
        for run_id, seen in list(self.pending.items()):
            path = self.logs_dir / run_id
            if not (path / RUN_JSON).exists() and run_id in names and now - seen < PENDING_S:
                continue  # its worker is writing run.json: look again next time
            del self.pending[run_id]
            if worker_alive(path):
                self.going.add(run_id)
                started.append(run_id)
        for run_id in sorted(self.going - set(started)):
            if run_id not in names or not worker_alive(self.logs_dir / run_id):
                self.going.discard(run_id)
                ended.append(run_id)
        if not (new or started or ended):
            return None
        return LogsChange(tuple(started), tuple(ended), tuple(new))


# -- recorded plans, read by whoever follows them ---------------------------------------------------
@dataclass(frozen=True)
class RecordedPlan:
    """A plan file as a follower needs it (engine.orchestrate.plan_files writes it)."""

    path: Path
    plan_id: str
    title: str
    items: tuple[PlanItem, ...]
    running: bool  # its state is running and its owner is alive: more of its runs may start

    def index_of(self, run_id: str) -> int | None:
        return next((i for i, item in enumerate(self.items) if item.run_id == run_id), None)


def read_recorded_plan(path: Path) -> RecordedPlan | None:
    """The plan in `path` (engine.orchestrate.plan_files' typed reader), or None when it cannot be
    read as one: a follower skips a damaged file (the CLI and the lab's scan name it)."""
    try:
        record = read_plan(Path(path))
    except DamagedPlanFile:
        return None
    running = record.state == "running" and same_process_alive(record.owner.pid, record.owner.pid_started)
    return RecordedPlan(Path(path), record.plan_id, record.title, tuple(record.items), running)


def recorded_plan_of(logs_dir: Path, run_id: str) -> RecordedPlan | None:
    """The newest plan file in `logs_dir` that names `run_id`, or None (a run outside any plan)."""
    folder = Path(logs_dir) / PLANS_DIR
    try:
        paths = sorted(folder.glob("*.json"), reverse=True)  # plan ids begin with their start time
    except OSError:
        return None
    for path in paths:
        plan = read_recorded_plan(path)
        if plan is not None and plan.index_of(run_id) is not None:
            return plan
    return None


async def item_started(
    plan_path: Path, index: int, logs_dir: Path, *, give_up: Callable[[], bool] = lambda: False, poll_s: float = 0.25
) -> str | None:
    """Wait until run `index` of the plan in `plan_path` has started (its run.json is there) and
    return its run id; None when the plan ended without starting it (stopped, or its owner gone),
    or as soon as `give_up()` is true (the follower was cancelled).
    The run id is read from the plan file each time: a resumed plan gives a run a new id as it starts."""
    while True:
        plan = read_recorded_plan(plan_path)
        if plan is None or index >= len(plan.items):
            return None
        run_id = plan.items[index].run_id
        if isinstance(run_id, str) and RUN_ID_RE.match(run_id) and (Path(logs_dir) / run_id / RUN_JSON).exists():
            return run_id
        if not plan.running or give_up():
            return None
        await asyncio.sleep(poll_s)
