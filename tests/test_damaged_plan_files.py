"""A damaged plan file in LOGS/.plans/ (a top-level list, an item null, no spec, truncated) is
named in one line and skipped, by `joulelab run --resume` and by the lab's scan; and a resumed
plan's runs go to the --logs given, where the plan lies, not to the directory it recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.orchestrate import plan_files as plans
from engine.store.run_log import list_runs
from tests.helpers import tiny_spec

runner = CliRunner()

GOOD_ITEM = {"spec": {"run_id": "r1"}, "label": "a", "config": "c", "pair": None, "run_id": "r1", "status": None}
GOOD = {"plan_id": "p", "title": "t", "source": "cli", "owner": {"pid": None}, "state": "left", "items": [GOOD_ITEM]}
DAMAGED = {
    "a top-level list": json.dumps([GOOD]),
    "an item null": json.dumps({**GOOD, "items": [None]}),
    "an item without spec": json.dumps({**GOOD, "items": [{k: v for k, v in GOOD_ITEM.items() if k != "spec"}]}),
    "truncated": json.dumps(GOOD)[:40],
}


def plant(logs: Path, name: str, text: str) -> Path:
    path = logs / plans.PLANS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("what", DAMAGED)
def test_a_damaged_plan_file_is_named_and_skipped(tmp_path, what):
    path = plant(tmp_path, "damaged", DAMAGED[what])
    said: list[tuple[Path, str]] = []
    assert plans.interrupted_plans(tmp_path, lambda p, line: said.append((p, line))) == []
    ((where, line),) = said
    assert where == path and "\n" not in line
    assert line.startswith(f"plan file {path} is damaged: ") and line.endswith("skipped (move it aside or delete it)")


def test_damaged_files_do_not_hide_a_good_plan(tmp_path):
    for i, text in enumerate(DAMAGED.values()):
        plant(tmp_path, f"z-damaged-{i}", text)
    plant(tmp_path, "a-good", json.dumps(GOOD))
    said: list[str] = []
    (found,) = plans.interrupted_plans(tmp_path, lambda p, line: said.append(line))
    assert found.title == "t" and found.remaining[0].item.spec == {"run_id": "r1"}
    assert len(said) == len(DAMAGED)


def test_marking_a_damaged_plan_file_leaves_it_as_it_is(tmp_path):
    path = plant(tmp_path, "damaged", DAMAGED["an item null"])
    plans.mark_item(path, 0, "r1", "complete")
    plans.close_plan(path, "stopped")
    assert path.read_text() == DAMAGED["an item null"]


@pytest.mark.parametrize("what", DAMAGED)
def test_run_resume_names_a_damaged_plan_file_in_one_line(tmp_path, what):
    path = plant(tmp_path, "damaged", DAMAGED[what])
    result = runner.invoke(app, ["run", "--resume", "--logs", str(tmp_path)])
    assert result.exit_code == 0 and result.exception is None, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0] == f"joulelab: plan file {path} is damaged: " + lines[0].split(": ", 2)[2]
    assert "Traceback" not in result.output and "no interrupted plan in" in result.stdout


@pytest.mark.slow
def test_resumed_runs_go_to_the_logs_given_not_the_one_recorded(tmp_path):
    logs, recorded = tmp_path / "moved", tmp_path / "recorded"
    spec = tiny_spec(recorded, mode="scratch", run_id="old-id", config="synthetic/small/scratch/baseline")
    path = plans.record_plan(logs, "plan-1", "moved plan", "cli", [plans.PlanItem(spec=spec, config=spec["config"])])
    assert path is not None
    plans.close_plan(path, "left")
    result = runner.invoke(app, ["run", "--resume", "--logs", str(logs)])
    assert result.exit_code == 0, result.output
    assert f"the plan named {recorded} for its runs; they go to {logs}, where the plan lies" in result.stdout
    assert [r.status for r in list_runs(logs)] == ["complete"] and not recorded.exists()
    assert json.loads(path.read_text())["state"] == "finished"
