"""Data-parallel scaling in the study (#22 item 5): a configuration at N processes per node
against its single-process twin ("small-p2" vs "small"), for each mode: speed-up of training
with its interval from the paired trials, and energy per training sample on each side. Summaries
are built from the records types (as golden logs are read); `compare` reads them from real files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from engine.analysis.stats import compare, scaling
from engine.cli import app
from engine.core.records import ConfigKey, PerUnitEnergy, PhaseRecord, PhaseTotal, RunSummary, to_json_object
from engine.core.run_files import RUN_JSON, SUMMARY
from tests.helpers import make_summary

# (seed, train seconds, net train J) at 1 and at 2 processes, for each mode; 1000 samples a run
TRIALS = {
    "transfer": [((0, 10.0, 5.0), (0, 6.0, 5.5)), ((1, 11.0, 5.2), (1, 6.2, 5.9)), ((2, 10.5, 5.1), (2, 5.9, 5.6))],
    "scratch": [
        ((0, 40.0, 20.0), (0, 22.0, 23.0)),
        ((1, 42.0, 21.0), (1, 24.0, 23.5)),
        ((2, 41.0, 20.4), (2, 23.0, 23.1)),
    ],
}
SAMPLES = 1000


def run(mode: str, procs: int, seed: int, seconds: float, joules: float, source: str = "counter") -> RunSummary:
    size = "small" if procs == 1 else f"small-p{procs}"
    s = make_summary(f"synthetic/{size}/{mode}/baseline", seed, joules, 0.9, source=source)
    train = PhaseRecord(duration_s=seconds, total=PhaseTotal(net_j=joules, gross_j=joules, source=source))
    metrics = msgspec.structs.replace(
        s.metrics, train_samples_seen=SAMPLES, j_per_train_sample=PerUnitEnergy(value=joules / SAMPLES, source=source)
    )
    return msgspec.structs.replace(s, phases={**s.phases, "train": train}, metrics=metrics)


def study() -> list[RunSummary]:
    runs = []
    for mode, trials in TRIALS.items():
        for one, two in trials:
            runs += [run(mode, 1, *one), run(mode, 2, *two)]
    return runs


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def test_the_key_carries_its_processes_and_finds_its_single_process_twin():
    key = ConfigKey.parse("synthetic/small-x2-p4/transfer/baseline")
    assert key.procs_per_node == 4
    assert str(key.with_procs_per_node(1)) == "synthetic/small-x2/transfer/baseline"
    assert ConfigKey.parse("synthetic/small/scratch/amp").with_procs_per_node(2).size == "small-p2"
    assert ConfigKey.parse("synthetic/tiny_cnn-small/scratch/baseline").procs_per_node == 1


def test_speedup_and_energy_per_sample_for_each_mode_paired_by_seed():
    by_group = {s.group: s for s in scaling(study())}
    assert set(by_group) == {"synthetic/small/scratch/baseline", "synthetic/small/transfer/baseline"}
    for mode, trials in TRIALS.items():
        s = by_group[f"synthetic/small/{mode}/baseline"]
        assert s.procs == 2 and s.pairs == 3 and s.keys == (f"synthetic/small-p2/{mode}/baseline", s.group)
        assert s.speedup is not None and s.speedup.mean == pytest.approx(
            geometric_mean([a[1] / b[1] for a, b in trials])
        )
        assert s.speedup.low is not None and s.speedup.low < s.speedup.mean < s.speedup.high and s.speedup.low > 1
        assert s.j_per_sample is not None and s.j_per_sample_one is not None
        assert s.j_per_sample.mean == pytest.approx(sum(b[2] for _, b in trials) / 3 / SAMPLES)
        assert s.j_per_sample_one.mean == pytest.approx(sum(a[2] for a, _ in trials) / 3 / SAMPLES)
        assert s.j_per_sample.source == "counter"
        assert s.energy_ratio is not None
        assert s.energy_ratio.mean == pytest.approx(geometric_mean([b[2] / a[2] for a, b in trials]))


def test_a_run_on_a_busy_machine_marks_its_speedup_unreliable():
    from rich.console import Console

    from engine.core.records import CpuContention
    from engine.outputs.tables import speedup_table

    runs = study()
    busy = runs[0]
    train = msgspec.structs.replace(busy.phases["train"], contention=CpuContention(contended=True))
    runs[0] = msgspec.structs.replace(busy, phases={**busy.phases, "train": train})
    by_group = {s.group: s for s in scaling(runs)}
    assert by_group[f"synthetic/small/{busy.key.mode}/baseline"].contended_runs == 1
    assert sum(s.contended_runs for s in by_group.values()) == 1
    console = Console(width=200, record=True)
    console.print(speedup_table(list(by_group.values())))
    text = console.export_text()
    assert "x! [" in text and "some runs were measured on a busy machine" in text


def test_pairs_stay_on_one_node_set_and_lone_configurations_give_no_speedup():
    runs = [r for r in study() if r.key.mode == "transfer"]
    slurm = {"node": "n1"}
    on_n1 = [msgspec.structs.replace(r, slurm=slurm) for r in runs if r.key.procs_per_node == 2]
    local_one = [r for r in runs if r.key.procs_per_node == 1]
    assert scaling(on_n1 + local_one) == []  # a p2 run on n1 is never paired with a local p1 run
    assert scaling(local_one) == []
    # transfer vs scratch stays within a process count
    assert {c.group for c in compare(study())} == {"synthetic/small/baseline", "synthetic/small-p2/baseline"}


def test_compare_shows_the_scaling_table_and_its_json(tmp_path: Path):
    for r in study():
        (tmp_path / r.run_id).mkdir()
        (tmp_path / r.run_id / SUMMARY).write_text(json.dumps(to_json_object(r)))
        (tmp_path / r.run_id / RUN_JSON).write_text(json.dumps({"run_id": r.run_id, "spec": r.spec}))
    ids = sorted(p.name for p in tmp_path.iterdir())
    runner = CliRunner()
    human = runner.invoke(app, ["compare", *ids, "--logs", str(tmp_path)], env={"COLUMNS": "200"})
    assert human.exit_code == 0, human.output
    assert "Data-parallel scaling (paired by seed)" in human.output
    row = next(line for line in human.output.splitlines() if "synthetic/small/transfer*" in line and "2 vs 1" in line)
    assert "1.74x" in row  # the geometric mean of 10/6, 11/6.2, 10.5/5.9
    data = json.loads(runner.invoke(app, ["compare", *ids, "--logs", str(tmp_path), "--format", "json"]).stdout)
    speedups = {x["group"]: x for x in data["scaling"]}
    assert speedups["synthetic/small/scratch/baseline"]["speedup"]["n"] == 3
