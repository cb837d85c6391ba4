"""The device check's own logic (tests/device/check_gpu.py), and that it stands down without a GPU."""

import importlib.util
import subprocess

import msgspec
import pytest
import torch

from engine.core.records import EnergyValue, MeterDomain, NvmlAgreement, PhaseRecord, PhaseTotal, RunSummary
from tests.helpers import REPO

spec = importlib.util.spec_from_file_location("check_gpu", REPO / "tests" / "device" / "check_gpu.py")
check_gpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_gpu)


def _summary(duration: float, counter: float, polled: float, gpu_source: str = "counter") -> RunSummary:
    def value(gross_j: float, kind: str, source: str, method: str) -> EnergyValue:
        return EnergyValue(gross_j=gross_j, idle_j=0.0, net_j=gross_j, source=source, method=method, kind=kind)

    energy = {
        "gpu0": value(counter, "gpu", gpu_source, "nvml:gpu0:energy-counter"),
        "gpu0-polled": value(polled, "cross-check", "polled", "nvml:gpu0:power-integrated"),
        "package-0": value(100.0, "cpu", "counter", "rapl:package-0"),
        "dram-0": value(10.0, "dram", "counter", "rapl:dram-0"),
    }
    agreement = NvmlAgreement(
        counter_j=counter, polled_j=polled, diff_j=polled - counter, diff_rel=(polled - counter) / counter
    )
    train = PhaseRecord(
        duration_s=duration,
        energy=energy,
        total=PhaseTotal(gross_j=counter + 110.0),
        nvml_agreement={"gpu0": agreement},
    )
    return RunSummary(
        run_id="device-check",
        status="complete",
        config="synthetic/big-x16/scratch/baseline",
        meters=[MeterDomain(name="gpu0", source=gpu_source, method="nvml:gpu0:energy-counter", kind="gpu")],
        phases={"train": train},
    )


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
    summary = msgspec.structs.replace(
        _summary(20.0, 1000.0, 1000.0), meters=[], device={"not_metered": "NVML is not available"}
    )
    assert "the GPU was not metered (NVML is not available)" in check_gpu.phase_rows(summary)[1][0]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: run tests/device/check.sh itself")
def test_check_sh_stands_down_without_a_gpu():
    import sys

    proc = subprocess.run(
        ["bash", str(REPO / "tests" / "device" / "check.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        # the project installed, no carried wheels (whatever .device-wheels/ this checkout has)
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "DEVICE_WHEELS": "/nonexistent"},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no CUDA GPU to check here" in proc.stdout
