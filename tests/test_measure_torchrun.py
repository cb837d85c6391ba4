"""`joulelab measure -- torchrun --nproc-per-node 2 script.py`: a user's own data-parallel job
metered as one run, every rank's process counted (torchrun's ranks are its children)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine.store.run_log import list_runs
from tests.helpers import REPO

# Each rank burns CPU_S of CPU time, then the ranks all-reduce (gloo) so that both really ran.
CPU_S = 1.0
SCRIPT = f"""
import time
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
t = time.process_time()
while time.process_time() - t < {CPU_S}:
    pass
ones = torch.ones(1)
dist.all_reduce(ones)
assert ones.item() == dist.get_world_size()
dist.destroy_process_group()
"""


def measured_cpu_s(tmp_path, nproc: int) -> float | None:
    """The CPU-seconds the model metered in a `joulelab measure` of the script under torchrun with
    `nproc` ranks (None where a CPU counter meters instead)."""
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    logs = tmp_path / f"logs{nproc}"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
    cli = [sys.executable, "-m", "engine.cli", "measure", "--logs", str(logs), "--idle-s", "0"]
    proc = subprocess.run(
        [*cli, "--", *torchrun, str(script)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = list_runs(logs)  # one run, whatever the number of ranks
    cpu = record.summary.phases["train"].energy["cpu"]
    # the model's joules are CPU-seconds x watts per core
    return cpu.gross_j / cpu.basis["watts_per_core"] if cpu.source == "modelled" else None


@pytest.mark.slow
def test_a_torchrun_job_is_one_run_that_counts_every_rank(tmp_path):
    one, two = measured_cpu_s(tmp_path, 1), measured_cpu_s(tmp_path, 2)
    if one is None or two is None:
        pytest.skip("a CPU counter meters the package here, not the process tree's CPU time")
    # the second rank's burn (and its start-up) is in the run: it is counted, once
    assert two - one >= 0.8 * CPU_S, (one, two)
    assert two - one <= 3 * CPU_S + 3.0, (one, two)
