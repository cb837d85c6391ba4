"""The worker's run.json: a typed RunManifest written with what the run has learnt so far."""

from engine.core.records import RunManifest, manifest_from_json
from engine.worker.manifest import manifest_json


def test_run_json_names_what_is_known_and_always_its_schema():
    manifest = RunManifest(run_id="r1", spec={"mode": "scratch"}, pid=42, started="2025-01-01T00:00:00+0000")
    assert manifest_json(manifest) == {
        "log_schema": 2,
        "run_id": "r1",
        "spec": {"mode": "scratch"},
        "pid": 42,
        "started": "2025-01-01T00:00:00+0000",
    }
    assert next(iter(manifest_json(manifest))) == "log_schema"  # first, as the worker always wrote it
    manifest.dataset = {"name": "synthetic"}
    manifest.flush_denormal = False  # a value that is known, although false
    data = manifest_json(manifest)
    assert data["dataset"] == {"name": "synthetic"} and data["flush_denormal"] is False
    assert "thermal" not in data and "network" not in data  # a CPU run's, a run still loading data
    assert manifest_from_json(data) == manifest
