"""A plan's size is counted before it is made (memory flat in the number of runs); the CLI says the
count and an estimated time before starting; above MAX_PLAN_RUNS it asks at a terminal and
refuses in one line without one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from itertools import islice
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from engine import cli
from engine.orchestrate import presets
from tests.helpers import REPO, preset_file

runner = CliRunner()


def huge_preset(tmp_path: Path) -> Path:
    """1000 widths x 1000 trials: a million runs."""
    widths = ", ".join(f"{0.05 * i:.2f}" for i in range(1, 1001))
    path = tmp_path / "huge.toml"
    path.write_text(f"[preset]\nname = 'huge'\ntrials = 1000\n[matrix]\nmode = ['scratch']\nwidth = [{widths}]\n")
    return path


def test_a_million_run_plan_is_refused_quickly_without_a_terminal(tmp_path):
    logs = tmp_path / "logs"
    t0 = time.monotonic()
    result = runner.invoke(cli.app, ["run", str(huge_preset(tmp_path)), "--logs", str(logs)])
    took = time.monotonic() - t0
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert "preset 'huge' makes 1000000 runs (1000 configurations x 1000 trials), more than 1000 at once" in line
    assert "none was started" in line and "--trials" in line and "--only" in line
    assert took < 10 and not logs.exists()


def test_counting_a_million_runs_takes_no_memory_to_speak_of(tmp_path):
    loaded = presets.load(str(huge_preset(tmp_path)))
    tracemalloc.start()
    try:
        assert loaded.count() == 1_000_000
        with pytest.raises(typer.Exit):  # the CLI's path: count, then refuse (no terminal)
            cli.load_plan(str(huge_preset(tmp_path)), tmp_path / "logs")
        first = list(islice(loaded.iter_plan(), 10))  # the runs are made one at a time
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [p.trial for p in first] == list(range(10))
    assert peak < 5_000_000, f"peak {peak / 1e6:.1f} MB"


def test_the_estimate_comes_from_past_runs_of_the_configuration_or_from_the_settings(tmp_path):
    loaded = presets.load(str(preset_file(tmp_path, idle_s=2.0, test_min_s=3.0)))
    (config,) = loaded.configs
    seconds, how = loaded.estimate(4, {}, {})
    assert seconds == pytest.approx(4 * (presets.RUN_OVERHEAD_S + 2.0 + 3.0)) and how.startswith("at least")
    seconds, how = loaded.estimate(4, {}, {config.key: [10.0, 20.0]})
    assert seconds == pytest.approx(60.0) and "from past runs" in how
    assert presets.plan_line(4, 60.0, how) == f"4 runs, about 60 s ({how})"
    assert presets.plan_line(3, 5400.0, "x") == "3 runs, about 90 min (x)"


@pytest.mark.slow
def test_run_says_the_count_and_the_estimate_before_starting(tmp_path):
    logs = tmp_path / "logs"
    args = ["run", str(preset_file(tmp_path)), "--logs", str(logs), "--format", "json"]
    first = runner.invoke(cli.app, args)
    assert first.exit_code == 0, first.output
    assert first.stderr.splitlines()[0].startswith("1 run, about ") and "(at least: " in first.stderr
    json.loads(first.stdout)  # the line stays off the JSON
    second = runner.invoke(cli.app, args)
    assert "from past runs of the same configurations in these logs" in second.stderr.splitlines()[0]


@pytest.mark.slow
def test_at_a_terminal_a_huge_plan_asks_and_no_does_not_start_it(tmp_path):
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    logs = tmp_path / "logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(huge_preset(tmp_path)), "--logs", str(logs)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=REPO,
        env=env,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    while b"start them?" not in seen and time.monotonic() < deadline:
        seen += os.read(leader, 4096)
    assert b"makes 1000000 runs" in seen
    os.write(leader, b"n\n")
    assert proc.wait(timeout=30) == 2
    os.close(leader)
    assert not logs.exists()
