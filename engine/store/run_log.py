"""The run log on disk: one directory per run, written by the worker, read by everyone else.

    logs/<run-id>/run.json       spec + environment manifest (written at start, updated atomically)
    logs/<run-id>/events.jsonl   every event, append-only, flushed per line
    logs/<run-id>/summary.json   the result, written atomically at the end (never half-written)
    logs/<run-id>/stderr.log     the worker's stderr (library warnings, tracebacks)

A run's status comes from its summary; a run with no summary is `running` while its worker is
alive and `crashed` otherwise (its events say how far it got). A run whose run.json is missing or
unreadable, or whose summary.json exists but is not valid JSON (truncated), is `damaged`: it is
never read as data, and every command that skips it says which and why (RunRecord.problem).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from engine.core.events import FINAL_STATUSES, AnyEvent, FinalStatus, PhaseStart, ProtocolError, RunStatus, decode_event
from engine.core.process import same_process_alive
from engine.core.records import (
    Metrics,
    NewerSchemaError,
    PhaseRecord,
    RecordError,
    RunManifest,
    RunSummary,
    manifest_from_json,
    summary_from_json,
)
from engine.core.run_files import EVENTS, RUN_ID_RE, RUN_JSON, SUMMARY, StoreError
from engine.core.settings import settings


def default_logs_dir() -> Path:
    """--logs's default: the logs setting, else ./logs."""
    return settings().logs or Path("logs")


def run_dir(logs_dir: Path, run_id: str) -> Path:
    """The directory of one run, refusing ids that are malformed or would escape logs/."""
    if not RUN_ID_RE.match(run_id):
        raise StoreError(f"run id {run_id!r} is not valid: ids hold letters, digits, '-' and '_' (see `joulelab runs`)")
    path = logs_dir / run_id
    if not path.is_dir():
        raise StoreError(f"no run {run_id!r} in {logs_dir} (see `joulelab runs`)")
    return path


def read_events(path: Path) -> tuple[list[AnyEvent], int]:
    """All valid events of a log, and how many lines were not valid events (skipped)."""
    events: list[AnyEvent] = []
    bad = 0
    try:
        with open_regular(path) as f:
            for line in f:
                try:
                    events.append(decode_event(line))
                except ProtocolError:
                    bad += 1
    except (FileNotFoundError, NotARegularFile):
        pass
    return events, bad


class EventTail:
    """New complete lines of a growing events.jsonl, decoded; a half-written last line waits.
    `bad_lines` counts lines that were not valid events; `grew` says whether the last read found
    any new bytes (a whole line or part of one)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = path, 0, b""
        self.bad_lines = 0
        self.grew = False

    def read(self) -> list[AnyEvent]:
        try:
            with open_regular(self.path) as f:
                f.seek(self.offset)
                data = f.read()
        except (FileNotFoundError, NotARegularFile):
            data = b""
        self.offset += len(data)
        self.grew = bool(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        events: list[AnyEvent] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                events.append(decode_event(line))
            except ProtocolError:
                self.bad_lines += 1
        return events


# The largest run.json or summary.json read. A real one is a few kB to a few hundred kB (a long
# run's curve); anything larger is not a record, and reading it whole would take the memory.
MAX_RECORD_BYTES = 16 << 20


class NotARegularFile(OSError):
    """A log file that is a FIFO, a device or a directory: never read (a FIFO would block)."""


def open_regular(path: Path) -> BinaryIO:
    """Open a log file for reading only if it is a regular file. Opened without blocking and
    checked on the open descriptor, so a FIFO put in a run's place cannot hang a reader."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode) else "a device or socket"
            raise NotARegularFile(f"{kind}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _load_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the object, None), or (None, why not): "missing", or how the file is damaged."""
    try:
        with open_regular(path) as f:
            raw = f.read(MAX_RECORD_BYTES + 1)
        if len(raw) > MAX_RECORD_BYTES:
            return None, f"larger than {MAX_RECORD_BYTES >> 20} MiB: not a run record"
        text = raw.decode("utf-8")
    except FileNotFoundError:
        return None, "missing"
    except NotARegularFile as exc:
        return None, str(exc)
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"unreadable ({getattr(exc, 'strerror', None) or exc})"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        what = "empty" if not text.strip() else "truncated or not valid JSON"
        return None, f"{what} ({len(text)} bytes; {exc.msg} at line {exc.lineno})"
    if not isinstance(data, dict):
        return None, f"not a JSON object ({type(data).__name__})"
    return data, None


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file, or None when it is missing or damaged."""
    return _load_json(path)[0]


def load_summary(run_path: Path) -> RunSummary | None:
    """The one summary loader: a run's summary, typed and validated, or None when the run has
    none that can be read (missing, damaged, newer than this JouleLab: load_run says which)."""
    data, _ = _load_json(Path(run_path) / SUMMARY)
    if data is None:
        return None
    try:
        return summary_from_json(data)
    except RecordError:
        return None


def summary_status(run_path: Path) -> FinalStatus | None:
    """The status a run's summary records, or None when it has no readable summary (still
    running, crashed, or damaged)."""
    summary = load_summary(run_path)
    return final_status(summary) if summary is not None else None


def final_status(summary: RunSummary) -> FinalStatus:
    """A summary's status as the status type (a value no JouleLab writes reads as failed)."""
    status = summary.status
    return status if status in FINAL_STATUSES else "failed"


def worker_alive(run_path: Path) -> bool:
    """The run has no summary yet and its worker (pid and start time from run.json) still runs on
    this machine."""
    if (Path(run_path) / SUMMARY).exists():
        return False
    data = read_json(Path(run_path) / RUN_JSON)
    try:
        manifest = manifest_from_json(data) if data is not None else None
    except RecordError:
        return False
    return manifest is not None and same_process_alive(manifest.pid, manifest.pid_started)


def run_status(run_path: Path) -> RunStatus | None:
    """The one reader of a run's status on this machine: its summary's status; without a readable
    summary, running while its worker is alive, else crashed; None when there is no run there
    (not even a run.json)."""
    status = summary_status(run_path)
    if status is not None:
        return status
    if worker_alive(run_path):
        return "running"
    return "crashed" if (Path(run_path) / RUN_JSON).exists() else None


def _last_phase(events_path: Path) -> str | None:
    """The phase a run without a summary reached: the last phase_start, read from the log's end
    (a listing must not parse every event of every crashed run)."""
    try:
        with open_regular(events_path) as f:
            size = f.seek(0, os.SEEK_END)
            block = 1 << 16
            while True:
                start = max(0, size - block)
                f.seek(start)
                lines = f.read(size - start).splitlines()
                for line in reversed(lines[1:] if start else lines):  # the first may be cut
                    if b'"phase_start"' in line:
                        try:
                            event = decode_event(line)
                        except ProtocolError:
                            continue
                        if isinstance(event, PhaseStart):
                            return event.phase
                if start == 0:
                    return None
                block *= 4
    except (FileNotFoundError, NotARegularFile):
        return None


@dataclass
class RunRecord:
    run_id: str
    path: Path
    manifest: RunManifest
    summary: RunSummary | None
    status: RunStatus
    last_phase: str | None
    problem: str | None = None  # why a damaged run cannot be read as data (one line)
    newer_schema: bool = False  # written by a newer JouleLab: `problem` says to upgrade

    @property
    def spec(self) -> dict[str, Any]:
        return self.manifest.spec

    @property
    def started(self) -> str:
        return self.manifest.started or ""


# What a listing keeps of each run (light records): enough for `joulelab runs` and for selecting
# runs, so memory does not grow with the size of every summary. Commands that need a run's data
# load it whole, one run at a time (load_run).
_LIGHT_SPEC = ("preset", "config", "seed", "batch", "dataset", "size", "mode")


def _lighten(manifest: RunManifest, summary: RunSummary | None) -> tuple[RunManifest, RunSummary | None]:
    spec = manifest.spec
    light_manifest = RunManifest(spec={k: spec.get(k) for k in _LIGHT_SPEC}, started=manifest.started, pid=manifest.pid)
    if summary is None:
        return light_manifest, None
    light = RunSummary(
        run_id=summary.run_id,
        status=summary.status,
        error=summary.error,
        last_phase=summary.last_phase,
        config=summary.config,
        synthetic=summary.synthetic,
        phases={p: PhaseRecord(duration_s=r.duration_s, total=r.total) for p, r in summary.phases.items()},
        metrics=Metrics(accuracy_frac=summary.metrics.accuracy_frac),
    )
    return light_manifest, light


def _damaged(path: Path, manifest: RunManifest, problem: str, newer_schema: bool = False) -> RunRecord:
    return RunRecord(path.name, path, manifest, None, "damaged", None, problem, newer_schema)


def load_run(path: Path, light: bool = False) -> RunRecord:
    """A run as its files tell it. A damaged file, or one written by a newer JouleLab, makes the
    run `damaged` with the reason in `problem` (find_run raises it as a StoreError)."""
    manifest_data, manifest_problem = _load_json(path / RUN_JSON)
    summary_data, summary_problem = _load_json(path / SUMMARY)
    manifest = RunManifest()
    if summary_problem not in (None, "missing"):
        return _damaged(path, manifest, f"summary.json is {summary_problem}")
    if manifest_data is None:
        return _damaged(path, manifest, f"run.json is {manifest_problem} (no spec to read the run by)")
    try:
        manifest = manifest_from_json(manifest_data, f"run {path.name}: run.json")
        summary = summary_from_json(summary_data, f"run {path.name}: summary.json") if summary_data else None
    except NewerSchemaError as exc:
        return _damaged(path, manifest, str(exc), newer_schema=True)
    except RecordError as exc:
        return _damaged(path, manifest, str(exc))
    if light:
        manifest, summary = _lighten(manifest, summary)
    if summary is not None:
        return RunRecord(path.name, path, manifest, summary, final_status(summary), summary.last_phase)
    alive = same_process_alive(manifest.pid, manifest.pid_started)
    return RunRecord(path.name, path, manifest, None, "running" if alive else "crashed", _last_phase(path / EVENTS))


def run_dirs(logs_dir: Path) -> list[Path]:
    """The run directories in `logs_dir`, by id. Ids begin with their start time (new_run_id), so
    this is start order without opening a file."""
    if not logs_dir.is_dir():
        return []
    return sorted((p for p in logs_dir.iterdir() if RUN_ID_RE.match(p.name) and p.is_dir()), key=lambda p: p.name)


def list_runs(logs_dir: Path, light: bool = False, newest: int | None = None) -> list[RunRecord]:
    """Every run in `logs_dir` (or the `newest` by id), oldest first; `light` keeps only what a
    listing shows."""
    paths = run_dirs(logs_dir)
    if newest is not None:
        paths = paths[-newest:] if newest > 0 else []
    runs = [load_run(p, light) for p in paths]
    return sorted(runs, key=lambda r: (r.started or "", r.run_id))


def find_run(logs_dir: Path, run_id: str) -> RunRecord:
    """One run by id; a run written by a newer JouleLab is refused with the one line that says so."""
    record = load_run(run_dir(logs_dir, run_id))
    if record.newer_schema and record.problem is not None:
        raise StoreError(record.problem)
    return record
