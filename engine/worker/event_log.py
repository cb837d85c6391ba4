"""The run's event log: events.jsonl written a whole line at a time (and to a live stream while
someone reads it), by the worker and by the Python API (joulelab.run) alike."""

from __future__ import annotations

import _thread
import errno
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol, TextIO

from engine.core.errors import JouleLabError
from engine.core.events import encode, make_event
from engine.core.run_files import LOGS_ENV


class CriticalSection(Protocol):
    """Holds a cancel back while a line is written: `enter()` says whether it took the section."""

    def enter(self) -> bool: ...

    def leave(self) -> None: ...


def to_stderr(text: str) -> None:
    """stderr.log may sit on the disk that just filled: reporting there must not fail the run."""
    try:
        print(text.rstrip("\n"), file=sys.stderr, flush=True)
    except OSError:
        pass


EXIT_LOG_UNWRITABLE = 3
# Write errors that mean "the disk (or this process's share of it) is full", not a bug.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class LogWriteError(JouleLabError):
    """The run log could not be written: the run stops; what was written stays readable."""

    exit_code = EXIT_LOG_UNWRITABLE


def disk_message(exc: OSError, path: Path) -> str:
    why = (exc.strerror or str(exc)).lower()
    return f"{why} while writing {path}; free space there or point --logs / {LOGS_ENV} elsewhere"


class EventWriter:
    """Writes each event to the log (always) and to the stream (while someone reads it)."""

    def __init__(
        self, run_id: str, log_path: Path, stream: TextIO | None, guard: CriticalSection | None = None
    ) -> None:
        self.run_id = run_id
        self._guard = guard  # holds a cancel back while a line is written (the worker's signals)
        self.log_path = log_path
        # A raw descriptor, not a buffered file: a line is written whole or cut back (see _append),
        # and a failed write leaves nothing buffered to fail again at close.
        self._log_fd: int | None = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self._stream = stream
        self._lock = threading.Lock()
        self.count = 0
        self.reader_lost_at: float | None = None
        self.log_error: str | None = None  # why the log stopped taking events (disk full...)

    def emit(self, event_type: str, **fields: Any) -> dict[str, Any]:
        event = make_event(event_type, self.run_id, **fields)
        line = encode(event)
        entered = self._guard.enter() if self._guard is not None else False
        try:
            self._write(line)
        finally:
            if entered and self._guard is not None:
                self._guard.leave()
        return event

    def _write(self, line: str) -> None:
        with self._lock:
            if self.log_error is None and self._log_fd is not None:  # None: closed
                try:
                    _append(self._log_fd, line.encode("utf-8"))
                    self.count += 1
                except OSError as exc:
                    self._log_failed(exc)
                    raise LogWriteError(self.log_error) from None
            # Once the log has failed, events still reach the stream: the reader learns why.
            if self._stream is not None:
                try:
                    self._stream.write(line)
                    self._stream.flush()
                except (BrokenPipeError, OSError, ValueError):
                    # The reader is gone. The log is the record; carry on without the stream.
                    self._stream = None
                    self.reader_lost_at = time.monotonic()

    def _log_failed(self, exc: OSError) -> None:
        self.log_error = (
            disk_message(exc, self.log_path)
            if exc.errno in DISK_FULL_ERRNOS
            else f"cannot write {self.log_path}: {exc.strerror or exc}"
        )
        to_stderr(f"joulelab worker: {self.log_error}")
        if threading.current_thread() is not threading.main_thread():
            # The sampler thread hit it: stop the run in the main thread, as a cancel would.
            _thread.interrupt_main(signal.SIGTERM)

    def close(self) -> None:
        with self._lock:
            if self._log_fd is not None:
                os.close(self._log_fd)
                self._log_fd = None
            if self._stream is not None:
                try:
                    self._stream.close()
                except OSError:
                    pass
                self._stream = None


def _append(fd: int, data: bytes) -> None:
    """Append one line whole, or not at all: a write cut short (disk full) is truncated back, so the
    log never ends in a torn line."""
    start = os.lseek(fd, 0, os.SEEK_END)
    done = 0
    try:
        while done < len(data):
            n = os.write(fd, data[done:])
            if n == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += n
    except OSError:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass
        raise
