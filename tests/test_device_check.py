"""The device check's own logic (tests/device/check_gpu.py), and that it stands down without a GPU."""

import importlib.util
import subprocess

import pytest
import torch

from tests.helpers import REPO

spec = importlib.util.spec_from_file_location("check_gpu", REPO / "tests" / "device" / "check_gpu.py")
check_gpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_gpu)


def _summary(duration: float, counter: float, polled: float, gpu_source: str = "counter") -> dict:
    energy = {
        "gpu0": {"gross_j": counter, "kind": "gpu", "source": gpu_source, "method": "nvml:gpu0:energy-counter"},
        "gpu0-polled": {
            "gross_j": polled,
            "kind": "cross-check",
            "source": "polled",
            "method": "nvml:gpu0:power-integrated",
        },
        "package-0": {"gross_j": 100.0, "kind": "cpu", "source": "counter", "method": "rapl:package-0"},
        "dram-0": {"gross_j": 10.0, "kind": "dram", "source": "counter", "method": "rapl:dram-0"},
    }
    return {
        "config": "synthetic/big-x16/scratch/baseline",
        "meters": [{"name": "gpu0", "kind": "gpu"}],
        "phases": {
            "train": {
                "duration_s": duration,
                "energy": energy,
                "total": {"gross_j": counter + 110.0},
                "nvml_agreement": {
                    "gpu0": {"counter_j": counter, "polled_j": polled, "diff_rel": (polled - counter) / counter}
                },
            }
        },
    }


def test_agreement_within_ten_percent_passes():
    rows, failures = check_gpu.phase_rows(_summary(20.0, 1000.0, 1080.0))
    assert failures == []
    (row,) = rows
    assert row["rapl_package_j"] == 100.0 and row["rapl_dram_j"] == 10.0
    assert row["gpu_share"] == pytest.approx(1000 / 1110) and row["diff_rel"] == pytest.approx(0.08)


def test_disagreement_on_a_long_phase_fails_but_not_on_a_short_one():
    assert check_gpu.phase_rows(_summary(20.0, 1000.0, 1150.0))[1] == [
        "synthetic/big-x16/scratch/baseline train: counter 1000.0 J vs polled 1150.0 J (+15.0%) over 20.0 s"
    ]
    assert check_gpu.phase_rows(_summary(4.0, 1000.0, 1150.0))[1] == []  # under 5 s: the 1 s window's edges


def test_modelled_or_unmetered_gpu_energy_fails():
    assert check_gpu.phase_rows(_summary(20.0, 1000.0, 1000.0, gpu_source="modelled"))[1] == [
        "synthetic/big-x16/scratch/baseline train: gpu0 is modelled"
    ]
    summary = {**_summary(20.0, 1000.0, 1000.0), "meters": [], "device": {"not_metered": "NVML is not available"}}
    assert "the GPU was not metered (NVML is not available)" in check_gpu.phase_rows(summary)[1][0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: run tests/device/check.sh itself")
def test_check_sh_stands_down_without_a_gpu():
    import sys

    proc = subprocess.run(
        ["bash", str(REPO / "tests" / "device" / "check.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no CUDA GPU to check here" in proc.stdout
