"""`joulelab measure`: meter any command, and A/B of commands with the lab's statistics.

One command: an idle baseline, then the command's lifetime as the run's `train` phase (the phase
`compare`'s training energy reads), metered in this process (engine.worker.user_run.Run): the
modelled meter counts this process's tree, which holds the command's. The command's exit code is
passed through, Ctrl-C and SIGTERM are forwarded to its process group, and its stdout and stderr
are the terminal's.

Several commands (hyperfine's shape): after `warmup` unmetered runs of each, `trials` rounds in
counterbalanced order (A B, B A, A B, ...), each run paired by its round's seed. The first command
is the reference (the configuration's `baseline` mechanism); the others are B, C, ... compared
with it by engine.analysis.stats like any mechanism.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from engine.core.errors import JouleLabError
from engine.core.records import RunSummary
from engine.core.records.config_key import BASELINE
from engine.core.spec import new_run_id
from engine.worker.user_run import Run

LETTERS = "ABCDEFGHIJ"
COMMAND_PHASE = "train"  # the command's lifetime: what `compare` reads as training energy


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


def run_command(argv: list[str], received: list[int]) -> int:
    """Run `argv` in its own process group with the terminal's stdio; its exit code as a shell
    says it (128 + N when signal N ended it)."""
    pid: list[int] = []
    with forwarding_signals(lambda: pid[0] if pid else None, received):
        try:
            proc = subprocess.Popen(argv, start_new_session=True)
        except FileNotFoundError:
            raise MeasureError(f"command not found: {argv[0]!r} (is it on PATH?)") from None
        except PermissionError:
            raise MeasureError(f"command {argv[0]!r} cannot be executed (permission denied)") from None
        pid.append(proc.pid)
        code = proc.wait()  # a forwarded signal interrupts nothing here: the wait resumes (PEP 475)
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
    )
    received: list[int] = []
    run.begin()
    try:
        run.begin_phase(COMMAND_PHASE)
        code = run_command(argv, received)
        run.end_phase(COMMAND_PHASE)
    except BaseException as exc:
        run.end("failed", f"{type(exc).__name__}: {exc}" if not isinstance(exc, JouleLabError) else str(exc))
        raise
    if received:
        summary = run.end("cancelled", f"cancelled by {signal.Signals(received[0]).name} (forwarded to the command)")
    elif code != 0:
        summary = run.end("failed", f"the command exited with {code}")
    else:
        summary = run.end()
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
            code = run_command(argv, received)
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
