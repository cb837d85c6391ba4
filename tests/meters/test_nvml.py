import sys

import pytest

from engine.worker.meters.base import MeterError, MeterUnavailable
from engine.worker.meters.nvml import open_nvml, parse_visible
from tests.fakes import fake_pynvml as fk
from tests.fakes.fake_pynvml import FakeGpu, FakeNvml, make_fake_pynvml

A = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
B = "GPU-bbbbbbbb-0000-0000-0000-000000000000"
C = "GPU-cccccccc-0000-0000-0000-000000000000"


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def three_gpus() -> FakeNvml:
    return FakeNvml(
        gpus=[
            FakeGpu(name="NVIDIA H100 80GB HBM3", uuid=A, energy_mj=5_000_000),
            FakeGpu(name="NVIDIA H100 80GB HBM3", uuid=B, energy_mj=7_000_000),
            FakeGpu(name="Tesla P100-PCIE-16GB", uuid=C, energy_mj=None, power_mw=30_000, power_limit_mw=250_000),
        ]
    )


def open_fake(state: FakeNvml, visible=None, clock=None, used_uuids=None):
    return open_nvml(make_fake_pynvml(state), visible=visible, clock=clock or Clock(), used_uuids=used_uuids)


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
    d, check = m.domains
    assert (d.name, d.source, d.method, d.kind) == ("gpu0", "counter", "nvml:gpu0:energy-counter", "gpu")
    assert (check.name, check.source, check.method, check.kind) == (
        "gpu0-polled",
        "polled",
        "nvml:gpu0:power-integrated",
        "cross-check",
    )
    assert m.read()["gpu0"] == 0.0
    state.gpus[0].energy_mj += 123_457  # mJ
    assert m.read()["gpu0"] == 123.457
    state.gpus[0].energy_mj += 1
    assert m.read()["gpu0"] == 123.458


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
    assert [(d.name, d.source, d.kind) for d in m.domains] == [
        ("gpu0", "counter", "gpu"),
        ("gpu0-polled", "polled", "cross-check"),
        ("gpu1", "counter", "gpu"),
        ("gpu1-polled", "polled", "cross-check"),
        ("gpu2", "polled", "gpu"),
    ]  # no counter on the P100: its polled power is the measurement
    man = m.manifest()
    assert man["meter"] == "nvml"
    assert man["driver_version"] == "550.54.15" and man["nvml_version"] == "12.550.54.15"
    g2 = man["gpus"][2]
    assert g2["name"] == "Tesla P100-PCIE-16GB" and g2["uuid"] == C
    assert g2["power_limit_w"] == 250.0 and g2["source"] == "polled" and "1 s average" in g2["note"]
    assert man["gpus"][0]["power_limit_w"] == 400.0


@pytest.mark.parametrize(
    ("spec", "nvml_indices"),
    [
        (None, [0, 1, 2]),
        ("1", [1]),
        ("2,0", [2, 0]),
        (" 1 , 2 ", [1, 2]),
        (B, [1]),
        ("GPU-cccc", [2]),  # a unique UUID prefix, as CUDA accepts
        ("0,7,1", [0]),  # CUDA stops at the first entry it cannot use
        ("1,1", [1]),
    ],
)
def test_cuda_visible_devices(spec, nvml_indices):
    m = open_fake(three_gpus(), visible=spec)
    assert [g["nvml_index"] for g in m.manifest()["gpus"]] == nvml_indices
    assert [d.name for d in m.domains if d.kind == "gpu"] == [f"gpu{i}" for i in range(len(nvml_indices))]


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
    assert parse_visible("0,5", uuids) == (
        [0],
        ["CUDA_VISIBLE_DEVICES entry '5': no GPU 5 (found 2); CUDA ignores it and every later entry"],
    )
    assert parse_visible("GPU-", uuids)[0] == []  # ambiguous prefix
    assert "MIG" in parse_visible("MIG-abc", uuids)[1][0]


def test_mixed_models_warn_about_device_order():
    m = open_fake(three_gpus(), visible="0,2")
    assert any("CUDA_DEVICE_ORDER=PCI_BUS_ID" in n for n in m.manifest()["notes"])


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (fk.NVML_ERROR_LIBRARY_NOT_FOUND, "NVML: libnvidia-ml.so not found (no NVIDIA driver on this machine)"),
        (
            fk.NVML_ERROR_DRIVER_NOT_LOADED,
            "NVML: the NVIDIA driver is not loaded (no GPU, or its kernel module is not running)",
        ),
        (fk.NVML_ERROR_NO_PERMISSION, "NVML: no permission to use the NVIDIA driver (check access to /dev/nvidia*)"),
        (fk.NVML_ERROR_UNKNOWN, "NVML: nvmlInit failed: Unknown Error (NVML error 999)"),
    ],
)
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
    assert [d.name for d in m.domains] == ["gpu0", "gpu0-polled"]
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
    assert m.read()["gpu0"] == 2.0
    state.gpus[0].energy_mj = 500  # driver reloaded: the counter restarted
    with pytest.raises(MeterError, match="went backwards"):
        m.read()
    state.gpus[0].energy_mj = 1_500
    assert m.read()["gpu0"] == 3.0


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


# -- both methods side by side, GPU state, other processes, the GPU the run uses -----------------


def test_fake_functions_are_nvidia_ml_pys():
    """Every NVML function the fake offers exists in nvidia-ml-py with the same parameters, and
    the clock-event reason bits have nvidia-ml-py's values (old and new names)."""
    import inspect

    pynvml = pytest.importorskip("pynvml")
    fake = make_fake_pynvml()
    names = [n for n in dir(fake) if n.startswith("nvml") and callable(getattr(fake, n))]
    assert "nvmlDeviceGetComputeRunningProcesses" in names and "nvmlDeviceGetTemperature" in names
    for name in names:
        real = getattr(pynvml, name)
        assert list(inspect.signature(getattr(fake, name)).parameters) == list(inspect.signature(real).parameters), name
    for name, value in fk.REASONS.items():
        assert getattr(pynvml, name) == value
        assert getattr(pynvml, name.replace("Event", "Throttle")) == value


def test_counter_and_integrated_power_over_one_phase():
    from engine.core.energy import Snapshot, phase_energy, phase_total
    from engine.worker.meters.nvml import agreement

    state = FakeNvml(gpus=[FakeGpu(energy_mj=0, power_mw=100_000)])
    clock = Clock(0.0)
    m = open_fake(state, clock=clock)
    domains = {d.name: d for d in m.domains}
    start = Snapshot(clock.t, m.read())
    for _ in range(200):  # 20 s at 10 Hz; the board draws 100 W, but NVML's power reads 110 W
        clock.t += 0.1
        state.gpus[0].energy_mj += 10_000
        state.gpus[0].power_mw = 110_000
        m.read()
    end = Snapshot(clock.t, m.read())
    energy = phase_energy(start, end, domains, {}, 0.1)
    assert energy["gpu0"].gross_j == pytest.approx(2000.0)
    assert energy["gpu0-polled"].gross_j == pytest.approx(2000.0 * 1.1 - 0.5)  # first 0.1 s ramps 100->110 W
    both = agreement(energy)
    assert set(both) == {"gpu0"}
    assert both["gpu0"]["counter_j"] == pytest.approx(2000.0)
    assert both["gpu0"]["diff_rel"] == pytest.approx(0.09975)
    assert both["gpu0"]["short"] is False
    # the cross-check is reported, never added: the total is the counter's alone
    total = phase_total(energy.values())
    assert total.gross_j == pytest.approx(2000.0) and total.methods == ["nvml:gpu0:energy-counter"]
    assert total.source == "counter"
    record = energy["gpu0-polled"].as_value()
    assert record.kind == "cross-check" and record.source == "polled"


def test_short_phases_are_flagged_per_method():
    from engine.core.energy import Snapshot, phase_energy
    from engine.worker.meters.nvml import agreement

    state = FakeNvml(gpus=[FakeGpu(energy_mj=0)])
    clock = Clock(0.0)
    m = open_fake(state, clock=clock)
    domains = {d.name: d for d in m.domains}
    start = Snapshot(clock.t, m.read())
    clock.t += 3.0  # longer than ten counter updates (1 s), shorter than ten power windows (10 s)
    state.gpus[0].energy_mj += 180_000
    energy = phase_energy(start, Snapshot(clock.t, m.read()), domains, {}, 0.1)
    assert not energy["gpu0"].short and energy["gpu0-polled"].short
    assert agreement(energy)["gpu0"]["short"] is True
    clock.t += 0.5  # shorter than ten counter updates too
    start = Snapshot(clock.t, m.read())
    clock.t += 0.5
    energy = phase_energy(start, Snapshot(clock.t, m.read()), domains, {}, 0.1)
    assert energy["gpu0"].short and energy["gpu0"].as_value().short is True


def test_each_read_keeps_temperature_clock_and_throttle_reasons():
    state = FakeNvml(
        gpus=[FakeGpu(temperature_c=71, sm_clock_mhz=1980, clocks_event_reasons=0x4 | 0x20, power_mw=350_500)]
    )
    m = open_fake(state)
    m.read()
    assert m.state == {"gpu0": {"temp_c": 71, "sm_mhz": 1980, "throttle": 0x24, "power_w": 350.5}}
    state.gpus[0].old_driver = True  # no nvmlDeviceGetCurrentClocksEventReasons: the older name answers
    state.gpus[0].temperature_c = None  # a sensor NVML cannot read is None, not an error
    m.read()
    assert m.state["gpu0"]["throttle"] == 0x24 and m.state["gpu0"]["temp_c"] is None
    assert m.now()["gpu0"]["power_w"] == 350.5
    man = m.manifest()["gpus"][0]
    assert man["clocks"] == {"sm_mhz": 1980, "sm_max_mhz": 1410, "mem_mhz": 1215, "mem_max_mhz": 1215}
    assert man["cross_check"] == "nvml:gpu0:power-integrated"


def test_other_processes_on_the_gpu_exclude_ours():
    state = FakeNvml(
        gpus=[
            FakeGpu(
                processes=[
                    fk.FakeProcess(pid=100),
                    fk.FakeProcess(pid=4242, usedGpuMemory=3 << 29),
                    fk.FakeProcess(pid=4243, usedGpuMemory=None),
                ]
            )
        ]
    )
    m = open_fake(state)
    assert m.other_processes({100, 101}) == {
        "gpu0": [{"pid": 4242, "used_gpu_memory_mb": 1536.0}, {"pid": 4243, "used_gpu_memory_mb": None}]
    }
    state.gpus[0].processes = []
    assert m.other_processes({100}) == {"gpu0": []}


def test_only_the_gpu_the_run_uses_is_metered():
    m = open_fake(three_gpus(), used_uuids=[B])
    assert [d.name for d in m.domains] == ["gpu1", "gpu1-polled"]  # named by CUDA index: cuda:1
    man = m.manifest()
    assert [g["uuid"] for g in man["gpus"]] == [B]
    assert [(u["domain"], u["uuid"], u["why"]) for u in man["unused"]] == [
        ("gpu0", A, "present but not used by this run"),
        ("gpu2", C, "present but not used by this run"),
    ]
    # through CUDA_VISIBLE_DEVICES: cuda:0 is NVML's GPU 2
    m = open_fake(three_gpus(), visible="2,0", used_uuids=[A])
    assert [d.name for d in m.domains if d.kind == "gpu"] == ["gpu1"]


def test_a_cpu_run_meters_no_gpu_and_says_which_are_present():
    state = three_gpus()
    with pytest.raises(
        MeterUnavailable,
        match=r"^NVML: not used: this run does not train on a GPU \(present: "
        r"gpu0 NVIDIA H100 80GB HBM3 GPU-aaaa",
    ):
        open_fake(state, used_uuids=[])
    assert state.initialized == 0


def test_a_gpu_run_whose_uuid_nvml_does_not_know_says_so():
    with pytest.raises(MeterUnavailable, match=r"^NVML: no visible GPU has the run's UUID GPU-ffff \(present: gpu0 "):
        open_fake(three_gpus(), used_uuids=["GPU-ffff"])
    # torch and NVML may differ in case: matched regardless
    assert [d.name for d in open_fake(three_gpus(), used_uuids=[B.upper()]).domains][0] == "gpu1"
