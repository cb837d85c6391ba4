"""`joulelab compare --target-accuracy`: energy to a target on the golden logs, in tables and JSON.

The golden scratch run's validation accuracy reaches 0.833 at epoch 2 (0.583 at epoch 1); the
golden transfer run's stays at 0.667 from epoch 1 on (its pretraining curve reaches 1.0, and is
not the target task's)."""

import json

import pytest
from typer.testing import CliRunner

from engine.cli import app
from tests.helpers import GOLDEN_LOGS

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
GOLDEN = ["compare", "golden-transfer", "golden-scratch", "--logs", str(GOLDEN_LOGS)]

# golden-scratch's train curve: (0.5833, 9.1722 J) then (0.8333, 13.8601 J); golden-transfer: 0.6667 at 0.04413 J
SCRATCH_TO_60 = 9.172166248536756 + (0.6 - 0.5833333333333334) / 0.25 * (13.860072163463839 - 9.172166248536756)
TRANSFER_TO_60 = 0.044126545094533814


def compare_json(*args: str) -> dict:
    result = runner.invoke(app, [*GOLDEN, "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_carries_each_configurations_energy_to_target_and_the_paired_ratio():
    data = compare_json("--target-accuracy", "0.6")
    configs = {c["config"]: c["energy_to_target"] for c in data["configs"]}
    scratch, transfer = configs["synthetic/small/scratch/baseline"], configs["synthetic/small/transfer/baseline"]
    assert scratch["reached"] == 1 and scratch["trials"] == 1 and scratch["not_reached"] == []
    assert scratch["gross_j"]["mean"] == pytest.approx(SCRATCH_TO_60) and scratch["gross_j"]["source"] == "modelled"
    assert scratch["runs"][0] | {"gross_j": None} == {
        "run_id": "golden-scratch",
        "seed": 0,
        "reached": True,
        "gross_j": None,
        "source": "modelled",
        "phase": "train",
        "epoch": 2,
        "unknown": None,
    }
    assert transfer["gross_j"]["mean"] == pytest.approx(TRANSFER_TO_60) and transfer["runs"][0]["epoch"] == 1
    (c,) = data["comparisons"]
    target = c["energy_to_target"]
    assert target["target_accuracy"] == 0.6 and target["pairs"] == 1
    assert target["ratio"]["mean"] == pytest.approx(TRANSFER_TO_60 / SCRATCH_TO_60)
    assert target["ratio"]["low"] is None  # one trial: no interval, and the verdict says so
    assert "no interval: one trial" in target["verdict"]


def test_a_target_no_run_reached_is_counted_and_named_not_averaged():
    data = compare_json("--target-accuracy", "0.9")
    for config in data["configs"]:
        t = config["energy_to_target"]
        assert t["reached"] == 0 and t["gross_j"] is None and t["not_reached"] == [t["runs"][0]["run_id"]]
    (c,) = data["comparisons"]
    assert c["energy_to_target"]["ratio"] is None
    assert c["energy_to_target"]["not_reached"] == ["golden-transfer", "golden-scratch"]


def test_without_a_target_the_json_has_no_target_keys():
    data = compare_json()
    assert all("energy_to_target" not in x for x in (*data["configs"], *data["comparisons"]))


def test_the_tables_and_verdicts_say_who_reached_it():
    result = runner.invoke(app, [*GOLDEN, "--target-accuracy", "0.7"], env=WIDE)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # captions and verdicts wrap: compare the words
    assert "Energy to 70 % validation accuracy" in out and "Energy to 70 % (paired by seed)" in out
    assert "0 of 1" in out and "1 of 1" in out
    assert "synthetic/small/transfer*: not reached by golden-transfer (seed 0)" in out
    assert "transfer: 0 of 1 trial reached 70 %, scratch: 1 of 1 trial reached 70 %" in out
    assert "not reached by golden-transfer (seed 0)." in out
    plain = runner.invoke(app, GOLDEN, env=WIDE)
    assert "Energy to" not in plain.output  # only when asked for


@pytest.mark.parametrize("bad", ["90", "0", "-0.1", "1.01", "nan"])
def test_a_target_outside_zero_to_one_is_one_line_and_exit_2(bad):
    result = runner.invoke(app, [*GOLDEN, "--target-accuracy", bad])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --target-accuracy: expected a fraction of 1 in (0, 1], such as 0.9")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    if bad == "90":
        assert "(for 90 % write 0.9)" in result.stderr


@pytest.mark.slow
def test_real_runs_of_todays_worker(tmp_path):
    """Two tiny scratch runs of the real worker (3 epochs, seeds 0 and 1), compared at a target the
    first run reached: the figures come from the curves in their summary.json (log schema 2)."""
    from engine.store.run_log import list_runs
    from tests.helpers import run_worker, tiny_spec

    for seed in (0, 1):
        proc = run_worker(tiny_spec(tmp_path, epochs=3, seed=seed, run_id=f"tiny-{seed}"))
        assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = {r.run_id: r.summary for r in list_runs(tmp_path)}
    curves = {rid: [p for p in s.curve if p.phase == "train"] for rid, s in summaries.items() if s is not None}
    assert [len(c) for c in curves.values()] == [3, 3]
    target = max(p.val_accuracy_frac for p in curves["tiny-0"])
    result = runner.invoke(
        app,
        ["compare", "tiny-0", "tiny-1", "--logs", str(tmp_path), "--format", "json", "--target-accuracy", str(target)],
    )
    assert result.exit_code == 0, result.output
    (config,) = json.loads(result.stdout)["configs"]
    t = config["energy_to_target"]
    by_run = {r["run_id"]: r for r in t["runs"]}
    for rid, curve in curves.items():
        reached = any(p.val_accuracy_frac >= target for p in curve)
        assert by_run[rid]["reached"] == reached
        if reached:  # within the curve's joules, with the curve's provenance
            assert 0 < by_run[rid]["gross_j"] <= curve[-1].cumulative_j
            assert by_run[rid]["source"] == curve[0].source
    assert t["reached"] == sum(r["reached"] for r in t["runs"]) >= 1
    assert t["not_reached"] == [rid for rid, r in by_run.items() if not r["reached"]]
