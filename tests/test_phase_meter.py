"""PhaseMeter over the real RAPL meter reading a fake powercap tree (and a fake NVML): a window's
energy is the counter difference, the idle baseline is subtracted, misuse is one clear error, and
a counter that resets inside a window makes it a gap."""

import threading
import time

import pytest

from engine.worker.meters import rapl
from engine.worker.meters.nvml import open_nvml
from engine.worker.meters.rapl import open_rapl
from engine.worker.phase_meter import PhaseMeter, WindowError
from tests.fakes.fake_pynvml import FakeGpu, FakeNvml, FakeProcess, make_fake_pynvml
from tests.fakes.powercap import ReadClock, intel_server

PACKAGE, DRAM = "intel-rapl:0", "intel-rapl:0:0"


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    # RAPL judges resets by the power its reads allow: each read is one (fake) second after the last
    monkeypatch.setattr(rapl, "_now", ReadClock())


class Recorder:
    """An event sink and a device sync that remember what they were given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.syncs = 0
        self.sampled = threading.Event()

    def __call__(self, event_type: str, /, **fields) -> None:
        self.events.append((event_type, fields))
        if event_type == "sample":
            self.sampled.set()

    def sync(self) -> None:
        self.syncs += 1

    def types(self) -> list[str]:
        return [t for t, _ in self.events if t != "sample"]


@pytest.fixture
def tree(tmp_path):
    return intel_server(tmp_path, sockets=1)  # package-0 with a dram subzone


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def meter(tree, recorder):
    # 0.1 Hz: after its first sample the sampler's thread sleeps 10 s, so a test moves the counters
    # without racing its reads (the window edges read them)
    m = PhaseMeter([open_rapl(tree.root)], sample_hz=0.1, sync=recorder.sync, on_event=recorder)
    m.start()
    assert recorder.sampled.wait(5), "the sampler's thread never sampled"
    yield m
    m.stop()


def test_a_window_is_the_counter_difference_with_its_provenance(meter, tree, recorder):
    meter.begin_window("train")
    tree.advance(PACKAGE, 12_345_678)
    tree.advance(DRAM, 1_000_001)
    record = meter.end_window("train")

    package, dram = record.energy["package-0"], record.energy["dram-0"]
    assert round(package.gross_j * 1e6) == 12_345_678 and round(dram.gross_j * 1e6) == 1_000_001
    assert (package.source, package.method, package.kind) == ("counter", "rapl:package-0", "cpu")
    assert package.idle_j == 0.0 and package.net_j == package.gross_j  # no idle window yet
    assert record.total.gross_j == pytest.approx(13.345679) and record.total.source == "counter"
    assert record.total.known and not record.partial and record.duration_s > 0
    assert meter.records == {"train": record}
    assert recorder.types() == ["phase_start", "phase_end"]
    start, end = (f for t, f in recorder.events if t != "sample")
    assert start == {"phase": "train"}
    assert end["phase"] == "train" and end["total"]["gross_j"] == record.total.gross_j and end["partial"] is False
    assert recorder.syncs == 2  # the device is waited for at both edges


def test_the_idle_baseline_is_subtracted_from_later_windows(meter, tree):
    def idle(seconds):  # the machine draws while the run does nothing
        tree.advance(PACKAGE, 2_000_000)
        tree.advance(DRAM, 500_000)
        threading.Event().wait(seconds)

    idle_record = meter.measure_idle(0.2, sleep=idle)
    baseline = idle_record.energy["package-0"]
    assert round(baseline.gross_j * 1e6) == 2_000_000
    assert baseline.idle_j == baseline.gross_j and baseline.net_j == 0.0  # the baseline is all idle
    assert meter.idle_watts["package-0"] == pytest.approx(2.0 / idle_record.duration_s)
    assert meter.idle_power()["package-0"].source == "counter"

    meter.begin_window("train")
    tree.advance(PACKAGE, 9_000_000)
    threading.Event().wait(0.1)
    record = meter.end_window("train")
    package = record.energy["package-0"]
    assert package.idle_j == pytest.approx(meter.idle_watts["package-0"] * record.duration_s)
    assert package.net_j == pytest.approx(package.gross_j - package.idle_j)
    assert record.total.idle_j == pytest.approx(package.idle_j + record.energy["dram-0"].idle_j)
    assert record.total.net_j == pytest.approx(record.total.gross_j - record.total.idle_j)


def test_the_energy_so_far_is_the_open_windows(meter, tree, recorder):
    meter.begin_window("train")
    tree.advance(PACKAGE, 3_000_000)
    assert meter.energy_so_far() == pytest.approx(3.0)
    tree.advance(DRAM, 1_000_000)
    assert meter.energy_so_far() == pytest.approx(4.0)
    meter.end_window("train")
    assert recorder.syncs == 4  # begin, twice so far, end


def test_windows_do_not_nest(meter):
    meter.begin_window("train")
    with pytest.raises(WindowError, match="cannot begin window 'test': window 'train' is still open"):
        meter.begin_window("test")
    assert meter.open_window == "train"  # the open window is unharmed
    meter.end_window("train")


def test_ending_a_window_that_is_not_open_is_refused(meter):
    with pytest.raises(WindowError, match="cannot end window 'train': no window is open"):
        meter.end_window("train")
    meter.begin_window("train")
    with pytest.raises(WindowError, match="cannot end window 'test': the open window is 'train'"):
        meter.end_window("test")
    assert meter.end_window("train").duration_s > 0


def test_a_name_is_measured_once(meter):
    meter.begin_window("train")
    meter.end_window("train")
    with pytest.raises(WindowError, match="'train': it was already measured"):
        meter.begin_window("train")


def test_metering_needs_a_started_meter(tree):
    meter = PhaseMeter([open_rapl(tree.root)], sample_hz=1.0)
    with pytest.raises(WindowError, match="the meter is new; call start"):
        meter.begin_window("train")
    meter.start()
    meter.stop()
    with pytest.raises(WindowError, match="the meter is stopped"):
        meter.begin_window("train")


def test_a_counter_reset_in_a_window_is_a_gap(meter, tree, recorder):
    meter.begin_window("train")
    tree.advance(PACKAGE, 1_000_000)
    meter.energy_so_far()  # a read in between, as the sampler's thread makes
    tree.set_energy(PACKAGE, 5)  # the counter went back: a reset, not energy
    tree.advance(DRAM, 1_000_000)
    record = meter.end_window("train")
    assert record.energy["package-0"].gap and not record.energy["dram-0"].gap
    assert record.total.gap == ["package-0"] and not record.total.known  # not a measurement
    assert round(record.energy["package-0"].gross_j * 1e6) == 1_000_000  # what was seen: a lower bound
    assert meter.gaps() == ["package-0"]
    gaps = [f for t, f in recorder.events if t == "meter_gap"]
    assert [g["domain"] for g in gaps] == ["package-0"] and "went back" in gaps[0]["reason"]

    meter.begin_window("test")  # the next window, with the counter readable again, is whole
    tree.advance(PACKAGE, 1_000_000)
    assert not meter.end_window("test").total.gap


def test_leaving_the_meter_closes_an_open_window_as_partial(tree, recorder):
    with PhaseMeter([open_rapl(tree.root)], sample_hz=1.0, on_event=recorder) as meter:
        meter.begin_window("train")
        tree.advance(PACKAGE, 1_000_000)
    assert meter.records["train"].partial and meter.open_window is None
    assert recorder.types()[-1] == "phase_end" and recorder.events[-1][1]["partial"] is True


def test_a_gpu_window_records_other_processes_and_the_cross_check(tree, recorder):
    gpu = FakeGpu(energy_mj=0, power_mw=100_000, processes=[FakeProcess(pid=999_999)])
    nvml = open_nvml(make_fake_pynvml(FakeNvml(gpus=[gpu])), visible="0")
    with PhaseMeter([open_rapl(tree.root), nvml], sample_hz=0.1, on_event=recorder) as meter:
        meter.begin_window("train")
        gpu.energy_mj += 50_000
        record = meter.end_window("train")
    assert record.energy["gpu0"].gross_j == pytest.approx(50.0) and record.energy["gpu0"].source == "counter"
    assert set(record.nvml_agreement) == {"gpu0"} and record.nvml_agreement["gpu0"].counter_j == pytest.approx(50.0)
    assert record.gpu_contended and record.gpu_contention["gpu0"].other_processes[0]["pid"] == 999_999
    assert "gpu0-polled" not in record.total.methods and record.total.source == "counter"


def test_the_model_meter_keeps_its_basis(recorder):
    meter = PhaseMeter.discover(sample_hz=1.0, tdp_w=65.0, gpu_uuids=[], powercap_root="/nonexistent")
    assert {m.meter for m in meter.missing} >= {"rapl", "nvml"}
    with meter:
        meter.begin_window("train")
        busy = time.process_time()
        while time.process_time() - busy < 0.1:  # CPU time for the model to count (10 ms ticks)
            pass
        record = meter.end_window("train")
    cpu = record.energy["cpu"]
    assert cpu.source == "modelled" and cpu.basis == meter.basis["cpu"] and cpu.gross_j > 0
    assert meter.total_source == "modelled"
