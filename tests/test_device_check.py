"""The device check's own logic (tests/device/check_gpu.py), and that it stands down without a GPU."""

import importlib.util
import json
import subprocess
import tarfile

import msgspec
import pytest
import torch

from engine.core.records import (
    EnergyValue,
    GpuContention,
    MeterDomain,
    NvmlAgreement,
    PhaseRecord,
    PhaseTotal,
    RunSummary,
)
from engine.worker.models import build_network
from tests.helpers import REPO

spec = importlib.util.spec_from_file_location("check_gpu", REPO / "tests" / "device" / "check_gpu.py")
check_gpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_gpu)


def _summary(
    duration: float, counter: float, polled: float, gpu_source: str = "counter", others: list | None = None
) -> RunSummary:
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
        gpu_contention={"gpu0": GpuContention(other_processes=others or [], contended=bool(others))},
    )
    return RunSummary(
        run_id="device-check",
        status="complete",
        config="synthetic/big-x16/scratch/baseline",
        meters=[MeterDomain(name="gpu0", source=gpu_source, method="nvml:gpu0:energy-counter", kind="gpu")],
        phases={"train": train},
        spec={"epochs": 2, "batch_size": 256},
        precision="fp32",
        started_warm=True,
        thermal={"why_warm": ["temperature 48 C, 6 C above the idle baseline"], "waited_s": 5.0},
        device={"name": "NVIDIA H200", "uuid": "GPU-1234", "driver": "580.159.03", "power_limit_w": 700.0},
    )


def test_agreement_within_ten_percent_passes():
    rows, failures = check_gpu.phase_rows(_summary(20.0, 1000.0, 1080.0))
    assert failures == []
    (row,) = rows
    assert row["rapl_package_j"] == 100.0 and row["rapl_dram_j"] == 10.0
    assert row["gpu_share"] == pytest.approx(1000 / 1110) and row["diff_rel"] == pytest.approx(0.08)
    assert row["diff_j"] == pytest.approx(80.0) and row["other_processes"] == [] and not row["contended"]


def test_other_processes_on_the_gpu_are_named_per_phase():
    (row,), _ = check_gpu.phase_rows(_summary(20.0, 1000.0, 1000.0, others=[{"pid": 4242, "name": "python3"}]))
    assert row["contended"] and row["other_processes"] == ["4242:python3"]


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


def _report(tmp_path=None) -> dict:
    summary = _summary(20.0, 1000.0, 1080.0, others=[{"pid": 4242, "name": "python3"}])
    rows, failures = check_gpu.phase_rows(summary)
    joulelab = check_gpu.joulelab_train_step(summary, train_samples=1000)  # 2 epochs x 4 steps
    plain = {"steps": 8, "seconds": 16.0, "s_per_step": 2.0, "j_per_step": 100.0}
    return {
        "versions": {"python": "3.12.3", "torch": "2.11.0+cu130", "msgspec": "0.23.0"},
        "worker_modules": 34,
        "smoke": {"run_id": "smoke", "status": "complete", "seconds": 4.5, "error": None},
        "device": summary.device,
        "runs": [check_gpu.run_entry(summary, rows)],
        "not_run": ["synthetic/big-x16/transfer/amp"],
        "loop": check_gpu.loop_comparison(joulelab, plain),
        "failures": failures,
        "logs": "/tmp/logs",
        "elapsed_s": 180.0,
        "exit_code": 0,
        "verdict": "counter and polled within 10 % on every phase over 5 s; no GPU energy modelled",
    }


def test_joulelab_train_step_is_the_train_phase_over_its_steps():
    step = check_gpu.joulelab_train_step(_summary(20.0, 1000.0, 1080.0), train_samples=1000)
    assert step == {"steps": 8, "seconds": 20.0, "s_per_step": 2.5, "j_per_step": 125.0}  # counter joules only


def test_the_loop_comparison_is_joulelab_over_plain():
    loop = _report()["loop"]
    assert loop["time_ratio"] == pytest.approx(1.25) and loop["energy_ratio"] == pytest.approx(1.25)
    no_counter = check_gpu.loop_comparison(loop["joulelab"], {**loop["plain"], "j_per_step": None})
    assert no_counter["energy_ratio"] is None and no_counter["time_ratio"] == pytest.approx(1.25)


def test_the_screen_holds_every_phase_the_comparison_and_the_verdict():
    screen = check_gpu.render(_report())
    lines = screen.splitlines()
    assert lines[0] == "== JouleLab device check: python 3.12.3, torch 2.11.0+cu130, msgspec 0.23.0"
    assert lines[1] == "worker side: 34 modules imported; smoke run: complete on the CPU in 4.5 s"
    assert lines[2].startswith("GPU: NVIDIA H200 GPU-1234, driver 580.159.03") and "limit 700.0 W" in lines[2]
    (train,) = [line for line in lines if " train " in line and "1000.0" in line]
    # config (precision), phase, s, counter J, polled J, diff J, diff, GPU share, RAPL pkg, dram, warm, others
    assert train.split() == [
        "big-x16/scratch/baseline", "(fp32)", "train", "20.00", "1000.0", "1080.0", "+80.0", "+8.0%", "90%",
        "100.0", "10.0", "yes", "4242:python3",
    ]  # fmt: skip
    assert (
        "started warm: synthetic/big-x16/scratch/baseline: temperature 48 C, 6 C above the idle baseline "
        "(waited 5.0 s)" in lines
    )
    assert "(not run, out of time: synthetic/big-x16/transfer/amp)" in lines
    (plain,) = [line for line in lines if line.strip().startswith("plain ")]
    assert plain.split() == ["plain", "8", "2000.00", "100.000"]
    (ratio,) = [line for line in lines if line.strip().startswith("ratio")]
    assert ratio.split()[:3] == ["ratio", "1.25", "1.25"]
    assert (
        lines[-1]
        == "DEVICE CHECK PASSED: counter and polled within 10 % on every phase over 5 s; no GPU energy modelled"
    )
    assert len(lines) <= 40  # one screen


def test_a_failed_or_refused_check_says_so_last():
    failed = {**_report(), "exit_code": 1, "failures": ["synthetic/big/scratch/baseline: worker exit 1: boom"]}
    assert check_gpu.render(failed).splitlines()[-2:] == [
        "DEVICE CHECK FAILED:",
        "  synthetic/big/scratch/baseline: worker exit 1: boom",
    ]
    refused = {"versions": {}, "runs": [], "failures": [], "exit_code": 2, "verdict": "no CUDA GPU to check here"}
    assert check_gpu.render(refused).splitlines()[-1] == "device check: no CUDA GPU to check here"


def test_out_gets_the_report_as_json_and_the_run_logs_as_one_archive(tmp_path):
    logs = tmp_path / "logs"
    (logs / "run-1").mkdir(parents=True)
    (logs / "run-1" / "summary.json").write_text("{}")
    (logs / "run-1" / "events.jsonl").write_text("")
    report = _report()
    written = check_gpu.write_out(tmp_path / "out", report, logs)
    assert [p.name for p in written] == ["device-check.json", "device-check-logs.tar.gz"]
    assert json.loads(written[0].read_text()) == json.loads(json.dumps(report))
    with tarfile.open(written[1]) as tar:
        assert sorted(tar.getnames()) == [
            "device-check-logs",
            "device-check-logs/run-1",
            "device-check-logs/run-1/events.jsonl",
            "device-check-logs/run-1/summary.json",
        ]


def test_the_plain_loop_trains_the_network_and_reads_the_counter_after_its_warm_up():
    torch.manual_seed(0)
    net = build_network((6, 32), "small", 3)
    x, y = torch.randn(64, 6, 32), torch.randint(0, 3, (64,))
    before = [p.detach().clone() for p in net.parameters()]
    reads = iter([10.0, 14.0])  # a cumulative counter in joules, read before and after the timed steps
    result = check_gpu.plain_loop(net, x, y, batch_size=16, lr=1e-3, steps=4, energy_j=lambda: next(reads))
    assert result["steps"] == 4 and result["j_per_step"] == pytest.approx(1.0)
    assert result["s_per_step"] == pytest.approx(result["seconds"] / 4) and result["seconds"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert check_gpu.plain_loop(net, x, y, batch_size=16, lr=1e-3, steps=2)["j_per_step"] is None
