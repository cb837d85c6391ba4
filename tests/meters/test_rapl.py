import logging
import os

import pytest

from engine.worker.meters import rapl
from engine.worker.meters.base import MeterError, MeterUnavailable
from engine.worker.meters.rapl import RaplMeter, open_rapl
from tests.fakes.powercap import (
    AMD_MAX_UJ,
    INTEL_MAX_UJ,
    PowercapTree,
    ReadClock,
    amd_epyc,
    amd_multi_die,
    enforce_permissions,
    intel_desktop,
    intel_multi_die,
    intel_server,
)


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    c = ReadClock()
    monkeypatch.setattr(rapl, "_now", c)
    return c


def uj(joules: float) -> int:
    """Joules back to whole microjoules (the meter's values are exact to the microjoule)."""
    return round(joules * 1e6)


def names(meter):
    return [d.name for d in meter.domains]


# -- discovery -----------------------------------------------------------------------------


def test_intel_desktop_measures_package_and_dram_once(tmp_path):
    tree = intel_desktop(tmp_path)
    m = open_rapl(tree.root)
    assert names(m) == ["package-0", "dram-0"]
    pkg, dram = m.domains
    assert (pkg.source, pkg.method, pkg.kind) == ("counter", "rapl:package-0", "cpu")
    assert (dram.source, dram.method, dram.kind) == ("counter", "rapl:dram-0", "dram")
    man = m.manifest()
    assert man["meter"] == "rapl" and man["root"] == str(tree.root)
    assert [d["max_energy_range_uj"] for d in man["domains"]] == [INTEL_MAX_UJ, INTEL_MAX_UJ]
    ignored = {i["zone"]: i for i in man["ignored"]}
    assert "part of package-0" in ignored["intel-rapl:0:0"]["why"]  # core
    assert "part of package-0" in ignored["intel-rapl:0:1"]["why"]  # uncore
    assert "same package as intel-rapl:0" in ignored["intel-rapl-mmio:0"]["why"]


def test_psys_is_reported_as_platform_never_as_cpu(tmp_path):
    tree = intel_desktop(tmp_path, psys=True)
    m = open_rapl(tree.root)
    assert names(m) == ["package-0", "dram-0", "psys"]
    psys = m.domains[2]
    assert (psys.kind, psys.method, psys.source) == ("platform", "rapl:psys", "counter")
    tree.advance("intel-rapl:1", 9_000_000)
    tree.advance("intel-rapl:0", 4_000_000)
    r = m.read()
    assert uj(r["psys"]) == 9_000_000 and uj(r["package-0"]) == 4_000_000
    assert sum(v for d, v in r.items() if m.domains[names(m).index(d)].kind == "cpu") == pytest.approx(4.0)


def test_two_sockets_with_dram(tmp_path):
    tree = intel_server(tmp_path, sockets=2)
    m = open_rapl(tree.root)
    assert names(m) == ["package-0", "dram-0", "package-1", "dram-1"]
    assert [d.kind for d in m.domains] == ["cpu", "dram", "cpu", "dram"]
    for zone, used in [("intel-rapl:0", 11), ("intel-rapl:0:0", 22), ("intel-rapl:1", 33), ("intel-rapl:1:0", 44)]:
        tree.advance(zone, used)
    assert {k: uj(v) for k, v in m.read().items()} == {"package-0": 11, "dram-0": 22, "package-1": 33, "dram-1": 44}


@pytest.mark.parametrize("sockets", [1, 2])
def test_amd_same_names_no_dram(tmp_path, sockets):
    tree = amd_epyc(tmp_path, sockets=sockets)
    m = open_rapl(tree.root)
    assert names(m) == [f"package-{s}" for s in range(sockets)]
    assert m.manifest()["domains"][0]["max_energy_range_uj"] == AMD_MAX_UJ
    assert any(i["name"] == "core" for i in m.manifest()["ignored"])


def test_amd_mirrored_dies_counted_once(tmp_path):
    tree = amd_multi_die(tmp_path)
    m = open_rapl(tree.root)
    assert names(m) == ["package-0-die-0"]
    ignored = [i for i in m.manifest()["ignored"] if i["name"] == "package-0-die-1"]
    assert ignored and "mirrors package-0-die-0" in ignored[0]["why"]


def test_intel_independent_dies_both_measured(tmp_path):
    tree = intel_multi_die(tmp_path)
    m = open_rapl(tree.root)
    assert names(m) == ["package-0-die-0", "dram-0-die-0", "package-0-die-1", "dram-0-die-1"]


def test_subzones_found_without_top_level_links(tmp_path):
    tree = intel_server(tmp_path, sockets=1)
    (tree.root / "intel-rapl:0:0").unlink()  # only the nested directory is left
    assert names(open_rapl(tree.root)) == ["package-0", "dram-0"]


def test_root_from_environment(tmp_path, monkeypatch):
    tree = intel_server(tmp_path, sockets=1)
    monkeypatch.setenv("JOULELAB_POWERCAP_ROOT", str(tree.root))
    assert RaplMeter().root == tree.root


# -- reading and wraparound ----------------------------------------------------------------


def test_read_is_joules_since_open(tmp_path):
    tree = intel_server(tmp_path, sockets=1)
    m = open_rapl(tree.root)
    assert m.read() == {"package-0": 0.0, "dram-0": 0.0}
    tree.advance("intel-rapl:0", 1_234_567)
    assert uj(m.read()["package-0"]) == 1_234_567
    tree.advance("intel-rapl:0", 1)
    assert m.read()["package-0"] == 1.234568


@pytest.mark.parametrize("wraps", [0, 1, 5])
@pytest.mark.parametrize("max_uj", [INTEL_MAX_UJ, 999])
def test_wraps_within_a_phase_are_exact(tmp_path, wraps, max_uj, clock):
    period = max_uj + 1
    start = 5
    step = period * 7 // 10 + 3  # just under one wrap period between reads (the sampler reads at 10 Hz)
    steps = 1
    while (start + (steps + 1) * step) // period <= wraps:
        steps += 1
    tree = PowercapTree(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", energy_uj=start, max_energy_range_uj=max_uj)
    m = open_rapl(tree.root)
    clock.within_wrap(m)
    seen = 0
    for _ in range(steps):
        seen += tree.advance("intel-rapl:0", step)
        m.read()
    assert seen == wraps
    assert uj(m.read()["package-0"]) == steps * step


def test_counter_at_max_then_zero_is_one_microjoule(tmp_path, clock):
    tree = PowercapTree(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", energy_uj=1000, max_energy_range_uj=1000)
    clock.step = 1e-8  # 1000 W for 10 ns: up to 10 uJ, so 1000 -> 0 is a wrap of one microjoule
    m = open_rapl(tree.root)
    tree.set_energy("intel-rapl:0", 0)
    assert uj(m.read()["package-0"]) == 1


def test_reads_never_decrease(tmp_path, clock):
    tree = PowercapTree(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", energy_uj=0, max_energy_range_uj=10_000)
    clock.step = 9.5e-6  # up to 9.5 mJ at 1000 W, under one wrap of 10 mJ
    m = open_rapl(tree.root)
    last = 0.0
    for i in range(50):
        tree.advance("intel-rapl:0", (i * 3779) % 9000)
        now = m.read()["package-0"]
        assert now >= last
        last = now


# -- what cannot be measured, and why --------------------------------------------------------


def test_powercap_absent(tmp_path):
    with pytest.raises(MeterUnavailable) as e:
        open_rapl(tmp_path / "nope")
    msg = str(e.value)
    assert msg == f"RAPL: {tmp_path / 'nope'} not present (virtual machine or non-Linux?)"


def test_powercap_without_rapl_zones(tmp_path):
    (tmp_path / "dtpm").mkdir()
    with pytest.raises(MeterUnavailable, match=r"no RAPL zones .*modprobe intel_rapl_msr"):
        open_rapl(tmp_path)


def test_missing_max_range_on_dram_drops_only_dram(tmp_path):
    tree = PowercapTree(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0")
    tree.add_zone("intel-rapl:0:0", "dram", max_energy_range_uj=None)
    m = open_rapl(tree.root)
    assert names(m) == ["package-0"]
    why = [i["why"] for i in m.manifest()["ignored"] if i["name"] == "dram-0"]
    assert why == ["no max_energy_range_uj: its counter cannot be read wrap-safe"]


def test_missing_max_range_on_the_only_package_is_unavailable(tmp_path):
    tree = PowercapTree(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", max_energy_range_uj=None)
    with pytest.raises(MeterUnavailable) as e:
        open_rapl(tree.root)
    assert (
        str(e.value) == "RAPL: intel-rapl:0 (package-0): no max_energy_range_uj: its counter cannot be read wrap-safe"
    )


@pytest.mark.parametrize("machine", [intel_server, intel_desktop])
def test_unreadable_energy_names_the_fix(tmp_path, monkeypatch, machine):
    tree = machine(tmp_path)
    tree.make_unreadable("intel-rapl:0")
    if os.geteuid() == 0:
        # chmod does not stop root: refuse the read exactly as the kernel refuses a normal user.
        monkeypatch.setattr(rapl, "_read_bytes", enforce_permissions(rapl._read_bytes))
    with pytest.raises(MeterUnavailable) as e:
        open_rapl(tree.root)
    msg = str(e.value)
    path = tree.root / "intel-rapl:0" / "energy_uj"
    assert msg.startswith(f"RAPL: {path} is not readable (root-only since Linux 5.10); run as root or `sudo chmod a+r ")
    assert msg.endswith(f"`sudo chmod a+r {tree.root}/intel-rapl:*/energy_uj {tree.root}/intel-rapl:*/*/energy_uj`")
    assert "\n" not in msg


def test_value_out_of_range_at_open(tmp_path):
    tree = PowercapTree(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", energy_uj=2000, max_energy_range_uj=1000)
    with pytest.raises(MeterUnavailable, match="outside 0..max_energy_range_uj=1000"):
        open_rapl(tree.root)


def test_file_vanishing_mid_run_is_a_meter_error(tmp_path):
    tree = intel_server(tmp_path, sockets=1)
    m = open_rapl(tree.root)
    tree.advance("intel-rapl:0:0", 5)
    m.read()
    tree.remove("intel-rapl:0:0")
    with pytest.raises(MeterError, match="vanished"):
        m.read()


def test_garbage_value_is_a_meter_error(tmp_path):
    tree = intel_server(tmp_path, sockets=1)
    m = open_rapl(tree.root)
    tree.path("intel-rapl:0").write_text("\n")
    with pytest.raises(MeterError, match="not a whole number"):
        m.read()


def test_failed_read_changes_nothing(tmp_path):
    tree = intel_server(tmp_path, sockets=1)
    m = open_rapl(tree.root)
    tree.advance("intel-rapl:0", 100)
    tree.advance("intel-rapl:0:0", 7)
    content = tree.path("intel-rapl:0:0").read_text()
    tree.remove("intel-rapl:0:0")
    with pytest.raises(MeterError):
        m.read()
    tree.path("intel-rapl:0:0").write_text(content)
    assert {k: uj(v) for k, v in m.read().items()} == {"package-0": 100, "dram-0": 7}


# -- the socket check through pyRAPL ---------------------------------------------------------


def test_socket_without_package_counter_is_noted(tmp_path, monkeypatch):
    tree = intel_server(tmp_path, sockets=1)
    monkeypatch.setattr(rapl, "_pyrapl_socket_ids", lambda: [0, 1])
    m = open_rapl(tree.root, check_sockets=True)
    assert m.manifest()["notes"] == [
        "2 CPU socket(s) but no package counter for socket(s) 1: their energy is not measured"
    ]


def test_pyrapl_topology_leaves_logging_alone():
    root = logging.getLogger()
    before = list(root.handlers)
    disabled = logging.root.manager.disable
    ids = rapl._pyrapl_socket_ids()
    assert ids is None or all(isinstance(i, int) for i in ids)
    assert root.handlers == before
    assert logging.root.manager.disable == disabled


# -- wrap, reset or lost wraps: decided by what the domain's power allows --------------------

RANGE_UJ = 1_000_000_000 - 1  # a 1,000 J counter: 0..999,999,999 uJ, then 0


def small_range_meter(tmp_path, **power):
    tree = PowercapTree(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", energy_uj=500_000_000, max_energy_range_uj=RANGE_UJ, **power)
    return tree, open_rapl(tree.root)


def test_power_bound_comes_from_the_zone_constraints_else_a_documented_default(tmp_path):
    _, m = small_range_meter(tmp_path / "a", max_power_uw=200_000_000)
    d = m.manifest()["domains"][0]
    assert d["max_power_w"] == 400.0 and "max_power_uw" in d["max_power_from"]
    assert d["shortest_wrap_period_s"] == pytest.approx(2.5)
    _, m = small_range_meter(tmp_path / "b", power_limit_uw=65_000_000)
    assert m.manifest()["domains"][0]["max_power_w"] == 130.0
    _, m = small_range_meter(tmp_path / "c")
    assert m.manifest()["domains"][0]["max_power_w"] == rapl.DEFAULT_MAX_W["cpu"]


def test_a_counter_stepping_back_is_a_reset_that_adds_nothing(tmp_path, clock):
    tree, m = small_range_meter(tmp_path, max_power_uw=200_000_000)  # 400 W: wrap period 2.5 s
    clock.step = 0.1
    tree.advance("intel-rapl:0", 10_000_000)  # 10 J in 0.1 s: 100 W
    assert uj(m.read()["package-0"]) == 10_000_000 and m.take_gaps() == {}
    tree.set_energy("intel-rapl:0", tree.energy("intel-rapl:0") - 20_000_000)  # 20 J back
    assert uj(m.read()["package-0"]) == 10_000_000  # not +980 J: a wrap would need 9,800 W
    gaps = m.take_gaps()
    assert list(gaps) == ["package-0"] and "went back" in gaps["package-0"] and "reset" in gaps["package-0"]
    tree.advance("intel-rapl:0", 5_000_000)
    assert uj(m.read()["package-0"]) == 15_000_000 and m.take_gaps() == {}  # counting goes on


def test_a_wrap_that_power_allows_is_counted_exactly(tmp_path, clock):
    tree, m = small_range_meter(tmp_path, max_power_uw=200_000_000)
    clock.step = 0.1
    tree.set_energy("intel-rapl:0", RANGE_UJ - 3_000_000)
    m.read()
    m.take_gaps()  # (the set above was itself a jump, flagged)
    assert tree.advance("intel-rapl:0", 30_000_000) == 1  # 30 J in 0.1 s (300 W), across the wrap
    before = m.read()["package-0"]
    tree.advance("intel-rapl:0", 1)
    assert uj(m.read()["package-0"] - before) == 1 and m.take_gaps() == {}


def test_a_read_later_than_the_shortest_wrap_period_is_a_gap_not_a_counter_value(tmp_path, clock):
    tree, m = small_range_meter(tmp_path, max_power_uw=200_000_000)
    clock.step = 0.1
    tree.advance("intel-rapl:0", 10_000_000)
    assert uj(m.read()["package-0"]) == 10_000_000
    clock.step = 30.0  # the worker was stopped for 30 s: at up to 400 W, 12 wraps may have passed
    tree.advance("intel-rapl:0", 3 * (RANGE_UJ + 1) + 7_000_000)
    assert uj(m.read()["package-0"]) == 10_000_000  # unknown energy is not counted...
    gaps = m.take_gaps()
    assert "wraps may be lost" in gaps["package-0"] and "30.0 s" in gaps["package-0"]  # ...and is a gap
