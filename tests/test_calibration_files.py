"""The saved noise floor as a file that can be wrong: where `calibrate` will save is checked before
its first run, and a damaged calibration file is named in one line and ignored, never trusted (no
overflow, no infinite floor)."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.analysis.calibrate import calibration_path, load_noise_floor, read_noise_floor
from engine.analysis.stats import NoiseFloor
from engine.cli import app
from tests.helpers import REPO

GOLDEN_LOGS = str(REPO / "tests" / "golden" / "logs")
runner = CliRunner()


def saved_file(sd_train: object, **changes: object) -> dict:
    record = {
        "host": socket.gethostname(),
        "measured": "2026-12-01T10:00:00+0000",
        "config": "synthetic/small/scratch/baseline",
        "pairs": 5,
        "sd_log": {"train": sd_train, "test": 0.02},
    }
    return {**record, **changes}


def write_calibration(content: str) -> Path:
    path = calibration_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def test_a_sound_file_is_read():
    write_calibration(json.dumps(saved_file(0.03)))
    floor, problem = read_noise_floor()
    assert problem is None and floor is not None
    assert floor.sd_log == {"train": 0.03, "test": 0.02} and floor.pairs == 5


def test_never_calibrated_is_no_floor_and_no_complaint():
    assert read_noise_floor() == (None, None)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (json.dumps(saved_file(1000)), "<= 0.5"),  # made compare die with OverflowError
        (json.dumps(saved_file(1e308)), "<= 0.5"),  # printed a floor of ±inf %
        (json.dumps(saved_file(-0.1)), ">= 0"),
        (json.dumps(saved_file("wide")), "Expected `float`"),
        (json.dumps(saved_file(0.03, pairs=0)), "pairs"),
        (json.dumps([1, 2]), "Expected `object`"),
        ("{not json", "malformed"),
    ],
    ids=["sd-1000", "sd-1e308", "negative", "text", "pairs-0", "a-list", "garbage"],
)
def test_a_damaged_file_is_named_in_one_line_and_ignored(content, why):
    path = write_calibration(content)
    told = []
    assert load_noise_floor(on_problem=told.append) is None
    (message,) = told
    assert str(path) in message and "damaged" in message and why in message and "\n" not in message


def test_a_floor_is_never_infinite():
    """Even built in code, a huge spread gives no floor rather than an overflow or ±inf %."""
    floor = NoiseFloor("h", {"train": 1000.0}, 5, "", "")
    assert floor.floor("train", 5) is None
    assert math.isfinite(NoiseFloor("h", {"train": 0.05}, 5, "", "").floor("train", 5))


def test_compare_names_a_damaged_calibration_and_goes_on():
    write_calibration(json.dumps(saved_file(1000)))
    result = runner.invoke(app, ["compare", "golden-transfer", "golden-scratch", "--logs", GOLDEN_LOGS])
    assert result.exit_code == 0, result.output
    assert result.output.count("is damaged") == 1
    assert "transfer vs scratch" in result.output


@pytest.mark.slow
def test_calibrate_refuses_before_its_first_run_when_it_cannot_save(tmp_path):
    """Defect: with the cache setting on a file, calibrate ran every pair (38 s for 2), then died
    with a NotADirectoryError traceback and lost the calibration."""
    blocker = tmp_path / "cache-file"
    blocker.write_text("x")
    logs = tmp_path / "logs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "JOULELAB_CACHE": str(blocker), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "calibrate", "--pairs", "2", "--logs", str(logs)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
    assert "cannot save a calibration in" in line and "JOULELAB_CACHE" in line
    assert not logs.exists() or not any(p.is_dir() for p in logs.iterdir())  # no run was started
