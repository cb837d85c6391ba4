"""`joulelab meters` on a domain whose reading is a gap: its energy and power are unknown, so
null in the JSON and "unknown" in the table, never a number (0.0 W would read as a measurement)."""

import io
import json
import threading

import pytest
from rich.console import Console

from engine.worker.meters.probe import probe, probe_lines, render_probe
from tests.fakes import fake_pynvml as fk
from tests.fakes.fake_pynvml import FakeNvml, make_fake_pynvml
from tests.fakes.powercap import intel_desktop


@pytest.fixture(autouse=True)
def no_cuda_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_a_domain_that_goes_missing_during_the_probe_is_unknown_not_zero(tmp_path):
    tree = intel_desktop(tmp_path, mmio=False)
    nvml = make_fake_pynvml(FakeNvml(init_error=fk.NVML_ERROR_DRIVER_NOT_LOADED))
    # the dram counter vanishes while the probe reads (a meter failing mid-run)
    vanish = threading.Timer(0.15, tree.remove, args=("intel-rapl:0:2",))
    vanish.start()
    try:
        report = probe(0.5, powercap_root=tree.root, pynvml_module=nvml, hz=20)
    finally:
        vanish.cancel()
    (rapl,) = report["meters"]
    domains = {d["domain"]: d for d in rapl["domains"]}
    dram = domains["dram-0"]
    assert "gap" in dram and "vanished" in dram["gap"]
    assert dram["watts"] is None and dram["joules"] is None
    # (a failing read is a gap for every domain of its meter: none of them shows a number)
    assert all(d["watts"] is None and d["joules"] is None for d in domains.values() if "gap" in d)
    printed = json.loads(json.dumps(report, allow_nan=False))  # what `meters --json` prints
    dram_json = next(d for d in printed["meters"][0]["domains"] if d["domain"] == "dram-0")
    assert dram_json["watts"] is None and dram_json["joules"] is None
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(render_probe(report))
    (row,) = [line for line in out.getvalue().splitlines() if "rapl:dram-0" in line]
    assert "unknown" in row and "0.00 W" not in row
    (line,) = [line for line in probe_lines(report) if "dram-0" in line]
    assert "unknown" in line and "0.00 W" not in line
