"""The sampler over a fake RAPL tree: a phase's energy is the counter difference, exactly."""

import pytest

from engine.core.energy import phase_energy
from engine.worker.meters import rapl
from engine.worker.meters.rapl import open_rapl
from engine.worker.meters.sampler import Sampler
from tests.fakes.powercap import PowercapTree, ReadClock, intel_server


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    c = ReadClock()
    monkeypatch.setattr(rapl, "_now", c)
    return c


def uj(joules: float) -> int:
    return round(joules * 1e6)


@pytest.mark.parametrize("wraps", [0, 1, 5])
def test_phase_energy_is_the_counter_difference_across_wraps(tmp_path, wraps, clock):
    max_uj = 99_999
    tree = PowercapTree(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", energy_uj=77_777, max_energy_range_uj=max_uj)
    tree.add_zone("intel-rapl:0:0", "dram", energy_uj=3, max_energy_range_uj=max_uj)
    sampler = Sampler([open_rapl(tree.root)], hz=10)
    clock.within_wrap(sampler.meters[0])
    sampler.sample()  # a sample before the phase: the phase must not depend on it
    tree.advance("intel-rapl:0", 5_000)

    start = sampler.snapshot()
    used = {"intel-rapl:0": 0, "intel-rapl:0:0": 0}
    seen = 0
    step = 60_001  # under one wrap period (100 000 uJ) between samples
    for i in range(wraps * 2 + 1):
        seen += tree.advance("intel-rapl:0", step)
        tree.advance("intel-rapl:0:0", 11 * (i + 1))
        used["intel-rapl:0"] += step
        used["intel-rapl:0:0"] += 11 * (i + 1)
        sampler.sample()  # what the sampler thread does between the phase's ends
    end = sampler.snapshot()

    assert seen >= wraps
    energy = phase_energy(start, end, sampler.domains, idle_watts={})
    assert uj(energy["package-0"].gross_j) == used["intel-rapl:0"]
    assert uj(energy["dram-0"].gross_j) == used["intel-rapl:0:0"]
    assert energy["package-0"].as_value().source == "counter"
    assert energy["package-0"].as_value().method == "rapl:package-0"
    assert not energy["package-0"].gap


def test_a_vanished_counter_is_a_gap_not_a_crash(tmp_path):
    tree = intel_server(tmp_path, sockets=1)
    gaps = []
    sampler = Sampler([open_rapl(tree.root)], hz=10, on_gap=lambda d, r: gaps.append((d, r)))
    start = sampler.snapshot()
    tree.advance("intel-rapl:0", 1_000)
    sampler.sample()
    tree.remove("intel-rapl:0:0")
    tree.advance("intel-rapl:0", 1_000)
    end = sampler.snapshot()
    energy = phase_energy(start, end, sampler.domains, idle_watts={})
    assert energy["package-0"].gap and uj(energy["package-0"].gross_j) == 1_000  # a lower bound
    assert [d for d, _ in gaps] == ["package-0", "dram-0"]
    assert "vanished" in gaps[0][1]


def test_sampler_thread_keeps_up_with_wraps(tmp_path, clock):
    """The real thread at 100 Hz, while the 'hardware' wraps the counter between its reads."""
    import threading

    max_uj = 9_999
    tree = PowercapTree(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", energy_uj=0, max_energy_range_uj=max_uj)
    sampler = Sampler([open_rapl(tree.root)], hz=100)
    clock.within_wrap(sampler.meters[0], 0.9)  # each read is 0.9 wrap periods after the last
    read_done = threading.Event()
    hardware = threading.Lock()  # a counter update is atomic on hardware; the fake file is not
    original = sampler.meters[0].read

    def read():
        with hardware:
            out = original()
            read_done.set()  # under the lock: a set is never from a read that began before an update
        return out

    sampler.meters[0].read = read
    start = sampler.snapshot()
    sampler.start()
    total = 0
    for _ in range(12):  # 12 steps of 0.8 periods: 9 wraps, one read between each step
        read_done.clear()
        assert read_done.wait(2)
        with hardware:
            tree.advance("intel-rapl:0", 8_000)
        total += 8_000
        read_done.clear()
        assert read_done.wait(2)
    end = sampler.snapshot()
    sampler.stop()
    assert uj(end.joules["package-0"] - start.joules["package-0"]) == total
