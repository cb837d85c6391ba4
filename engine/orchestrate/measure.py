"""`joulelab measure`: meter any command, and A/B of commands with the lab's statistics.

One command: an idle baseline, then the command's lifetime as the run's `train` phase (the phase
`compare`'s training energy reads), metered in this process (engine.worker.user_run.Run): the
modelled meter counts this process's tree, which holds the command's. The command's exit code is
passed through, Ctrl-C and SIGTERM are forwarded to its process group, and its stdout and stderr
are the terminal's.

A command that uses `joulelab.run` itself (found through engine.worker.measure_channel) hands its
run to this one: its phases, epochs (the curve), result, name and labels become this run's, and
it writes no log of its own. The lifetime phase is then withdrawn, and the command's time outside
its own phases (start-up, imports, data loading, between and after the phases) is recorded as
one phase, `unattributed`: the lifetime minus the command's phases, so all of it is still
accounted for (and none of it is training energy). Only the first run of the command is taken;
a second one meters itself, and says so. A command that ends inside one of its phases ends this
run `failed`, with that phase partial.

Several commands (hyperfine's shape): after `warmup` unmetered runs of each, `trials` rounds in
counterbalanced order (A B, B A, A B, ...), each run paired by its round's seed. The first command
is the reference (the configuration's `baseline` mechanism); the others are B, C, ... compared
with it by engine.analysis.stats like any mechanism.
"""

from __future__ import annotations

import contextlib
import io
import os
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from engine.core.errors import JouleLabError
from engine.core.records import RunSummary
from engine.core.records.config_key import BASELINE
from engine.core.settings import env_var
from engine.core.spec import new_run_id
from engine.worker.measure_channel import read_message, write_message
from engine.worker.user_run import Run

LETTERS = "ABCDEFGHIJ"
COMMAND_PHASE = "train"  # the command's lifetime: what `compare` reads as training energy
UNATTRIBUTED = "unattributed"  # a command with phases of its own: its time outside them


class MeasureError(JouleLabError):
    """A command that cannot be measured (not found, not executable); one line."""


@dataclass
class Measured:
    """One metered run of one command."""

    letter: str  # A, B, ...: the command's place on the command line
    command: list[str]
    summary: RunSummary
    exit_code: int  # the command's, as a shell reports it (128 + N for a signal N)


def mechanism_of(letter: str) -> str:
    """The configuration key's mechanism for a command: the first is the reference."""
    return BASELINE if letter == "A" else letter


def parse_commands(args: list[str], after_double_dash: bool) -> list[list[str]]:
    """`-- CMD ARGS...` is one command; otherwise each argument is a command line of its own."""
    if not args:
        raise MeasureError("no command to measure: joulelab measure -- CMD ARGS, or joulelab measure 'CMD A' 'CMD B'")
    if after_double_dash:
        return [list(args)]
    commands = []
    for text in args:
        try:
            argv = shlex.split(text)
        except ValueError as exc:
            raise MeasureError(f"command {text!r}: {exc}; quote it as a shell would") from None
        if not argv:
            raise MeasureError("an empty command: give each command as one quoted argument")
        commands.append(argv)
    if len(commands) > len(LETTERS):
        raise MeasureError(f"{len(commands)} commands: compare at most {len(LETTERS)} at once")
    return commands


@contextlib.contextmanager
def forwarding_signals(child: Callable[[], int | None], received: list[int]) -> Iterator[None]:
    """While a command runs: SIGINT and SIGTERM go to its process group (it ends as it would have
    under the shell) and are remembered; the measuring goes on until it has ended."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        pid = child()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signum)

    saved = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class InnerRun:
    """This side of the channel for one command: serves the first `joulelab.run` that says hello
    by metering its steps in `run` (None: a warm-up, where every step is answered and nothing is
    metered). The inner side waits for each answer, so the windows open and close at its edges."""

    def __init__(self, run: Run | None) -> None:
        self.run = run
        self._folder = tempfile.mkdtemp(prefix="joulelab-measure-")
        self.path = os.path.join(self._folder, "channel")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen()
        self.name: str | None = None  # the inner run's, once it said hello
        self.phases: list[str] = []  # the inner run's phases, begun in order
        self.open_phase: str | None = None
        self.status: str | None = None  # what the inner run said it ended as, and why
        self.error: str | None = None

    @property
    def taken(self) -> bool:
        return self.name is not None

    def environment(self) -> dict[str, str]:
        return {**os.environ, env_var("measure_channel"): self.path}

    def serve(self, proc: subprocess.Popen[bytes]) -> int:
        """Answer the command's requests until it has exited; its exit status (Popen's)."""
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, "listener")
        try:  # wakes at the command's exit exactly, where Linux has pidfds
            opened = os.pidfd_open(proc.pid)
            selector.register(opened, selectors.EVENT_READ, "exit")
            pidfd: int | None = opened
        except (AttributeError, OSError):
            pidfd = None
        streams: dict[socket.socket, io.BufferedIOBase] = {}
        try:
            while (code := proc.poll()) is None:
                self._serve_ready(selector, streams, timeout=0.1)
            if pidfd is not None:
                selector.unregister(pidfd)  # readable for good now
            while streams:  # the last requests (and the end of the stream) after the exit
                if not self._serve_ready(selector, streams, timeout=1.0):
                    break
            return code
        finally:
            for conn in list(streams):
                conn.close()
            selector.close()
            if pidfd is not None:
                os.close(pidfd)

    def _serve_ready(
        self, selector: selectors.BaseSelector, streams: dict[socket.socket, io.BufferedIOBase], timeout: float
    ) -> bool:
        events = selector.select(timeout)
        for key, _ in events:
            if key.data == "listener":
                conn, _ = self._listener.accept()
                streams[conn] = conn.makefile("rwb")
                selector.register(conn, selectors.EVENT_READ, "conn")
            elif key.data == "conn":
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                stream = streams[ready]
                try:
                    message = read_message(stream)
                except (OSError, ValueError):
                    message = None
                if message is None:  # the other end closed: its run, or its process, ended
                    selector.unregister(ready)
                    del streams[ready]
                    ready.close()
                    continue
                write_message(stream, self._answer(message, ready))
        return bool(events)

    def _answer(self, message: dict[str, object], conn: socket.socket) -> dict[str, object]:
        try:
            return {"ok": True, **self._step(message, conn)}
        except (JouleLabError, ValueError, TypeError, KeyError) as exc:
            return {"ok": False, "error": str(exc)}

    def _step(self, message: dict[str, object], conn: socket.socket) -> dict[str, object]:
        op, run = message.get("op"), self.run
        if op == "hello":
            if self.taken:
                raise MeasureError(f"this command's run {self.name!r} is already metered by `joulelab measure`")
            self._owner = conn
            self.name = str(message.get("name"))
            if run is None:
                return {"run_id": "warm-up", "path": ""}
            run.meter.withdraw_window(COMMAND_PHASE)  # the command's own phases take over
            run.note("inner", {"name": self.name, "labels": message.get("labels") or {}, "pid": message.get("pid")})
            return {"run_id": run.run_id, "path": str(run.path)}
        if conn is not getattr(self, "_owner", None):
            raise MeasureError("say hello first")
        phase = message.get("phase")
        if op == "begin_phase":
            if phase == UNATTRIBUTED:
                raise MeasureError(
                    f"phase {UNATTRIBUTED!r}: the command's time outside its phases; name yours otherwise"
                )
            if run is not None:
                run.begin_phase(str(phase))
            self.phases.append(str(phase))
            self.open_phase = str(phase)
        elif op == "end_phase":
            if run is not None:
                run.end_phase(str(phase), partial=bool(message.get("partial")))
            self.open_phase = None
        elif op == "epoch":
            if run is None:
                return {}
            accuracy = message.get("val_accuracy")
            progress = message.get("progress") or {}
            assert isinstance(progress, dict)
            run.epoch(None if accuracy is None else float(accuracy), **progress)  # type: ignore[arg-type]
            if accuracy is None:
                return {}
            point = run.curve[-1]
            return {
                "phase": point.phase,
                "epoch": point.epoch,
                "cumulative_j": point.cumulative_j,
                "source": point.source,
            }
        elif op == "result":
            if run is not None:
                fields = {k: message.get(k) for k in ("accuracy", "inferences", "train_samples", "f1_macro")}
                run.result(**fields)  # type: ignore[arg-type]
        elif op == "end":
            self.status, self.error = str(message.get("status")), message.get("error")  # type: ignore[assignment]
        else:
            raise MeasureError(f"unknown request {op!r}")
        return {}

    def close(self) -> None:
        self._listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._folder)


def run_command(argv: list[str], received: list[int], inner: InnerRun | None = None) -> int:
    """Run `argv` in its own process group with the terminal's stdio, serving `inner`'s channel
    while it runs; its exit code as a shell says it (128 + N when signal N ended it)."""
    pid: list[int] = []
    with forwarding_signals(lambda: pid[0] if pid else None, received):
        try:
            proc = subprocess.Popen(argv, start_new_session=True, env=inner.environment() if inner else None)
        except FileNotFoundError:
            raise MeasureError(f"command not found: {argv[0]!r} (is it on PATH?)") from None
        except PermissionError:
            raise MeasureError(f"command {argv[0]!r} cannot be executed (permission denied)") from None
        pid.append(proc.pid)
        # a forwarded signal interrupts nothing here: the waits resume (PEP 475)
        code = inner.serve(proc) if inner is not None else proc.wait()
    return 128 - code if code < 0 else code


def measure_command(
    argv: list[str],
    *,
    name: str,
    logs: Path,
    letter: str = "A",
    seed: int = 0,
    batch: str | None = None,
    idle_s: float = 2.0,
    sample_hz: float = 10.0,
    tdp_w: float | None = None,
) -> Measured:
    """Meter one run of a command: an idle baseline, then its lifetime as the train phase."""
    labels: dict[str, str | int | float] = {
        "dataset": name,
        "size": "command",
        "mode": "run",
        "mechanism": mechanism_of(letter),
        "seed": seed,
        "command": shlex.join(argv),
    }
    if batch is not None:
        labels["batch"] = batch
    run = Run(
        name,
        logs=logs,
        labels=labels,
        idle_s=idle_s,
        sample_hz=sample_hz,
        tdp_w=tdp_w,
        device="cpu",  # nothing of ours runs on a GPU: no sync; the command's GPUs are metered
        metered_gpus="all",
        hand_over=False,  # this is the measuring run, also when `joulelab measure` runs inside one
    )
    received: list[int] = []
    run.begin()
    inner = InnerRun(run)
    try:
        lifetime = run.meter.mark()
        run.begin_phase(COMMAND_PHASE)  # withdrawn if the command's own run takes over
        code = run_command(argv, received, inner)
        died_in = inner.open_phase
        if inner.taken:
            if died_in is not None:
                run.end_phase(died_in, partial=True)  # the command ended inside it: kept, partial
            run.meter.record_remainder(UNATTRIBUTED, lifetime, inner.phases)
        else:
            run.end_phase(COMMAND_PHASE)
    except BaseException as exc:
        run.end("failed", f"{type(exc).__name__}: {exc}" if not isinstance(exc, JouleLabError) else str(exc))
        raise
    finally:
        inner.close()
    if received:
        summary = run.end("cancelled", f"cancelled by {signal.Signals(received[0]).name} (forwarded to the command)")
    elif died_in is not None:
        summary = run.end("failed", f"the command ended (exit {code}) inside its phase {died_in}")
    elif inner.status is not None and inner.status != "complete":
        summary = run.end("failed", f"the command's run ended {inner.status}: {inner.error}")
    elif code != 0:
        summary = run.end("failed", f"the command exited with {code}")
    else:
        summary = run.end()
    assert summary is not None
    return Measured(letter, argv, summary, code)


def measure_ab(
    commands: list[list[str]],
    *,
    name: str,
    logs: Path,
    trials: int,
    warmup: int = 0,
    idle_s: float = 2.0,
    sample_hz: float = 10.0,
    tdp_w: float | None = None,
    more_rounds: Callable[[list[Measured]], bool] | None = None,
    max_trials: int = 10,
    say: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> tuple[list[Measured], str]:
    """Counterbalanced rounds of every command, after `warmup` unmetered runs of each; stops at the
    first run that does not complete (a failure or a cancel), keeping what was measured. With
    `more_rounds` (--until-clear), rounds go on past `trials`, one at a time, while it says the
    comparison is still unclear, up to `max_trials`. Returns the runs and the batch they share
    (`compare --last`)."""
    batch = new_run_id()
    letters = LETTERS[: len(commands)]
    for _ in range(warmup):
        for letter, argv in zip(letters, commands):
            say(f"warm-up {letter}: {shlex.join(argv)}")
            received: list[int] = []
            warm_up = InnerRun(None)  # a run inside it is answered, and nothing metered or written
            try:
                code = run_command(argv, received, warm_up)
            finally:
                warm_up.close()
            if received or code != 0:
                say(f"warm-up of {letter} ended with {code}: nothing measured")
                return [], batch
    measured: list[Measured] = []
    trial = 0
    while trial < trials or (more_rounds is not None and trial < max_trials and more_rounds(measured)):
        order = list(zip(letters, commands))
        if trial % 2:
            order.reverse()  # A B, then B A: drift over the session falls on both
        for letter, argv in order:
            of = f"/{trials}" if trial < trials else " (--until-clear)"
            say(f"trial {trial + 1}{of}, {letter}: {shlex.join(argv)}")
            m = measure_command(
                argv,
                name=name,
                logs=logs,
                letter=letter,
                seed=trial,
                batch=batch,
                idle_s=idle_s,
                sample_hz=sample_hz,
                tdp_w=tdp_w,
            )
            measured.append(m)
            if m.summary.status != "complete":
                return measured, batch
        trial += 1
    return measured, batch
