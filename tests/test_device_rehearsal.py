"""The device check rehearsed here as the lent GPU machine will run it (tests/device/rehearse.sh):
only the device's packages (this machine's CPU torch standing in), the carried wheels, no registry,
the project not installed. It must import the whole worker side, complete a CPU smoke run, then stop
with exit 2 for no CUDA GPU, and write its report and logs where $OUT says.

The first run builds the environment under ~/.cache/joulelab-rehearsal (about 110 s and 1.4 GB here,
from the registry and this machine's torch file); later runs reuse it (about 15 s).
"""

import json
import os
import subprocess
import tarfile

import pytest
import torch

from tests.helpers import REPO


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: run tests/device/check.sh itself")
def test_the_rehearsal_imports_the_worker_side_completes_a_cpu_run_and_stands_down(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "TMPDIR": str(tmp_path), "OUT": str(out)}
    proc = subprocess.run(
        ["bash", str(REPO / "tests" / "device" / "rehearse.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "with the carried wheels (msgspec-" in proc.stdout  # installed from the wheels, not found installed
    assert "smoke run: complete" in proc.stdout
    assert "no CUDA GPU to check here" in proc.stdout
    assert "REHEARSAL PASSED" in proc.stdout
    report = json.loads((out / "device-check.json").read_text())
    assert report["exit_code"] == 2 and report["smoke"]["status"] == "complete"
    assert report["worker_modules"] > 20 and report["versions"]["msgspec"] is not None
    with tarfile.open(out / "device-check-logs.tar.gz") as tar:
        names = tar.getnames()
    assert f"device-check-logs/smoke/{report['smoke']['run_id']}/summary.json" in names
