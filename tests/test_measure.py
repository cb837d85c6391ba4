"""`joulelab measure`: any command metered (its process tree), its exit code passed through,
signals forwarded, and A/B of commands with the comparison and verdict `compare` gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.orchestrate.measure import MeasureError, parse_commands
from engine.store.run_log import list_runs, read_events
from tests.helpers import REPO


def busy(seconds: float, exit_code: int = 0) -> str:
    """A command line that burns `seconds` of CPU time, then exits with `exit_code`."""
    return (
        f"{sys.executable} -c 'import time; t = time.process_time()\n"
        f"while time.process_time() - t < {seconds}: pass\nraise SystemExit({exit_code})'"
    )


def measure(*args: str, logs: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "measure", "--logs", str(logs), "--idle-s", "0.2", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "220"},
    )


@pytest.mark.slow
def test_one_command_is_metered_and_its_exit_code_passed_through(tmp_path):
    logs = tmp_path / "logs"
    proc = measure("--", sys.executable, "-c", "print('to the terminal'); raise SystemExit(3)", logs=logs)
    assert proc.returncode == 3, proc.stderr
    assert "to the terminal" in proc.stdout  # the command's stdout is the terminal's
    (record,) = list_runs(logs)
    s = record.summary
    assert s is not None and s.status == "failed" and s.error == "the command exited with 3"
    assert list(s.phases) == ["idle", "train"] and s.phases["train"].total.source == "modelled"
    assert s.spec["labels"]["command"].startswith(sys.executable)

    ok = measure("--name", "work", busy(0.3), logs=logs)
    assert ok.returncode == 0, ok.stderr
    done = next(r for r in list_runs(logs) if r.spec.get("name") == "work")
    assert done.status == "complete"
    # the command's own CPU time is in the phase: 0.3 s of it, at the model's watts per core
    assert done.summary.phases["train"].total.net_j > 0


@pytest.mark.slow
def test_a_signal_reaches_the_command_and_the_run_keeps_its_energy(tmp_path):
    logs = tmp_path / "logs"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "measure",
            "--logs",
            str(logs),
            "--idle-s",
            "0.2",
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(60)",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = list_runs(logs) if logs.exists() else []
        if runs and runs[0].last_phase == "train":
            break
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    (record,) = list_runs(logs)
    assert record.status == "cancelled" and "SIGTERM" in (record.summary.error or "")
    assert record.summary.phases["train"].duration_s > 0.4  # measured until the command ended


@pytest.mark.slow
def test_a_against_a_finds_no_clear_difference(tmp_path):
    """The same command twice, counterbalanced over 3 rounds: the interval contains 1.0."""
    proc = measure("--trials", "3", "--name", "same", busy(0.3), busy(0.3), logs=tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr
    assert "B vs baseline" in proc.stdout
    assert "same/command/run: B and baseline: no clear difference in training energy" in proc.stdout.replace("\n", " ")
    runs = list_runs(tmp_path / "logs")
    assert len(runs) == 6 and len({r.spec["batch"] for r in runs}) == 1
    # in the order they ran: each hello's wall clock (run.json's start is to the second only)
    order = [
        r.spec["mechanism"] for r in sorted(runs, key=lambda r: read_events(r.path / "events.jsonl")[0][0].wall_time)
    ]
    assert order == ["baseline", "B", "B", "baseline", "baseline", "B"]  # A B, B A, A B


@pytest.mark.slow
def test_a_failing_command_stops_the_comparison_and_keeps_what_was_measured(tmp_path):
    proc = measure("--trials", "2", busy(0.1), busy(0.1, exit_code=4), logs=tmp_path / "logs")
    assert proc.returncode == 4
    assert "stopped: B failed" in proc.stderr
    statuses = sorted(r.status for r in list_runs(tmp_path / "logs"))
    assert statuses == ["complete", "failed"]


def test_commands_are_parsed_as_a_shell_would():
    assert parse_commands(["python", "a.py", "--x"], after_double_dash=True) == [["python", "a.py", "--x"]]
    assert parse_commands(["python a.py", "python 'b c.py'"], after_double_dash=False) == [
        ["python", "a.py"],
        ["python", "b c.py"],
    ]
    with pytest.raises(MeasureError, match="no command"):
        parse_commands([], after_double_dash=False)
    with pytest.raises(MeasureError, match="quote it"):
        parse_commands(["python 'a.py"], after_double_dash=False)


@pytest.mark.slow
def test_a_command_that_does_not_exist_is_one_line(tmp_path):
    proc = measure("--", "no-such-command-here", logs=tmp_path / "logs")
    assert proc.returncode == 2 and "command not found: 'no-such-command-here'" in proc.stderr
    assert "Traceback" not in proc.stderr
    (record,) = list_runs(tmp_path / "logs")
    assert record.status == "failed"


@pytest.mark.slow
def test_until_clear_adds_rounds_until_a_real_difference_is_clear(tmp_path):
    """B burns four times A's CPU: after the first two rounds the ratio's interval excludes 1.0, or
    rounds are added one at a time until it does (at most 5)."""
    proc = measure(
        "--trials",
        "2",
        "--until-clear",
        "--max-trials",
        "5",
        "--name",
        "ab",
        busy(0.1),
        busy(0.4),
        logs=tmp_path / "logs",
    )
    assert proc.returncode == 0, proc.stderr
    runs = list_runs(tmp_path / "logs")
    rounds = len(runs) // 2
    assert 2 <= rounds <= 5 and len(runs) == 2 * rounds
    verdict = " ".join(proc.stdout.split())
    assert "ab/command/run: B used" in verdict and "the training energy of baseline" in verdict or rounds == 5


def test_until_clear_needs_two_commands(tmp_path):
    from typer.testing import CliRunner

    from engine.cli import app

    result = CliRunner().invoke(app, ["measure", "--until-clear", "--logs", str(tmp_path), "sleep 0"])
    assert result.exit_code == 2 and "--until-clear compares commands" in result.output
