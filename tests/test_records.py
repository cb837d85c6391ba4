"""The run records: log schema 1 (golden logs) read with the new names, a newer schema refused in one line."""

import json
import shutil

import pytest

from engine.core.records import ConfigKey, metrics_from_json, to_json_object
from engine.core.run_files import SUMMARY, StoreError, atomic_write_json
from engine.store.run_log import find_run, load_run, load_summary
from tests.helpers import GOLDEN_LOGS, golden_summary


def test_a_schema_1_log_reads_with_the_new_names(tmp_path):
    s = golden_summary("golden-transfer")
    raw = json.loads((GOLDEN_LOGS / "golden-transfer" / "summary.json").read_text())
    assert s.metrics.accuracy_frac == raw["metrics"]["accuracy"]
    assert s.metrics.train_samples_seen == raw["metrics"]["train_samples"]
    assert s.pretrain.source_accuracy_frac == raw["pretrain"]["source_accuracy"]
    assert [p.val_accuracy_frac for p in s.curve] == [p["val_accuracy"] for p in raw["curve"]]
    assert s.dataset == "synthetic" and s.idle_watts["dram"].w == raw["idle_watts"]["dram"]
    # written as the worker writes a summary and read back as every reader reads it: whole
    atomic_write_json(tmp_path / SUMMARY, to_json_object(s))
    assert load_summary(tmp_path) == s


def test_a_log_from_a_newer_joulelab_is_one_clear_line(tmp_path):
    run = tmp_path / "newer"
    shutil.copytree(GOLDEN_LOGS / "golden-scratch", run)
    data = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**data, "log_schema": 99}))
    record = load_run(run)
    assert record.status == "damaged" and record.newer_schema
    with pytest.raises(StoreError, match=r"newer JouleLab \(schema 99, this one reads up to 2\): upgrade JouleLab"):
        find_run(tmp_path, "newer")


def test_config_key_is_built_and_parsed_in_one_place():
    assert str(ConfigKey.parse("synthetic/small/scratch")) == "synthetic/small/scratch/baseline"
    key = ConfigKey("motionsense", "big-x16", "transfer-extend", "pruning")
    assert ConfigKey.parse(str(key)) == key and key.with_mode("scratch").mode == "scratch"


def test_a_result_events_metrics_read_in_either_schema():
    """Workers before log schema 2 sent schema-1 names in their result event; a stalled run's
    summary is rebuilt from that event, so both must read alike (msgspec ignores unknown names)."""
    old = {
        "accuracy": 0.9,
        "train_samples": 100,
        "pruning": {"weights": 10, "zero_weights": 5, "sparsity": 0.5, "accuracy_before_pruning": 0.95},
    }
    new = {
        "accuracy_frac": 0.9,
        "train_samples_seen": 100,
        "pruning": {"weights": 10, "zero_weights": 5, "sparsity": 0.5, "accuracy_before_pruning_frac": 0.95},
    }
    assert metrics_from_json(old) == metrics_from_json(new)
    m = metrics_from_json(old)
    assert m.accuracy_frac == 0.9 and m.train_samples_seen == 100
    assert m.pruning is not None and m.pruning.accuracy_before_pruning_frac == 0.95
