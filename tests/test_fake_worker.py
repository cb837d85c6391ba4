"""The fake worker keeps up with the real one: a fresh real run of the recordings' spec has the
recorded event types in the recorded order and the recorded summary's fields, and the fake's own
summary of that spec has the real one's fields. When the worker changes, this fails until the
recordings are regenerated (tests/fakes/fake_worker.py says how)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import fake_worker
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # two real worker runs, and the fake's


def event_shape(path: Path) -> tuple[list[tuple[str, str | None]], dict[str, set[str]]]:
    """A stream's order of events as (type, phase) with samples left out and repeats merged (how
    many samples and progress reports fall where is timing), and each type's field names."""
    order: list[tuple[str, str | None]] = []
    fields: dict[str, set[str]] = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        fields.setdefault(event["type"], set()).update(event)
        step = (event["type"], event.get("phase"))
        if event["type"] != "sample" and (not order or order[-1] != step):
            order.append(step)
    return order, fields


# Flags written only when true (omit_defaults): whether a phase is short or partial is timing.
WHEN_TRUE = {"short", "gap", "partial"}


def names(record: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(set(record) - WHEN_TRUE))


def summary_shape(summary: dict[str, Any]) -> dict[str, Any]:
    """The field names of a summary.json, down to each phase's record and each energy value."""
    return {
        "fields": sorted(summary),
        "phases": {name: names(record) for name, record in summary["phases"].items()},
        "energy": sorted({names(v) for r in summary["phases"].values() for v in r.get("energy", {}).values()}),
        "totals": sorted({tuple(sorted(r["total"])) for r in summary["phases"].values()}),
        "metrics": sorted(summary["metrics"]),
        "curve": sorted({tuple(sorted(point)) for point in summary["curve"]}),
        "pretrain": sorted(summary["pretrain"] or {}),
        "log_schema": summary["log_schema"],
        "status": summary["status"],
    }


def run_fake(spec: dict[str, Any], logs: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "fakes" / "fake_worker.py")],
        input=json.dumps({**spec, "logs_dir": str(logs), "run_id": "fake-0001"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((logs / "fake-0001" / "summary.json").read_text())


@pytest.mark.parametrize("mode", fake_worker.MODES)
def test_a_fresh_real_run_matches_the_recording_and_the_fake_writes_its_summary(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the recordings are of a CPU run
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    fake_worker.record(fresh, mode)  # what `--record` writes, from a real worker run now

    recorded_order, recorded_fields = event_shape(fake_worker.HERE / f"{mode}.jsonl")
    fresh_order, fresh_fields = event_shape(fresh / f"{mode}.jsonl")
    assert fresh_order == recorded_order
    assert fresh_fields == recorded_fields
    phases = [phase for kind, phase in recorded_order if kind == "phase_start"]
    assert phases == (
        ["idle", "warmup", "pretrain", "train", "test"] if mode == "transfer" else ["idle", "warmup", "train", "test"]
    )

    real = json.loads((fresh / f"{mode}.summary.json").read_text())
    recorded = json.loads((fake_worker.HERE / f"{mode}.summary.json").read_text())
    assert summary_shape(real) == summary_shape(recorded)
    # the fake's summary of a run of that spec reads as the real worker's does
    faked = run_fake({**fake_worker.RECORD_SPEC, "mode": mode}, tmp_path / "logs")
    assert summary_shape(faked) == summary_shape(real)
    assert faked["config"] == real["config"]
    assert faked["spec"] == {**real["spec"], "run_id": "fake-0001", "logs_dir": str(tmp_path / "logs")}
