"""Launch, stream and cancel a worker: the one way the TUI and the CLI run anything.

The worker runs in its own session (process group), so a cancel signals it and anything it
started: SIGTERM, a grace period, then SIGKILL. Its stderr goes straight to the run's stderr.log.
Lines on its stdout that are not valid events are skipped, counted and logged; the run goes on.

A worker that says nothing for STALL_S seconds (it samples its meters 10 times a second, so
silence means it is stopped or hung) is declared stalled: its group is killed and, since it can
no longer write its own summary, the runner writes one from its events.jsonl (status "stalled").
The summary on disk is the record: a worker that ends without a `done` event but whose summary
exists (killed between the summary's rename and the done line) is what its summary says.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.core.events import (
    AnyEvent,
    Done,
    Error,
    ProtocolError,
    Result,
    RunStatus,
    decode_event,
)
from engine.core.records import RunSummary
from engine.core.run_files import EVENTS, RUN_JSON, STDERR, SUMMARY, atomic_write_json, check_writable
from engine.core.settings import settings
from engine.core.spec import RunSpec, new_run_id
from engine.core.timestamps import now_stamp
from engine.store.run_log import final_status, load_summary, read_events, read_json

CANCEL_GRACE_S = 1.5  # SIGTERM, then SIGKILL after this: the whole group is gone within 2 s
# Silence (no event at all) after which a worker is declared stalled. Samples arrive at sample_hz
# (>= 0.1 Hz, 10 Hz by default), so 30 s of nothing is never a slow phase. The stall_s setting
# (engine.core.settings) changes it (tests use a few seconds).
# Before its first event the worker imports torch and surveys the machine: allow it more.
STARTUP_S = 120.0
STREAM_LIMIT = 16 * 1024 * 1024  # the longest event line accepted (a hello with a big manifest)


@dataclass
class RunOutcome:
    run_id: str
    run_path: Path
    exit_code: int
    status: RunStatus  # complete | cancelled | failed | crashed | stalled
    events: int = 0
    bad_lines: int = 0
    error: str | None = None
    result: Result | None = None

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
        self.final_status: RunStatus | None = None
        self.result: Result | None = None
        self.stall_s = settings().stall_s
        self.stalled = False

    async def start(self) -> None:
        check_writable(Path(self.spec.logs_dir))
        self.run_path.mkdir(parents=True, exist_ok=True)
        with open(self.run_path / STDERR, "ab") as stderr:
            env = dict(os.environ if self.env is None else self.env)
            # The worker must import this checkout's engine even when started from elsewhere.
            repo = str(Path(__file__).resolve().parents[2])
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
        assert self.proc.stdin is not None  # stdin=PIPE
        self.proc.stdin.write(json.dumps(self.spec.to_dict()).encode())
        await self.proc.stdin.drain()
        self.proc.stdin.close()

    async def events(self) -> AsyncIterator[AnyEvent]:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            try:
                limit = self.stall_s if self.events_seen else max(self.stall_s, STARTUP_S)
                line = await asyncio.wait_for(self.proc.stdout.readline(), limit)
            except ValueError:  # a line over STREAM_LIMIT: skip it like any other bad line
                self._bad("line too long", "")
                continue
            except TimeoutError:
                await self._stall(limit)
                break
            if not line:
                break
            try:
                event = decode_event(line)
            except ProtocolError as exc:
                self._bad(str(exc), line.decode("utf-8", "replace")[:200])
                continue
            self.events_seen += 1
            match event:
                case Error():
                    self.last_error = event.message
                case Done():
                    self.final_status = event.status
                case Result():
                    self.result = event
            yield event

    def _bad(self, reason: str, line: str) -> None:
        self.bad_lines += 1
        try:
            with open(self.run_path / STDERR, "a") as f:
                f.write(f"joulelab runner: skipped a malformed event line ({reason}): {line!r}\n")
        except OSError:
            pass  # a full disk must not stop the stream; the count is still kept
        if self.on_bad_line:
            self.on_bad_line(reason, line)

    async def _stall(self, silent_s: float) -> None:
        """No event for `silent_s`: kill the group (a stopped or hung worker cannot be trusted to
        finish its record, and two writers would disagree), then record what was measured."""
        assert self.proc is not None
        self.stalled = True
        self.last_error = (
            f"stalled: no event from the worker for {silent_s:g} s (stopped or hung); "
            "it was killed and the energy measured up to then is kept, labelled partial"
        )
        _signal_group(self.proc.pid, signal.SIGKILL)
        _signal_group(self.proc.pid, signal.SIGCONT)  # a stopped group still dies of SIGKILL; wake it anyway
        await self.proc.wait()
        try:
            write_stalled_summary(self.run_path, self.spec, self.last_error)
        except OSError as exc:
            self.last_error += f"; its summary could not be written ({exc.strerror or exc})"
        self.final_status = "stalled"

    async def wait(self) -> RunOutcome:
        assert self.proc is not None
        code = await self.proc.wait()
        error = self.last_error
        if self.final_status is not None:
            status = self.final_status
        elif (summary := load_summary(self.run_path)) is not None:
            # Killed after the summary's rename but before the done line: the summary is the record.
            status, error = final_status(summary), summary.error or error
        elif self.cancelled:
            status = "cancelled"
        else:
            status = "crashed"
        if status == "cancelled" and not (self.run_path / SUMMARY).exists():
            error = error or "cancelled during start-up, before the worker could record anything"
            record_cancelled_start(self.run_path, self.spec, error)
        if status == "crashed" and error is None:
            error = f"worker ended without a summary (exit {describe_exit(code)})"
        return RunOutcome(
            self.spec.run_id, self.run_path, code, status, self.events_seen, self.bad_lines, error, self.result
        )

    async def cancel(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """Stop the worker's process group (stop_process: SIGCONT and SIGTERM, then SIGKILL)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.cancelled = True
        proc = self.proc
        await stop_process(proc.pid, lambda: proc.returncode is not None, grace_s=grace_s)


def record_start(run_path: Path, spec: RunSpec, pid: int) -> None:
    """A first run.json, written before the worker reads its spec (so before it can write its own,
    which replaces this one): a run cancelled during start-up is still a run with a spec and a pid."""
    from engine.core.process import process_started
    from engine.core.records import RunManifest, to_json_object

    manifest = RunManifest(
        run_id=spec.run_id,
        spec=spec.to_dict(),
        pid=pid,
        pid_started=process_started(pid),
        started=now_stamp(),
    )
    atomic_write_json(run_path / RUN_JSON, to_json_object(manifest))


def runner_summary(spec: RunSpec, status: str, error: str, **fields: Any) -> RunSummary:
    """The summary the runner writes for a worker that could not write its own: what the spec
    says, plus `fields` (a stalled run's phases and metrics)."""
    return RunSummary(
        run_id=spec.run_id,
        status=status,
        error=error,
        spec=spec.to_dict(),
        config=spec.config or spec.describe(),
        preset=spec.preset,
        dataset=spec.dataset,
        synthetic=spec.dataset == "synthetic",
        ended=now_stamp(),
        **fields,
    )


def record_cancelled_start(run_path: Path, spec: RunSpec, error: str) -> None:
    """The summary of a run cancelled before its worker could write one."""
    from engine.core.records import to_json_object

    summary = runner_summary(spec, "cancelled", error, written_by="runner (cancelled during start-up)")
    atomic_write_json(run_path / SUMMARY, to_json_object(summary))


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def stop_process(
    pid: int, gone: Callable[[], bool], *, group: bool = True, grace_s: float = CANCEL_GRACE_S
) -> None:
    """The one cancel of a worker, started here or followed: SIGTERM and SIGCONT (a stopped worker
    handles SIGTERM only once resumed, and then writes its own summary), up to `grace_s` for
    `gone()`, then SIGKILL. `group`: signal the worker's process group (it leads its own session),
    and SIGKILL the group even when the worker is gone, to reap what it started; otherwise only
    the pid, and SIGKILL only while it is not gone (a dead pid may be reused)."""

    def send(sig: signal.Signals) -> None:
        if group:
            _signal_group(pid, sig)
            return
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    send(signal.SIGTERM)
    send(signal.SIGCONT)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while not gone() and loop.time() < deadline:
        await asyncio.sleep(0.02)
    if group or not gone():
        send(signal.SIGKILL)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


async def run_spec(
    spec: RunSpec, on_event: Callable[[AnyEvent], None] | None = None, command: list[str] | None = None
) -> RunOutcome:
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


def write_stalled_summary(run_path: Path, run_spec: RunSpec, error: str) -> RunSummary:
    """The summary a stalled (killed) worker could not write, rebuilt from its events.jsonl
    through the one event fold (engine.orchestrate.event_fold).

    Finished phases are taken as the worker recorded them (its phase_end events); the phase that
    was open is measured from the cumulative joules of its samples, from the last sample at or
    before its start to the last sample received, and labelled partial. The log gets the same
    ending the worker would have written (error, done), so the log and the CLI agree.
    """
    import msgspec

    from engine.core.energy import Domain, phase_total
    from engine.core.events import encode, make_event
    from engine.core.records import (
        CurvePoint,
        EnergyValue,
        IdlePower,
        MeterDomain,
        Metrics,
        MissingMeter,
        PhaseRecord,
        PhaseTotal,
        metrics_from_json,
        to_json_object,
    )
    from engine.orchestrate.event_fold import fold_events

    events_path = run_path / EVENTS
    _trim_torn_line(events_path)
    events, _ = read_events(events_path)
    fold = fold_events(events)
    manifest = read_json(run_path / RUN_JSON) or {}
    run_id = run_path.name
    domains = {m["name"]: Domain(m["name"], m["source"], m["method"], m.get("kind", "")) for m in fold.meters}
    phases = {
        name: PhaseRecord(
            duration_s=row.ended.duration_s,
            energy=msgspec.convert(row.ended.energy, dict[str, EnergyValue]),
            total=msgspec.convert(row.ended.total, PhaseTotal),
            partial=row.ended.partial,
        )
        for name, row in fold.rows.items()
        if row.ended is not None
    }
    open_row, end = fold.open_row, fold.last_sample
    energy = fold.open_phase_energy(from_first_sample=False)
    if open_row is not None and open_row.start is not None and end is not None and energy is not None:
        if set(domains) <= set(energy):
            # each domain as hello declared it (a phase_end may have relabelled the fold's view)
            energy = {n: replace(e, domain=domains[n]) for n, e in energy.items() if n in domains}
            phases[open_row.phase] = PhaseRecord(
                duration_s=end.t - open_row.start.t,
                energy={n: en.as_value() for n, en in energy.items()},
                total=phase_total(energy.values()),
                partial=True,
            )
    summary = runner_summary(
        run_spec,
        "stalled",
        error,
        started=manifest.get("started"),
        duration_s=fold.elapsed_s,
        last_phase=fold.phase,
        phases=phases,
        idle_watts={
            n: IdlePower(w=w, source=domains[n].source, method=domains[n].method)
            for n, w in fold.idle_w.items()
            if n in domains
        },
        metrics=metrics_from_json(fold.metrics) if fold.metrics is not None else Metrics(),
        curve=[
            # an epoch event without a phase predates pruning's epochs: training
            CurvePoint(
                phase=e.phase or "train",
                epoch=e.epoch,
                val_accuracy_frac=e.val_accuracy,
                cumulative_j=e.cumulative_j,
                source=e.source,
            )
            for e in fold.curve
        ],
        meters=[MeterDomain(name=d.name, source=d.source, method=d.method, kind=d.kind) for d in domains.values()],
        missing_meters=[
            MissingMeter(meter=str(m.get("meter", "")), reason=str(m.get("reason", ""))) for m in fold.missing
        ],
        meter_gaps=sorted(fold.gap_counts),
        events=fold.events + 2,
        written_by="runner (the worker stalled)",
    )
    atomic_write_json(run_path / SUMMARY, to_json_object(summary))
    with open(events_path, "a", encoding="utf-8") as f:
        f.write(encode(make_event("error", run_id, message=error, where=fold.phase)))
        f.write(encode(make_event("done", run_id, status="stalled", exit_code=None)))
    return summary


def _trim_torn_line(path: Path) -> None:
    """Cut a last line that a killed writer left without its newline, so appends start clean."""
    try:
        with open(path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass
