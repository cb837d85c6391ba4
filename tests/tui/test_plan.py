"""What a press of Run starts: specs built through engine.core.spec, paired by seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core.spec import SpecError
from tests.tui.conftest import SPEC_DEFAULTS, counter_ids
from tui.lab_plan import LabChoice, lab_plan, preset_plan


def test_transfer_vs_scratch_pairs_each_trial_by_seed(tmp_path: Path) -> None:
    plan = lab_plan(
        LabChoice(mode="paired", trials=2, epochs=2, sample_hz=5),
        defaults=SPEC_DEFAULTS,
        logs_dir=tmp_path,
        run_id=counter_ids(),
    )
    assert [(i.spec.mode, i.spec.seed) for i in plan.items] == [
        ("transfer", 0),
        ("scratch", 0),
        ("transfer", 1),
        ("scratch", 1),
    ]
    assert plan.paired and plan.pair_members(2) == [2, 3]
    first = plan.items[0].spec
    assert (first.epochs, first.sample_hz, first.logs_dir) == (2, 5.0, str(tmp_path))
    assert first.synthetic_subjects == SPEC_DEFAULTS["synthetic_subjects"]
    assert first.config == "synthetic/small/transfer/baseline"
    assert [i.spec.run_id for i in plan.items] == ["run-0001", "run-0002", "run-0003", "run-0004"]


def test_mechanisms_become_spec_fields_and_one_config_token(tmp_path: Path) -> None:
    choice = LabChoice(mode="finetune", size="big", normalize=False, augment=True, prune=True)
    (item,) = lab_plan(choice, logs_dir=tmp_path, data_dir="/data").items
    spec = item.spec
    assert (spec.mode, spec.size, spec.normalize, spec.batchnorm, spec.augment, spec.prune) == (
        "finetune",
        "big",
        False,
        True,
        True,
        0.5,
    )
    assert spec.data_dir == "/data"
    assert item.config == "synthetic/big/finetune/no-normalization+augmentation+pruning"
    assert item.pair is None


def test_bad_values_are_refused_by_the_engine_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="sample_hz"):
        lab_plan(LabChoice(sample_hz=500), logs_dir=tmp_path)


def test_a_preset_runs_its_plan_with_our_logs_and_ids(tmp_path: Path) -> None:
    preset = tmp_path / "mini.toml"
    preset.write_text(
        '[preset]\nname = "mini"\ntrials = 2\n[matrix]\nmode = ["transfer", "scratch"]\n[settings]\nepochs = 1\n'
    )
    plan = preset_plan(preset, logs_dir=tmp_path / "logs", run_id=counter_ids("p"))
    assert plan.source == "preset" and plan.paired and len(plan.items) == 4
    assert {i.spec.logs_dir for i in plan.items} == {str(tmp_path / "logs")}
    assert [i.spec.run_id for i in plan.items][:2] == ["p-0001", "p-0002"]
    assert plan.pair_members(0) == [0, 1]
