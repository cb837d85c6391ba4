"""The channel between `joulelab measure` and a `joulelab.run` inside the command it meters, so
the command's own phases become the measuring run's phases instead of being metered twice.

`joulelab measure` listens on a Unix stream socket in a private folder and names it to the
command in its `measure_channel` setting (engine.core.settings). A `joulelab.run` that finds it
meters nothing itself and writes no log: it sends each step as one JSON line and waits for the
answer line before it goes on, so a phase's work starts only once the measuring run's window is
open (and, on CUDA, the inner side has synchronised before it asks for the edge):

    {"op": "hello", "name": ..., "labels": {...}, "pid": N}    -> {"ok": true, "run_id": ..., "path": ...}
    {"op": "begin_phase", "phase": "train"}                     -> {"ok": true}
    {"op": "end_phase", "phase": "train", "partial": false}     -> {"ok": true}
    {"op": "epoch", "val_accuracy": 0.9, "progress": {...}}     -> {"ok": true, "cumulative_j": ..., "source": ...}
    {"op": "result", "accuracy": ..., "inferences": ..., ...}   -> {"ok": true}
    {"op": "end", "status": "complete", "error": null}          -> {"ok": true}

An answer {"ok": false, "error": "..."} is a misuse the measuring run refused (a phase inside a
phase, a reserved name): one line, raised in the user's code as the API's own error would be.
"""

from __future__ import annotations

import io
import json
import socket
from typing import Any

from engine.core.errors import JouleLabError

TIMEOUT_S = 60.0  # the measuring side answers in milliseconds; longer means it is gone or stopped


class ChannelLost(JouleLabError):
    """The measuring process cannot be reached (gone, refused, or never there)."""


class Refused(JouleLabError):
    """The measuring run refused a request; the message says why, in one line."""


def write_message(stream: io.BufferedIOBase, message: dict[str, Any]) -> None:
    stream.write(json.dumps(message).encode() + b"\n")
    stream.flush()


def read_message(stream: io.BufferedIOBase) -> dict[str, Any] | None:
    """The next message, or None at the end of the stream."""
    line = stream.readline()
    if not line:
        return None
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a message is a JSON object")
    return message


class MeasureChannel:
    """The inner end: one connection, one request at a time, each answered before it returns."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._stream: io.BufferedIOBase = sock.makefile("rwb")

    @classmethod
    def connect(cls, path: str) -> MeasureChannel:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT_S)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise ChannelLost(f"cannot connect to {path}: {exc.strerror or exc}") from None
        return cls(sock)

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its answer; Refused when the measuring run said no."""
        try:
            write_message(self._stream, {"op": op, **fields})
            answer = read_message(self._stream)
        except (OSError, ValueError) as exc:
            raise ChannelLost(f"the channel failed ({exc})") from None
        if answer is None:
            raise ChannelLost("the measuring process closed the channel")
        if not answer.get("ok"):
            raise Refused(str(answer.get("error") or f"{op} refused"))
        return answer

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._sock.close()
