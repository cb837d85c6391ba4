"""What an export leaves on disk: an export killed mid-write leaves hidden temporaries that the
next export into the same place removes (never another export's, still writing), and `-o` with a
file name for a per-table format is refused in one line instead of becoming a directory."""

import os
from pathlib import Path

import psutil
from typer.testing import CliRunner

from engine.cli import app
from tests.helpers import REPO

GOLDEN_LOGS = str(REPO / "tests" / "golden" / "logs")
runner = CliRunner()


def dead_pid() -> int:
    pid = 4_000_000
    while psutil.pid_exists(pid):
        pid += 1
    return pid


def test_the_next_export_removes_what_a_killed_one_left(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    dead, alive = dead_pid(), os.getppid()
    stale_file = out / f".runs.csv.{dead}.part-k1ll3d"
    stale_file.write_bytes(b"x" * 100_000)
    stale_parts = tmp_path / f".joulelab.json.{dead}.part-parts-abc"
    stale_parts.mkdir()
    (stale_parts / "runs").write_text("[")
    writing = out / f".runs.csv.{alive}.part-st1ll"  # another export's, still running
    writing.write_text("partial")
    other = out / ".notes.txt"  # not an export's temporary
    other.write_text("mine")

    result = runner.invoke(app, ["export", "--all", "--logs", GOLDEN_LOGS, "--format", "csv", "-o", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["export", "--all", "--logs", GOLDEN_LOGS, "--format", "json", "-o", str(tmp_path / "joulelab.json")]
    )
    assert result.exit_code == 0, result.output
    assert not stale_file.exists() and not stale_parts.exists()
    assert writing.exists() and other.exists()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "curve.csv",
        "phases.csv",
        "runs.csv",
        "samples.csv",
    ]


def test_a_file_name_for_a_per_table_format_is_refused(tmp_path):
    """Defect: `-o out.parquet` made a directory called out.parquet."""
    target = tmp_path / "out.parquet"
    result = runner.invoke(app, ["export", "--all", "--logs", GOLDEN_LOGS, "--format", "parquet", "-o", str(target)])
    assert result.exit_code == 2
    assert "one file per table" in result.output and "give a directory" in result.output
    assert "Traceback" not in result.output
    assert not target.exists()
    # an existing directory of that name is still a directory to write into
    target.mkdir()
    result = runner.invoke(app, ["export", "--all", "--logs", GOLDEN_LOGS, "--format", "parquet", "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert (target / "runs.parquet").is_file()


def test_export_says_what_it_wrote(tmp_path):
    result = runner.invoke(app, ["export", "--all", "--logs", GOLDEN_LOGS, "-o", str(tmp_path / "e")])
    assert result.exit_code == 0
    wrote = [Path(line.removeprefix("wrote ")) for line in result.output.splitlines() if line.startswith("wrote ")]
    assert {p.name for p in wrote} == {"runs.csv", "phases.csv", "samples.csv", "curve.csv"}
    assert all(p.is_file() for p in wrote)
