"""A FIFO, a device or a huge file where a run's record belongs: readers name the run damaged and
go on, rather than hanging on the FIFO or reading /dev/zero until memory runs out."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.store.run_log import MAX_RECORD_BYTES, load_run, read_events
from tests.helpers import REPO

GOLDEN = REPO / "tests" / "golden" / "logs"


def logs_with(tmp_path: Path, name: str, make) -> Path:
    logs = tmp_path / "logs"
    for run in ("golden-transfer", "golden-scratch"):
        shutil.copytree(GOLDEN / run, logs / run)
    target = logs / "golden-scratch" / name
    target.unlink()
    make(target)
    return logs


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "make", "why"),
    [
        ("summary.json", os.mkfifo, "a FIFO, not a regular file"),
        ("summary.json", lambda p: p.symlink_to("/dev/zero"), "a device or socket, not a regular file"),
        ("run.json", os.mkfifo, "a FIFO, not a regular file"),
    ],
    ids=["summary-fifo", "summary-dev-zero", "manifest-fifo"],
)
def test_runs_names_a_special_file_damaged_and_lists_the_rest(tmp_path, name, make, why):
    """Defect: a FIFO in place of summary.json hung `joulelab runs`; /dev/zero raised MemoryError."""
    logs = logs_with(tmp_path, name, make)
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "runs", "--logs", str(logs)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "golden-transfer" in proc.stdout
    assert "golden-scratch" in proc.stderr and why in proc.stderr


def test_a_record_too_large_to_be_one_is_damaged(tmp_path):
    logs = logs_with(tmp_path, "summary.json", lambda p: p.write_bytes(b" " * (MAX_RECORD_BYTES + 1)))
    record = load_run(logs / "golden-scratch")
    assert record.status == "damaged" and "not a run record" in (record.problem or "")


def test_events_in_a_fifo_are_none_not_a_hang(tmp_path):
    logs = logs_with(tmp_path, "events.jsonl", os.mkfifo)
    assert read_events(logs / "golden-scratch" / "events.jsonl") == ([], 0)
