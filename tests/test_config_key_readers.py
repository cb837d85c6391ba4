"""Readers of a configuration key go through ConfigKey (engine/core/records/config_key.py), the
one parser: no hand-split "dataset/size/mode/mechanism" elsewhere."""

from engine.core.records import ConfigKey
from engine.orchestrate.slurm import _mode
from engine.outputs.tables import short_key
from tui.widgets.history_view import _describe


def test_a_slurm_job_line_names_each_runs_mode_from_its_key():
    assert _mode({"run_id": "r1", "config": "synthetic/big-x16/transfer-extend/augment"}) == "transfer-extend"
    assert _mode({"run_id": "r1", "config": "synthetic/small/scratch"}) == "scratch"  # an older key
    assert _mode({"run_id": "r1"}) == "r1"


def test_the_history_describes_a_run_without_a_key_from_its_spec():
    described = _describe({"dataset": "synthetic", "size": "small", "mode": "scratch"})
    assert ConfigKey.parse(described) == ConfigKey("synthetic", "small", "scratch")
    assert short_key(described, False) == "synthetic/small/scratch"
    assert short_key(_describe({"dataset": "synthetic"}), False) == "synthetic/?/?"
