"""Tables that fit: `compare`, `run` (the same tables) and `runs` at 80 and 120 columns show every
column, compared with snapshots made from the golden logs; piped output keeps the full layout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

GOLDEN = Path(__file__).parent / "golden"
SNAPSHOTS = GOLDEN / "expected" / "tables"
# Every column, in the compact layout and in the full one (which is used when it fits).
COMPARE_COLUMNS = (
    (
        "config",
        "n",
        "pre J",
        "train J",
        "test J",
        "mJ/inf",
        "acc%",
        "F1",
        "group",
        "compared",
        "train E",
        "infer E",
        "acc pts",
        "payback",
    ),
    (
        "configuration",
        "n",
        "pretrain J",
        "train J",
        "test J",
        "mJ/inf",
        "acc %",
        "F1",
        "held fixed",
        "comparison",
        "train energy",
        "inference energy",
        "accuracy pts",
        "pays back",
    ),
)
RUNS_COLUMNS = (
    ("run / started", "preset / config", "seed", "status", "train J", "acc %"),
    ("run", "started", "preset", "configuration", "seed", "status", "train J", "acc %"),
)


def _cli(args: list[str], columns: int | None, tmp_path: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "JOULELAB_CACHE": str(tmp_path / "cache")}
    env.pop("COLUMNS", None)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    # relative to the checkout, so the title ("Runs in ...") is the same in any clone
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", *args, "--logs", "tests/golden/logs"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize(
    ("command", "headers"),
    [
        (["compare", "golden-transfer", "golden-scratch"], COMPARE_COLUMNS),
        (["runs"], RUNS_COLUMNS),
    ],
)
def test_tables_fit_the_terminal_with_every_column(command, headers, columns, tmp_path):
    out = _cli(command, columns, tmp_path)
    assert max(len(line) for line in out.splitlines()) <= columns
    assert any(all(h in out for h in layout) for layout in headers), out
    snapshot = SNAPSHOTS / f"{command[0]}-{columns}.txt"
    assert out == snapshot.read_text(encoding="utf-8"), f"differs from {snapshot}"


@pytest.mark.slow
def test_piped_output_keeps_the_full_layout(tmp_path):
    out = _cli(["compare", "golden-transfer", "golden-scratch"], None, tmp_path)
    for header in ("configuration", "pretrain J", "held fixed", "inference energy", "pays back"):
        assert header in out, header
    assert "synthetic/small/transfer" in out
