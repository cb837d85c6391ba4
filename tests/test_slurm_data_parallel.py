"""A data-parallel run through a real one-node Slurm: `--executor slurm --procs-per-node 2`."""

from __future__ import annotations

import json

import pytest

from tests.test_slurm import joulelab, quick_preset, real_slurm, run_json  # noqa: F401 (fixtures)


@pytest.mark.slurm
@pytest.mark.slow
def test_a_two_process_run_through_slurm_meters_its_node_once(real_slurm, tmp_path, quick_preset):  # noqa: F811
    logs = tmp_path / "logs"
    out = joulelab(
        "run", str(quick_preset), "--executor", "slurm", "--logs", str(logs), "--format", "json",
        "--procs-per-node", "2", "--only", "mode=scratch",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (run,) = json.loads(out.stdout)["runs"]
    assert run["status"] == "complete"
    manifest = run_json(logs, run["run_id"])
    dp = manifest["data_parallel"]
    assert dp["world_size"] == 2 and [m["rank"] for m in dp["metering"]] == [0]
    assert {r["host"] for r in dp["ranks"]} == {dp["metering"][0]["host"]}  # one node, metered once
    assert manifest["environment"]["slurm"]["job_id"]
    assert manifest["spec"]["config"] == "synthetic/small-p2/scratch/baseline"
