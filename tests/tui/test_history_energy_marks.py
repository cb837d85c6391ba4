"""Defect 3 of issue 19: a train cell that is not a measurement says so the same way in
`joulelab runs` and in the lab's History tab (one function formats it: tables.energy_cell)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app as cli
from tests.tui.conftest import make_app, press, wait_for

GOLDEN = Path(__file__).parents[1] / "golden" / "logs"


def marked_run(logs: Path, run_id: str, seed: int, **total: object) -> None:
    """A copy of the golden scratch run whose train total is changed by `total`."""
    out = logs / run_id
    shutil.copytree(GOLDEN / "golden-scratch", out)
    for name in ("run.json", "summary.json"):
        data = json.loads((out / name).read_text())
        data["run_id"] = run_id
        data["spec"]["seed"] = seed
        if name == "summary.json":
            data["phases"]["train"]["total"].update(total)
        (out / name).write_text(json.dumps(data, indent=2))


async def test_a_gap_and_a_below_idle_run_are_marked_in_runs_and_in_history(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    marked_run(logs, "run-gap", 1, gap=["cpu"])
    marked_run(logs, "run-low", 2, net_j=-0.25)

    listing = CliRunner().invoke(cli, ["runs", "--logs", str(logs)], env={"COLUMNS": "160"})
    assert listing.exit_code == 0, listing.output
    cli_cells = {
        rid: next(line for line in listing.output.splitlines() if rid in line) for rid in ("run-gap", "run-low")
    }
    assert "~13.6 (gap)" in cli_cells["run-gap"] and "~-0.25 (below idle)" in cli_cells["run-low"]

    lab = make_app(logs)
    async with lab.run_test(size=(160, 40)) as pilot:
        await press(pilot, "h")
        await wait_for(pilot, lambda: len(lab.history.records) == 2, what="the history")
        table = lab.history.table
        cells = {rid: str(table.get_cell(rid, "train")) for rid in ("run-gap", "run-low")}
    assert cells == {"run-gap": "~13.6 (gap)", "run-low": "~-0.25 (below idle)"}
