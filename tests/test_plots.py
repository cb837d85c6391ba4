"""`joulelab plot`'s legends name runs as the tables do: configuration and seed."""

import json
import shutil
from pathlib import Path

import matplotlib

from engine.outputs.plots import plot_runs, run_names
from engine.store.run_log import list_runs
from tests.helpers import REPO

GOLDEN = REPO / "tests" / "golden" / "logs"


def copy_run(logs: Path, source: str, run_id: str) -> None:
    shutil.copytree(GOLDEN / source, logs / run_id)
    for name in ("run.json", "summary.json"):
        data = json.loads((logs / run_id / name).read_text())
        data["run_id"] = run_id
        (logs / run_id / name).write_text(json.dumps(data))


def test_runs_are_named_by_configuration_and_seed():
    assert run_names(list_runs(GOLDEN)) == {
        "golden-transfer": "synthetic/small/transfer/baseline s0",
        "golden-scratch": "synthetic/small/scratch/baseline s0",
    }


def test_two_runs_that_read_the_same_get_their_run_ids(tmp_path):
    copy_run(tmp_path, "golden-transfer", "first")
    copy_run(tmp_path, "golden-transfer", "again")
    names = run_names(list_runs(tmp_path))
    assert names == {
        "first": "synthetic/small/transfer/baseline s0 (first)",
        "again": "synthetic/small/transfer/baseline s0 (again)",
    }


def test_the_legend_says_configuration_and_seed_not_the_run_id(tmp_path):
    out = tmp_path / "plot.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text, to read it back
        plot_runs(list_runs(GOLDEN), out)
    svg = out.read_text()
    assert "synthetic/small/transfer/baseline s0" in svg and "synthetic/small/scratch/baseline s0" in svg
    assert "golden-transfer" not in svg
