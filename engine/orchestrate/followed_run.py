"""Follow a run that something else started (the CLI, an earlier lab session): its events come
from tailing its events.jsonl, and a cancel signals the pid its run.json records, only while that
pid is still the same process (its start time matches), never a process that reused the pid.

`FollowedRun` has WorkerProcess's reading side (run_path, spec, events(), wait(), cancel()), so
whatever streams a worker's events streams a followed run's the same way.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

from engine.core.events import AnyEvent, Done, Error, Result
from engine.core.process import same_process_alive
from engine.core.run_files import EVENTS, RUN_JSON, SUMMARY
from engine.core.spec import spec_from_dict
from engine.orchestrate.worker_process import CANCEL_GRACE_S, RunOutcome, stop_process
from engine.store.run_log import EventTail, worker_alive

POLL_S = 0.2  # how often the log is read for new lines


class FollowedRun:
    def __init__(self, run_path: Path) -> None:
        self.run_path = Path(run_path)
        self.manifest = json.loads((self.run_path / RUN_JSON).read_text())
        self.spec = spec_from_dict(self.manifest["spec"], str(self.run_path / RUN_JSON))
        self.pid = self.manifest.get("pid")
        self.pid_started = self.manifest.get("pid_started")
        self.events_seen = 0
        self.bad_lines = 0
        self.cancelled = False
        self.last_error: str | None = None
        self.result: Result | None = None

    def alive(self) -> bool:
        return worker_alive(self.run_path)

    async def events(self) -> AsyncIterator[AnyEvent]:
        """Every event logged so far, then each new one, until the run's done event or its end."""
        tail = EventTail(self.run_path / EVENTS)
        while True:
            events = tail.read()
            self.bad_lines = tail.bad_lines
            for event in events:
                self.events_seen += 1
                match event:
                    case Error():
                        self.last_error = event.message
                    case Result():
                        self.result = event
                yield event
                if isinstance(event, Done):
                    return
            if not tail.grew and not self.alive():
                return
            await asyncio.sleep(POLL_S)

    async def wait(self) -> RunOutcome:
        while self.alive():
            await asyncio.sleep(POLL_S)
        try:
            summary = json.loads((self.run_path / SUMMARY).read_text())
        except (OSError, json.JSONDecodeError):
            summary = None
        if summary is not None:
            status, error = summary.get("status", "failed"), summary.get("error")
        else:
            status = "cancelled" if self.cancelled else "crashed"
            error = self.last_error or ("cancelled" if self.cancelled else "the worker ended without a summary")
        return RunOutcome(
            self.spec.run_id, self.run_path, -1, status, self.events_seen, self.bad_lines, error, self.result
        )

    async def cancel(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """Stop the run's worker as a started one is stopped (worker_process.stop_process), only
        while the recorded pid is the same process (start time), so a reused pid is never signalled."""
        if not same_process_alive(self.pid, self.pid_started) or self.pid_started is None:
            return
        self.cancelled = True
        pid, started = self.pid, self.pid_started
        try:  # the runner starts workers as their group's leaders; one started otherwise is signalled alone
            group = os.getpgid(pid) == pid
        except ProcessLookupError:
            return
        await stop_process(pid, lambda: not same_process_alive(pid, started), group=group, grace_s=grace_s)
