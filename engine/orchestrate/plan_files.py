"""Plans on disk: a plan is recorded when it starts, each run marked as it ends, so a plan cut
short by a dropped session can be finished later, from the lab or with `joulelab run --resume`.

    <logs>/.plans/<plan_id>.json   {"plan_id", "title", "source", "owner": {"pid", "pid_started"},
                                    "state": running | finished | stopped,
                                    "items": [{"spec", "label", "config", "pair", "run_id", "status"}]}

A plan is *interrupted* when its state is still "running" but the process that ran it is gone
(the session dropped), or "left" (the user quit and left its run going).
An interrupted plan's remaining runs are its items without a complete run: a run still going (its
worker outlived the session) is followed, not started again; anything else starts afresh.
The leading dot keeps the folder out of the run listing (engine.store.run_log.RUN_ID_RE).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from engine.core.process import process_started, same_process_alive
from engine.core.run_files import RUN_JSON, atomic_write_json
from engine.core.timestamps import now_stamp
from engine.store.run_log import run_status, worker_alive

PLANS_DIR = ".plans"


def running_runs(logs_dir: Path) -> list[Path]:
    """Runs in progress in the logs directory, oldest first (whoever started them)."""
    logs_dir = Path(logs_dir)
    if not logs_dir.is_dir():
        return []
    found = [p for p in logs_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and worker_alive(p)]
    return sorted(found, key=lambda p: ((p / RUN_JSON).stat().st_mtime, p.name))


# -- the plan file --------------------------------------------------------------------------------
PlanState = Literal["running", "finished", "stopped", "left"]


class PlanOwner(msgspec.Struct, kw_only=True):
    """The process that runs the plan (pid and its start time, so a reused pid is not taken for it)."""

    pid: int | None = None
    pid_started: float | None = None


class PlanItem(msgspec.Struct, kw_only=True):
    """One run of the plan: the spec it runs with, and how it went (status None: not ended)."""

    spec: dict[str, Any]
    config: str
    label: str = ""
    pair: str | None = None
    run_id: str | None = None
    status: str | None = None


class PlanRecord(msgspec.Struct, kw_only=True):
    """A plan file, as written and as read back (validated: a damaged file is refused, not guessed at)."""

    plan_id: str
    title: str
    source: str = "cli"
    created: str | None = None
    owner: PlanOwner = msgspec.field(default_factory=PlanOwner)
    state: PlanState
    items: list[PlanItem]


class DamagedPlanFile(Exception):
    """A plan file that cannot be read as one; its message says what is wrong, in one line."""


def read_plan(path: Path) -> PlanRecord:
    """The plan file at `path`, validated; DamagedPlanFile (why, in a few words) when it is not one."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=PlanRecord)
    except OSError as exc:
        raise DamagedPlanFile(f"cannot be read ({exc.strerror or exc})") from None
    except msgspec.ValidationError as exc:
        raise DamagedPlanFile(f"not a plan ({exc})") from None
    except msgspec.DecodeError as exc:
        raise DamagedPlanFile(f"not valid JSON, truncated? ({exc})") from None


def damaged_line(path: Path, why: str) -> str:
    """What the CLI and the lab say of a damaged plan file: one line, with what to do."""
    return f"plan file {path} is damaged: {why}; skipped (move it aside or delete it)"


def record_plan(logs_dir: Path, plan_id: str, title: str, source: str, items: list[PlanItem]) -> Path | None:
    """Write a new plan owned by this process. None when the logs directory cannot be written:
    the plan runs unrecorded, and its first run says why."""
    path = Path(logs_dir) / PLANS_DIR / f"{plan_id}.json"
    record = PlanRecord(
        plan_id=plan_id,
        title=title,
        source=source,
        created=now_stamp(),
        owner=_this_process(),
        state="running",
        items=[msgspec.structs.replace(item, run_id=item.spec.get("run_id"), status=None) for item in items],
    )
    try:
        atomic_write_json(path, msgspec.to_builtins(record))
    except OSError:
        return None
    return path


def _this_process() -> PlanOwner:
    return PlanOwner(pid=os.getpid(), pid_started=process_started(os.getpid()))


def _update(path: Path, change: Callable[[PlanRecord], None]) -> None:
    """Change the plan file; a record that cannot be read (damaged) or written is left as it is
    (the runs themselves are logged by their workers either way)."""
    try:
        record = read_plan(path)
        change(record)
        atomic_write_json(path, msgspec.to_builtins(record))
    except (OSError, DamagedPlanFile, IndexError):
        pass


def mark_item(path: Path, index: int, run_id: str, status: str | None) -> None:
    """Item `index` runs as `run_id` (status None while it runs) or ended with `status`."""

    def change(record: PlanRecord) -> None:
        record.items[index].run_id, record.items[index].status = run_id, status

    _update(path, change)


def take_over(path: Path) -> None:
    """This process now runs the plan (resuming it)."""

    def change(record: PlanRecord) -> None:
        record.owner, record.state = _this_process(), "running"

    _update(path, change)


def close_plan(path: Path, state: PlanState) -> None:
    """finished (every run ended), stopped (cancelled by the user, or set aside) or left (the user
    quit and left the run going: the rest is offered next time)."""

    def change(record: PlanRecord) -> None:
        record.state = state

    _update(path, change)


@dataclass(frozen=True)
class Remaining:
    """One run an interrupted plan still needs: `follow` when its worker still runs."""

    index: int
    item: PlanItem  # as the plan file holds it
    follow: bool


@dataclass(frozen=True)
class InterruptedPlan:
    path: Path
    title: str
    total: int
    remaining: tuple[Remaining, ...]

    @property
    def done(self) -> int:
        return self.total - len(self.remaining)

    def describe(self) -> str:
        going = sum(1 for r in self.remaining if r.follow)
        return (
            f"{self.title}: {self.done} of {self.total} runs done"
            + (f", {going} still running" if going else "")
            + f", {len(self.remaining) - going} to start"
        )


def interrupted_plans(logs_dir: Path, on_damaged: Callable[[Path, str], None] | None = None) -> list[InterruptedPlan]:
    """Plans whose owner is gone while runs remain, newest first. A damaged plan file is skipped,
    and `on_damaged(path, one line)` says so (damaged_line)."""
    folder = Path(logs_dir) / PLANS_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json"), reverse=True):
        try:
            record = read_plan(path)
        except DamagedPlanFile as exc:
            if on_damaged is not None:
                on_damaged(path, damaged_line(path, str(exc)))
            continue
        owner = record.owner
        if record.state not in ("running", "left"):
            continue
        if record.state == "running" and same_process_alive(owner.pid, owner.pid_started):
            continue
        remaining, ended = [], {}
        for index, item in enumerate(record.items):
            status = item.status
            if status is None and item.run_id:
                status = run_status(Path(logs_dir) / item.run_id)
                if status not in (None, "running"):
                    ended[index] = (item.run_id, status)  # it ended after its session did: say so
            if status == "complete":
                continue
            remaining.append(Remaining(index, item, follow=status == "running"))
        for index, (run_id, status) in ended.items():
            mark_item(path, index, run_id, status)
        if remaining:
            found.append(InterruptedPlan(path, record.title, len(record.items), tuple(remaining)))
        else:
            close_plan(path, "finished")  # its last run ended after the session did
    return found
