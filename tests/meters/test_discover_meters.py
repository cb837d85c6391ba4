import os

import pytest

from engine.worker.meters import ModelMeter, discover, meter_name, rapl
from engine.worker.meters.nvml import NvmlMeter
from engine.worker.meters.rapl import RaplMeter
from tests.fakes import fake_pynvml as fk
from tests.fakes.fake_pynvml import FakeGpu, FakeNvml, make_fake_pynvml
from tests.fakes.powercap import amd_epyc, enforce_permissions, intel_server

NO_GPU = FakeNvml(init_error=fk.NVML_ERROR_LIBRARY_NOT_FOUND)


@pytest.fixture(autouse=True)
def no_cuda_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def reasons(missing):
    return {m.meter: m.reason for m in missing}


def test_rapl_and_nvml_when_both_work(tmp_path):
    tree = intel_server(tmp_path, sockets=2)
    meters, missing = discover(os.getpid(), powercap_root=tree.root, pynvml_module=make_fake_pynvml(FakeNvml()))
    assert [type(m) for m in meters] == [RaplMeter, NvmlMeter]
    assert [meter_name(m) for m in meters] == ["rapl", "nvml"]
    assert reasons(missing) == {"model": "not used: RAPL counters measure the CPU"}
    domains = [d.name for m in meters for d in m.domains]
    assert domains == ["package-0", "dram-0", "package-1", "dram-1", "gpu0", "gpu0-polled"]


def test_a_cpu_run_on_a_gpu_machine_meters_no_gpu(tmp_path):
    tree = intel_server(tmp_path, sockets=1)
    meters, missing = discover(
        os.getpid(), powercap_root=tree.root, pynvml_module=make_fake_pynvml(FakeNvml()), gpu_uuids=[]
    )
    assert [meter_name(m) for m in meters] == ["rapl"]
    assert reasons(missing)["nvml"] == (
        "NVML: not used: this run does not train on a GPU (present: gpu0 "
        "NVIDIA A100-SXM4-40GB GPU-00000000-1111-2222-3333-444444444444)"
    )


def test_model_when_no_powercap_and_no_gpu(tmp_path):
    meters, missing = discover(
        os.getpid(), tdp_w=65.0, powercap_root=tmp_path / "absent", pynvml_module=make_fake_pynvml(NO_GPU)
    )
    assert [type(m) for m in meters] == [ModelMeter]
    assert meters[0].tdp_note.startswith("TDP 65 W given")
    assert reasons(missing) == {
        "rapl": f"RAPL: {tmp_path / 'absent'} not present (virtual machine or non-Linux?)",
        "nvml": "NVML: libnvidia-ml.so not found (no NVIDIA driver on this machine)",
    }


def test_amd_says_dram_is_not_measured(tmp_path):
    meters, missing = discover(
        os.getpid(), powercap_root=amd_epyc(tmp_path).root, pynvml_module=make_fake_pynvml(NO_GPU)
    )
    assert [meter_name(m) for m in meters] == ["rapl"]
    assert reasons(missing)["model"] == (
        "not used: RAPL counters measure the CPU; DRAM is not measured (this CPU has no RAPL dram zone)"
    )


def test_unreadable_rapl_falls_back_to_the_model_with_the_fix(tmp_path, monkeypatch):
    tree = intel_server(tmp_path, sockets=1)
    tree.make_unreadable("intel-rapl:0")
    if os.geteuid() == 0:
        monkeypatch.setattr(rapl, "_read_bytes", enforce_permissions(rapl._read_bytes))
    meters, missing = discover(os.getpid(), powercap_root=tree.root, pynvml_module=make_fake_pynvml(NO_GPU))
    assert [meter_name(m) for m in meters] == ["model"]
    assert "root-only since Linux 5.10" in reasons(missing)["rapl"]
    assert "sudo chmod a+r" in reasons(missing)["rapl"]


def test_a_bug_in_a_meter_is_a_reason_not_a_crash(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(rapl, "open_rapl", broken)
    meters, missing = discover(os.getpid(), powercap_root=tmp_path, pynvml_module=make_fake_pynvml(NO_GPU))
    assert [meter_name(m) for m in meters] == ["model"]
    assert reasons(missing)["rapl"] == "RAPL: RuntimeError: boom second line"


def test_gpus_are_added_to_the_model(tmp_path):
    state = FakeNvml(gpus=[FakeGpu(energy_mj=None)])
    meters, missing = discover(os.getpid(), powercap_root=tmp_path / "absent", pynvml_module=make_fake_pynvml(state))
    assert [meter_name(m) for m in meters] == ["model", "nvml"]
    assert set(reasons(missing)) == {"rapl"}
    assert meters[1].domains[0].source == "polled"


def test_this_machine(monkeypatch):
    """Whatever this machine has, discover() answers with meters and one-line reasons."""
    monkeypatch.delenv("JOULELAB_POWERCAP_ROOT", raising=False)
    meters, missing = discover(os.getpid())
    assert meters
    names = {meter_name(m) for m in meters} | {m.meter for m in missing}
    assert {"rapl", "model", "nvml"} <= names
    for m in missing:
        assert m.reason and "\n" not in m.reason
    for m in meters:
        m.read()
        m.close()
