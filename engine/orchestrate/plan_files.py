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

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
def record_plan(logs_dir: Path, plan_id: str, title: str, source: str, items: list[dict[str, Any]]) -> Path | None:
    """Write a new plan (items: spec dict, label, config, pair) owned by this process. None when
    the logs directory cannot be written: the plan runs unrecorded, and its first run says why."""
    path = Path(logs_dir) / PLANS_DIR / f"{plan_id}.json"
    try:
        atomic_write_json(
            path,
            {
                "plan_id": plan_id,
                "title": title,
                "source": source,
                "created": now_stamp(),
                "owner": {"pid": os.getpid(), "pid_started": process_started(os.getpid())},
                "state": "running",
                "items": [{"run_id": item["spec"].get("run_id"), "status": None, **item} for item in items],
            },
        )
    except OSError:
        return None
    return path


def _update(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Change the plan file; a record that cannot be read or written is left as it is (the runs
    themselves are logged by their workers either way)."""
    try:
        data = json.loads(path.read_text())
        change(data)
        atomic_write_json(path, data)
    except (OSError, ValueError):
        pass


def mark_item(path: Path, index: int, run_id: str, status: str | None) -> None:
    """Item `index` runs as `run_id` (status None while it runs) or ended with `status`."""

    def change(data: dict[str, Any]) -> None:
        data["items"][index].update(run_id=run_id, status=status)

    _update(path, change)


def take_over(path: Path) -> None:
    """This process now runs the plan (resuming it)."""

    def change(data: dict[str, Any]) -> None:
        data["owner"] = {"pid": os.getpid(), "pid_started": process_started(os.getpid())}
        data["state"] = "running"

    _update(path, change)


def close_plan(path: Path, state: str) -> None:
    """finished (every run ended), stopped (cancelled by the user, or set aside) or left (the user
    quit and left the run going: the rest is offered next time)."""

    def change(data: dict[str, Any]) -> None:
        data["state"] = state

    _update(path, change)


@dataclass(frozen=True)
class Remaining:
    """One run an interrupted plan still needs: `follow` when its worker still runs."""

    index: int
    item: dict[str, Any]  # as the plan file holds it: spec, label, config, pair, run_id, status
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


def interrupted_plans(logs_dir: Path) -> list[InterruptedPlan]:
    """Plans whose owner is gone while runs remain, newest first."""
    folder = Path(logs_dir) / PLANS_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        owner = data.get("owner") or {}
        state = data.get("state")
        if state not in ("running", "left"):
            continue
        if state == "running" and same_process_alive(owner.get("pid"), owner.get("pid_started")):
            continue
        remaining = []
        for index, item in enumerate(data.get("items", [])):
            status = item.get("status")
            if status is None and item.get("run_id"):
                status = run_status(Path(logs_dir) / item["run_id"])
            if status == "complete":
                continue
            remaining.append(Remaining(index, item, follow=status == "running"))
        if remaining:
            found.append(
                InterruptedPlan(path, data.get("title", path.stem), len(data.get("items", [])), tuple(remaining))
            )
        else:
            close_plan(path, "finished")  # its last run ended after the session did
    return found
