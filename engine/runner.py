"""Launch, stream and cancel a worker: the one way the TUI and the CLI run anything.

The worker runs in its own session (process group), so a cancel signals it and anything it
started: SIGTERM, a grace period, then SIGKILL. Its stderr goes straight to the run's stderr.log.
Lines on its stdout that are not valid events are skipped, counted and logged; the run goes on.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.protocol import ProtocolError, decode
from engine.spec import RunSpec, new_run_id
from engine.store import RUN_JSON, STDERR, SUMMARY, atomic_write_json, check_writable

CANCEL_GRACE_S = 1.5  # SIGTERM, then SIGKILL after this: the whole group is gone within 2 s
STREAM_LIMIT = 16 * 1024 * 1024  # the longest event line accepted (a hello with a big manifest)


@dataclass
class RunOutcome:
    run_id: str
    run_path: Path
    exit_code: int
    status: str  # complete | cancelled | failed | crashed
    events: int = 0
    bad_lines: int = 0
    error: str | None = None
    result: dict | None = None

    @property
    def ok(self) -> bool:
        return self.status == "complete"


def worker_command() -> list[str]:
    return [sys.executable, "-m", "engine.worker"]


@dataclass
class WorkerProcess:
    spec: RunSpec
    command: list[str] = field(default_factory=worker_command)
    env: dict[str, str] | None = None
    on_bad_line: Callable[[str, str], None] | None = None

    def __post_init__(self) -> None:
        if not self.spec.run_id:
            self.spec = replace(self.spec, run_id=new_run_id())
        self.run_path = Path(self.spec.logs_dir) / self.spec.run_id
        self.proc: asyncio.subprocess.Process | None = None
        self.events_seen = 0
        self.bad_lines = 0
        self.cancelled = False
        self.last_error: str | None = None
        self.final_status: str | None = None
        self.result: dict | None = None

    async def start(self) -> None:
        check_writable(Path(self.spec.logs_dir))
        self.run_path.mkdir(parents=True, exist_ok=True)
        with open(self.run_path / STDERR, "ab") as stderr:
            env = dict(os.environ if self.env is None else self.env)
            # The worker must import this checkout's engine even when started from elsewhere.
            repo = str(Path(__file__).resolve().parents[1])
            env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            self.proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
                limit=STREAM_LIMIT,
                env=env,
            )
        record_start(self.run_path, self.spec, self.proc.pid)
        self.proc.stdin.write(json.dumps(self.spec.to_dict()).encode())
        await self.proc.stdin.drain()
        self.proc.stdin.close()

    async def events(self) -> AsyncIterator[dict]:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            try:
                line = await self.proc.stdout.readline()
            except ValueError:  # a line over STREAM_LIMIT: skip it like any other bad line
                self._bad("line too long", "")
                continue
            if not line:
                break
            try:
                event = decode(line)
            except ProtocolError as exc:
                self._bad(str(exc), line.decode("utf-8", "replace")[:200])
                continue
            self.events_seen += 1
            if event["type"] == "error":
                self.last_error = event.get("message")
            elif event["type"] == "done":
                self.final_status = event.get("status")
            elif event["type"] == "result":
                self.result = event
            yield event

    def _bad(self, reason: str, line: str) -> None:
        self.bad_lines += 1
        with open(self.run_path / STDERR, "a") as f:
            f.write(f"joulelab runner: skipped a malformed event line ({reason}): {line!r}\n")
        if self.on_bad_line:
            self.on_bad_line(reason, line)

    async def wait(self) -> RunOutcome:
        assert self.proc is not None
        code = await self.proc.wait()
        if self.final_status is not None:
            status = self.final_status
        elif self.cancelled:
            status = "cancelled"
        else:
            status = "crashed"
        error = self.last_error
        if status == "cancelled" and not (self.run_path / SUMMARY).exists():
            error = error or "cancelled during start-up, before the worker could record anything"
            record_cancelled_start(self.run_path, self.spec, error)
        if status == "crashed" and error is None:
            error = f"worker ended without a summary (exit {describe_exit(code)})"
        return RunOutcome(self.spec.run_id, self.run_path, code, status, self.events_seen, self.bad_lines,
                          error, self.result)

    async def cancel(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """SIGTERM the worker's process group; SIGKILL whatever is left after `grace_s`."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.cancelled = True
        _signal_group(self.proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), grace_s)
        except asyncio.TimeoutError:
            pass
        # Reap the whole group, not just the leader: the worker may have started children.
        _signal_group(self.proc.pid, signal.SIGKILL)


def record_start(run_path: Path, spec: RunSpec, pid: int) -> None:
    """A first run.json, written before the worker reads its spec (so before it can write its own,
    which replaces this one): a run cancelled during start-up is still a run with a spec and a pid."""
    try:
        import psutil

        pid_started = psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - gone already, or no psutil: no reuse guard
        pid_started = None
    atomic_write_json(run_path / RUN_JSON, {"run_id": spec.run_id, "spec": spec.to_dict(), "pid": pid,
                                            "pid_started": pid_started,
                                            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def record_cancelled_start(run_path: Path, spec: RunSpec, error: str) -> None:
    """The summary of a run cancelled before its worker could write one."""
    atomic_write_json(run_path / SUMMARY, {
        "run_id": spec.run_id, "status": "cancelled", "error": error, "spec": spec.to_dict(),
        "config": spec.config or spec.describe(), "preset": spec.preset, "dataset": spec.dataset,
        "synthetic": spec.dataset == "synthetic", "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "last_phase": None, "phases": {}, "metrics": {}, "curve": [],
    })


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


async def run_spec(spec: RunSpec, on_event: Callable[[dict], None] | None = None,
                   command: list[str] | None = None) -> RunOutcome:
    """Run one spec to the end, passing each event to `on_event`. Cancelling the calling task
    cancels the worker (the whole process group) and re-raises."""
    worker = WorkerProcess(spec, command or worker_command())
    await worker.start()
    try:
        async for event in worker.events():
            if on_event is not None:
                on_event(event)
        return await worker.wait()
    except asyncio.CancelledError:
        await worker.cancel()
        raise
