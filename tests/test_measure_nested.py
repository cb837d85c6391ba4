"""Nested metering: a command under `joulelab measure` that uses `joulelab.run` hands its phases,
curve, result and labels to the measuring run (one run log, no second run); its time outside
its phases is the `unattributed` phase; a command that dies inside a phase ends the run failed
with the phase partial; a `joulelab.run` that cannot reach the channel meters itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from engine.core.settings import env_var
from engine.outputs.tables import run_table
from engine.store.run_log import list_runs
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # subprocesses that import torch

SCRIPT = """
import os, sys, time
import joulelab

def burn(seconds):
    t = time.process_time()
    while time.process_time() - t < seconds:
        pass

with joulelab.run("inner", logs=sys.argv[1], labels={"note": "mine"}, idle_s=0, device="cpu") as run:
    with run.phase("train"):
        for epoch in range(2):
            burn(float(sys.argv[2]))
            run.epoch(val_accuracy=0.5 + 0.2 * epoch)
            if sys.argv[3] == "die":
                os._exit(7)  # dies inside the phase: no end of phase, no end of run
    with run.phase("test"):
        burn(0.05)
    run.result(accuracy=0.8, inferences=10, train_samples=100)
"""


def measure(logs: Path, *commands: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "measure", "--logs", str(logs), "--idle-s", "0.2", *commands],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "220"},
    )


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nested") / "train.py"
    path.write_text(SCRIPT)
    return path


@pytest.fixture(scope="module")
def ab(script: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One A/B round of two commands that use the API (the inner logs folder must stay empty)."""
    root = tmp_path_factory.mktemp("ab")
    inner_logs = root / "inner-logs"
    a = f"{sys.executable} {script} {inner_logs} 0.1 live"
    b = f"{sys.executable} {script} {inner_logs} 0.3 live"
    return measure(root / "logs", "--name", "nested", a, b), root


def test_the_commands_phases_are_the_measuring_runs_and_nothing_is_metered_twice(ab):
    proc, root = ab
    assert proc.returncode == 0, proc.stderr
    assert not (root / "inner-logs").exists()  # the inner runs wrote no log of their own
    assert "meters itself" not in proc.stderr
    runs = list_runs(root / "logs")
    assert len(runs) == 2 and {r.status for r in runs} == {"complete"}
    for record in runs:
        s = record.summary
        assert s is not None
        assert list(s.phases) == ["idle", "train", "test", "unattributed"]
        # the lifetime is all there: the command's start-up (python, imports) is unattributed
        assert s.phases["unattributed"].duration_s > 0 and s.phases["unattributed"].total.gross_j > 0
        assert [p.epoch for p in s.curve] == [1, 2] and s.curve[0].cumulative_j > 0
        assert s.metrics.accuracy_frac == 0.8 and s.metrics.train_samples_seen == 100 and s.metrics.inferences == 10
        assert s.spec["inner"]["name"] == "inner" and s.spec["inner"]["labels"] == {"note": "mine"}
    by_mechanism = {r.spec["mechanism"]: r.summary for r in runs}
    # B burns three times A's CPU in its train phase: the train phases are what compare pairs
    assert by_mechanism["B"].phases["train"].total.net_j > by_mechanism["baseline"].phases["train"].total.net_j
    assert "B vs baseline" in proc.stdout
    # `show` lists phases a user's run named, after the study's own
    console = Console(width=200, record=True)
    console.print(run_table(by_mechanism["B"]))
    assert "unattributed" in console.export_text()


def test_a_command_that_dies_inside_its_phase_ends_the_run_failed_with_the_phase_partial(script, tmp_path):
    proc = measure(tmp_path / "logs", "--", sys.executable, str(script), str(tmp_path / "inner"), "0.1", "die")
    assert proc.returncode == 7, proc.stderr
    (record,) = list_runs(tmp_path / "logs")
    s = record.summary
    assert s is not None and s.status == "failed" and "inside its phase train" in (s.error or "")
    assert s.phases["train"].partial and s.phases["train"].total.gross_j > 0 and len(s.curve) == 1
    assert "unattributed" in s.phases


def test_a_run_that_cannot_reach_the_channel_meters_itself_and_says_so(script, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), env_var("measure_channel"): str(tmp_path / "no-such-socket")}
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, str(script), str(logs), "0.05", "live"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if "joulelab:" in x]
    assert "cannot reach `joulelab measure`" in line and "it meters itself" in line
    (record,) = list_runs(logs)
    assert record.status == "complete" and list(record.summary.phases) == ["train", "test"]
