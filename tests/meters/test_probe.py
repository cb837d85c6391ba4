import io
import json
import os

import pytest
from rich.console import Console

from engine.worker.meters.probe import probe, probe_lines, render_probe
from tests.fakes import fake_pynvml as fk
from tests.fakes.fake_pynvml import FakeGpu, FakeNvml, make_fake_pynvml
from tests.fakes.powercap import intel_desktop


@pytest.fixture(autouse=True)
def no_cuda_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def render(renderable) -> str:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(renderable)
    return out.getvalue()


def test_probe_with_rapl_and_a_polled_gpu(tmp_path):
    tree = intel_desktop(tmp_path, psys=True)
    nvml = make_fake_pynvml(FakeNvml(gpus=[FakeGpu(energy_mj=None, power_mw=60_000)]))
    report = probe(0.3, powercap_root=tree.root, pynvml_module=nvml, hz=50)
    json.dumps(report, allow_nan=False)  # --json
    assert [m["meter"] for m in report["meters"]] == ["rapl", "nvml"]
    rapl, gpu = report["meters"]
    assert [d["domain"] for d in rapl["domains"]] == ["package-0", "dram-0", "psys"]
    assert all(d["watts"] == 0.0 for d in rapl["domains"])  # the fake counters stand still
    assert rapl["read_us"] > 0
    (g,) = gpu["domains"]
    assert (g["source"], g["method"]) == ("polled", "nvml:gpu0:power-integrated")
    assert g["watts"] == pytest.approx(60.0, rel=0.05)
    assert report["missing"] == [{"meter": "model", "reason": "not used: RAPL counters measure the CPU"}]
    text = "\n".join(probe_lines(report))
    assert "package-0" in text and "rapl:psys" in text and "Not used:" in text
    shown = render(render_probe(report))
    assert "nvml:gpu0:power-integrated" in shown and "60.0" in shown


def test_probe_on_a_machine_with_nothing_but_the_model(tmp_path):
    nvml = make_fake_pynvml(FakeNvml(init_error=fk.NVML_ERROR_DRIVER_NOT_LOADED))
    report = probe(0.1, powercap_root=tmp_path / "none", pynvml_module=nvml)
    json.dumps(report, allow_nan=False)
    (model,) = report["meters"]
    assert model["meter"] == "model" and "burn" not in model["note"]
    assert {d["source"] for d in model["domains"]} == {"modelled"}
    cpu = next(d for d in model["domains"] if d["domain"] == "cpu")
    assert model["manifest"]["watts_per_core"] > 0
    # the model's watts are CPU time x watts per core: never more than every core busy
    assert 0 <= cpu["watts"] <= model["manifest"]["watts_per_core"] * (os.cpu_count() or 1) * 1.1
    reasons = {m["meter"]: m["reason"] for m in report["missing"]}
    assert "not present" in reasons["rapl"] and "driver is not loaded" in reasons["nvml"]
    shown = render(render_probe(report))
    assert "modelled" in shown and "Not used:" in shown and "rapl:" in shown


def test_probe_time_must_be_positive():
    with pytest.raises(ValueError):
        probe(0)
