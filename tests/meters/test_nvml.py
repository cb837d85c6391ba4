import sys

import pytest
from tests.fakes import fake_pynvml as fk
from tests.fakes.fake_pynvml import FakeGpu, FakeNvml, make_fake_pynvml

from engine.meters.base import MeterError, MeterUnavailable
from engine.meters.nvml import open_nvml, parse_visible

A = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
B = "GPU-bbbbbbbb-0000-0000-0000-000000000000"
C = "GPU-cccccccc-0000-0000-0000-000000000000"


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def three_gpus() -> FakeNvml:
    return FakeNvml(gpus=[
        FakeGpu(name="NVIDIA H100 80GB HBM3", uuid=A, energy_mj=5_000_000),
        FakeGpu(name="NVIDIA H100 80GB HBM3", uuid=B, energy_mj=7_000_000),
        FakeGpu(name="Tesla P100-PCIE-16GB", uuid=C, energy_mj=None, power_mw=30_000, power_limit_mw=250_000),
    ])


def open_fake(state: FakeNvml, visible=None, clock=None):
    return open_nvml(make_fake_pynvml(state), visible=visible, clock=clock or Clock())


@pytest.fixture(autouse=True)
def no_cuda_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)


def test_fake_error_codes_are_nvmls():
    pynvml = pytest.importorskip("pynvml")
    for name, value in fk.CODES.items():
        assert getattr(pynvml, name) == value, name
    assert isinstance(pynvml.NVMLError(fk.NVML_ERROR_NOT_SUPPORTED), pynvml.NVMLError_NotSupported)
    fake = make_fake_pynvml()
    err = fake.NVMLError(fk.NVML_ERROR_LIBRARY_NOT_FOUND)
    assert isinstance(err, fake.NVMLError_LibraryNotFound) and err.value == 12
    assert str(err) == str(pynvml.NVMLError(12))


def test_energy_counter_in_millijoules():
    state = FakeNvml(gpus=[FakeGpu(energy_mj=1_000_000)])
    m = open_fake(state)
    (d,) = m.domains
    assert (d.name, d.source, d.method, d.kind) == ("gpu0", "counter", "nvml:gpu0:energy-counter", "gpu")
    assert m.read() == {"gpu0": 0.0}
    state.gpus[0].energy_mj += 123_457  # mJ
    assert m.read() == {"gpu0": 123.457}
    state.gpus[0].energy_mj += 1
    assert m.read() == {"gpu0": 123.458}


def test_power_integrated_where_no_counter():
    state = FakeNvml(gpus=[FakeGpu(energy_mj=None, power_mw=100_000)])
    clock = Clock(10.0)
    m = open_fake(state, clock=clock)
    (d,) = m.domains
    assert (d.source, d.method) == ("polled", "nvml:gpu0:power-integrated")
    clock.t = 10.5
    state.gpus[0].power_mw = 200_000
    assert m.read()["gpu0"] == pytest.approx((100 + 200) / 2 * 0.5)  # trapezoid: 75 J
    clock.t = 11.5
    assert m.read()["gpu0"] == pytest.approx(75 + 200 * 1.0)


def test_counter_and_polled_gpus_side_by_side():
    m = open_fake(three_gpus())
    assert [(d.name, d.source) for d in m.domains] == [("gpu0", "counter"), ("gpu1", "counter"), ("gpu2", "polled")]
    man = m.manifest()
    assert man["meter"] == "nvml"
    assert man["driver_version"] == "550.54.15" and man["nvml_version"] == "12.550.54.15"
    g2 = man["gpus"][2]
    assert g2["name"] == "Tesla P100-PCIE-16GB" and g2["uuid"] == C
    assert g2["power_limit_w"] == 250.0 and g2["source"] == "polled" and "1 s average" in g2["note"]
    assert man["gpus"][0]["power_limit_w"] == 400.0


@pytest.mark.parametrize(("spec", "nvml_indices"), [
    (None, [0, 1, 2]),
    ("1", [1]),
    ("2,0", [2, 0]),
    (" 1 , 2 ", [1, 2]),
    (B, [1]),
    ("GPU-cccc", [2]),  # a unique UUID prefix, as CUDA accepts
    ("0,7,1", [0]),  # CUDA stops at the first entry it cannot use
    ("1,1", [1]),
])
def test_cuda_visible_devices(spec, nvml_indices):
    m = open_fake(three_gpus(), visible=spec)
    assert [g["nvml_index"] for g in m.manifest()["gpus"]] == nvml_indices
    assert [d.name for d in m.domains] == [f"gpu{i}" for i in range(len(nvml_indices))]


def test_cuda_visible_devices_from_the_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    m = open_nvml(make_fake_pynvml(three_gpus()))
    assert m.manifest()["gpus"][0]["uuid"] == C
    assert m.manifest()["cuda_visible_devices"] == "2"


@pytest.mark.parametrize("spec", ["", "-1", "GPU-ffff", "9", "MIG-1234"])
def test_no_gpu_visible(spec):
    state = three_gpus()
    with pytest.raises(MeterUnavailable, match=r"^NVML: no GPU visible to this run \(CUDA_VISIBLE_DEVICES="):
        open_fake(state, visible=spec)
    assert state.initialized == 0  # shut down again


def test_parse_visible_notes():
    uuids = [A, B]
    assert parse_visible("0,5", uuids) == ([0], ["CUDA_VISIBLE_DEVICES entry '5': no GPU 5 (found 2); "
                                                 "CUDA ignores it and every later entry"])
    assert parse_visible("GPU-", uuids)[0] == []  # ambiguous prefix
    assert "MIG" in parse_visible("MIG-abc", uuids)[1][0]


def test_mixed_models_warn_about_device_order():
    m = open_fake(three_gpus(), visible="0,2")
    assert any("CUDA_DEVICE_ORDER=PCI_BUS_ID" in n for n in m.manifest()["notes"])


@pytest.mark.parametrize(("code", "reason"), [
    (fk.NVML_ERROR_LIBRARY_NOT_FOUND, "NVML: libnvidia-ml.so not found (no NVIDIA driver on this machine)"),
    (fk.NVML_ERROR_DRIVER_NOT_LOADED, "NVML: the NVIDIA driver is not loaded (no GPU, or its kernel module is not running)"),
    (fk.NVML_ERROR_NO_PERMISSION, "NVML: no permission to use the NVIDIA driver (check access to /dev/nvidia*)"),
    (fk.NVML_ERROR_UNKNOWN, "NVML: nvmlInit failed: Unknown Error (NVML error 999)"),
])
def test_init_failures_are_reasons(code, reason):
    with pytest.raises(MeterUnavailable) as e:
        open_fake(FakeNvml(init_error=code))
    assert str(e.value) == reason


def test_pynvml_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with pytest.raises(MeterUnavailable, match=r"nvidia-ml-py package is not installed"):
        open_nvml()


def test_real_pynvml_never_raises_anything_else():
    try:
        m = open_nvml()
    except MeterUnavailable as exc:
        assert str(exc).startswith("NVML: ") and "\n" not in str(exc)
    else:  # a machine with a GPU
        assert m.domains and all(d.kind == "gpu" for d in m.domains)
        m.read()
        m.close()


def test_gpu_without_energy_or_power():
    state = FakeNvml(gpus=[FakeGpu(energy_mj=None, power_mw=None)])
    with pytest.raises(MeterUnavailable, match="no visible GPU reports energy or power"):
        open_fake(state)
    state = FakeNvml(gpus=[FakeGpu(uuid=A), FakeGpu(uuid=B, energy_mj=None, power_mw=None)])
    m = open_fake(state)
    assert [d.name for d in m.domains] == ["gpu0"]
    assert m.manifest()["unmetered"][0]["uuid"] == B


def test_error_mid_run_is_a_meter_error():
    state = three_gpus()
    m = open_fake(state)
    m.read()
    state.gpus[1].fail_with = fk.NVML_ERROR_GPU_IS_LOST
    with pytest.raises(MeterError, match=r"NVML: gpu1 \(NVIDIA H100 80GB HBM3\): GPU is lost"):
        m.read()


def test_counter_going_backwards_is_a_gap_then_goes_on():
    state = FakeNvml(gpus=[FakeGpu(energy_mj=10_000)])
    m = open_fake(state)
    state.gpus[0].energy_mj = 12_000
    assert m.read() == {"gpu0": 2.0}
    state.gpus[0].energy_mj = 500  # driver reloaded: the counter restarted
    with pytest.raises(MeterError, match="went backwards"):
        m.read()
    state.gpus[0].energy_mj = 1_500
    assert m.read() == {"gpu0": 3.0}


def test_close_shuts_nvml_down_once():
    state = FakeNvml()
    m = open_fake(state)
    assert state.initialized == 1
    m.close()
    m.close()
    assert state.initialized == 0
    with pytest.raises(MeterError):
        m.read()


def test_bytes_from_old_bindings_are_decoded():
    state = FakeNvml(gpus=[FakeGpu(name=b"Tesla V100-SXM2-16GB", uuid=A.encode())], driver_version=b"470.1")
    man = open_fake(state).manifest()
    assert man["gpus"][0]["name"] == "Tesla V100-SXM2-16GB" and man["gpus"][0]["uuid"] == A
    assert man["driver_version"] == "470.1"
