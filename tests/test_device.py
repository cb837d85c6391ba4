"""The device setting: resolution, the synchronisation points, GPU metering through a real worker.

There is no GPU here: CUDA is replaced at its boundary (torch.cuda's answers, or a Device that
claims CUDA while its tensors stay on the CPU; tests/fakes/fake_cuda.py) and NVML by the fake
module, which follows nvidia-ml-py's names, units and errors.
"""

import json
import types

import pytest
import torch

from engine.core.events import Epoch, Error, PhaseEnd, PhaseStart, Sample
from engine.worker.device import Device, DeviceError, resolve_device
from tests.helpers import REPO, events_in, run_worker, the_run_dir, tiny_spec

A = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
B = "GPU-bbbbbbbb-0000-0000-0000-000000000000"


# -- resolution ------------------------------------------------------------------------------


def test_auto_is_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    dev = resolve_device("auto")
    assert (dev.name, dev.is_cuda) == ("cpu", False)
    assert dev.manifest()["why"] == "auto: torch sees no CUDA GPU"
    assert resolve_device("cpu").manifest()["why"] == "asked for"


@pytest.mark.parametrize("requested", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_one_clear_line(monkeypatch, requested):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=rf"^device: '{requested}' needs a CUDA GPU, but ") as e:
        resolve_device(requested)
    assert "\n" not in str(e.value)


def _two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    uuids = ["aaaaaaaa-0000-0000-0000-000000000000", "bbbbbbbb-0000-0000-0000-000000000000"]
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda i: types.SimpleNamespace(
            name=f"NVIDIA H100 #{i}", uuid=uuids[i], major=9, minor=0, total_memory=80 * 10**9
        ),
    )


@pytest.mark.parametrize(
    ("requested", "name", "uuid"), [("auto", "cuda:0", A), ("cuda", "cuda:0", A), ("cuda:1", "cuda:1", B)]
)
def test_auto_and_cuda_pick_a_visible_gpu(monkeypatch, requested, name, uuid):
    _two_gpus(monkeypatch)
    dev = resolve_device(requested)
    assert dev.name == name and dev.is_cuda
    man = dev.manifest()
    assert man["resolved"] == name and man["uuid"] == uuid and man["capability"] == "9.0"
    assert man["name"] == f"NVIDIA H100 #{dev.index}" and man["bf16"] is True


def test_a_gpu_index_out_of_range(monkeypatch):
    _two_gpus(monkeypatch)
    with pytest.raises(DeviceError, match=r"^device: 'cuda:2': torch sees 2 CUDA GPU\(s\) \(cuda:0..cuda:1\)$"):
        resolve_device("cuda:2")


def test_sync_waits_for_cuda_and_is_free_on_the_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    Device("auto", "cpu").sync()
    assert calls == []
    Device("cuda:1", "cuda:1").sync()
    assert calls == ["cuda:1"]


# -- real workers ----------------------------------------------------------------------------


# A machine with no GPU for torch, also on a GPU host (where these would otherwise resolve to CUDA).
NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}


@pytest.mark.slow
def test_auto_resolves_to_the_cpu_and_the_manifest_says_so(tmp_path):
    proc = run_worker(tiny_spec(tmp_path), env=NO_GPU)
    assert proc.returncode == 0, proc.stderr
    run = the_run_dir(tmp_path)
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["device"]["requested"] == "auto" and manifest["device"]["resolved"] == "cpu"
    assert manifest["device"]["why"] == "auto: torch sees no CUDA GPU"
    assert manifest["precision"] == "float32"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["device"]["resolved"] == "cpu" and summary["started_warm"] is None
    assert "nvml_agreement" not in summary["phases"]["train"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"device": "cuda"}, "device: 'cuda' needs a CUDA GPU, but "),
        ({"amp": True}, "amp: mixed precision is not applicable on the CPU (device 'auto' resolved to cpu)"),
    ],
)
def test_a_gpu_setting_on_the_cpu_is_refused_as_bad_input(tmp_path, spec, message):
    proc = run_worker(tiny_spec(tmp_path, **spec), env=NO_GPU)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    events = events_in(proc.stdout)
    errors = [e for e in events if isinstance(e, Error)]
    assert len(errors) == 1 and errors[0].message.startswith(message) and "\n" not in errors[0].message
    assert not [e for e in events if isinstance(e, PhaseStart)]  # refused before anything was metered
    summary = json.loads((the_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith(message)


SYNC_CODE = """
import sys
sys.path.insert(0, {repo!r})
from tests.fakes import fake_cuda
fake_cuda.install({log!r})
from engine.worker.main import main
sys.exit(main([]))
"""


@pytest.mark.slow
def test_the_worker_syncs_at_every_phase_edge_epoch_and_test_timer(tmp_path):
    log = tmp_path / "syncs.log"
    proc = run_worker(
        tiny_spec(tmp_path / "logs", mode="transfer", epochs=2, reuse_source=False),
        code=SYNC_CODE.format(repo=str(REPO), log=str(log)),
    )
    assert proc.returncode == 0, proc.stderr
    syncs = [(float(t), who) for t, who in (line.split() for line in log.read_text().splitlines())]
    events = [e for e in events_in(proc.stdout) if not isinstance(e, Sample)]  # samples come from another thread

    def synced_between(who: str, after: float, before: float) -> bool:
        return any(w == who and after < t < before for t, w in syncs)

    phases = [e.phase for e in events if isinstance(e, PhaseStart)]
    assert phases == ["idle", "warmup", "pretrain", "train", "test"]
    for i, e in enumerate(events):
        match e:
            case PhaseStart():  # the previous work has finished before the phase opens
                assert synced_between("begin_window", events[i - 1].t, e.t), e.phase
            case PhaseEnd():  # this phase's work has finished before it is read
                assert synced_between("end_window", events[i - 1].t, e.t), e.phase
            case Epoch():
                assert synced_between("energy_so_far", events[i - 1].t, e.t), (e.phase, e.epoch)
    assert sum(w == "begin_window" for _, w in syncs) == sum(w == "end_window" for _, w in syncs) == len(phases)
    assert sum(w == "energy_so_far" for _, w in syncs) == 4  # two pretrain epochs, two train epochs
    test_start = next(e.t for e in events if isinstance(e, PhaseStart) and e.phase == "test")
    test_end = next(e.t for e in events if isinstance(e, PhaseEnd) and e.phase == "test")
    timer = [t for t, w in syncs if w == "timed_inference"]
    assert len(timer) >= 2 and all(test_start < t < test_end for t in timer)  # before the clock starts, after each pass


GPU_CODE = """
import sys, threading, time
sys.path.insert(0, {repo!r})
from tests.fakes.fake_pynvml import FakeGpu, FakeNvml, FakeProcess, make_fake_pynvml
from tests.fakes import fake_cuda
state = FakeNvml(gpus=[FakeGpu(uuid={b!r}, energy_mj=0),
                       FakeGpu(uuid={a!r}, energy_mj=0, power_mw=100_000, temperature_c={temp},
                               processes=[FakeProcess(pid=999999)])])
sys.modules["pynvml"] = make_fake_pynvml(state)

def board():  # the run's GPU draws 100 W: its energy counter advances with time
    t0 = time.monotonic()
    while True:
        time.sleep(0.002)
        state.gpus[1].energy_mj = int((time.monotonic() - t0) * 100_000)

threading.Thread(target=board, daemon=True).start()
fake_cuda.install({log!r}, uuid={a!r}, cuda=True)
from engine.worker.main import main
sys.exit(main([]))
"""


@pytest.mark.slow
def test_a_gpu_run_meters_its_gpu_with_both_methods(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    code = GPU_CODE.format(repo=str(REPO), log=str(tmp_path / "syncs.log"), a=A, b=B, temp=40)
    proc = run_worker(tiny_spec(tmp_path / "logs", idle_s=0.5), code=code)
    assert proc.returncode == 0, proc.stderr
    run = the_run_dir(tmp_path / "logs")
    manifest = json.loads((run / "run.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    # the GPU the run uses (NVML's second GPU, matched by UUID) is metered; the other is present, unused
    assert [(m["name"], m["method"], m["kind"]) for m in manifest["meters"] if m["method"].startswith("nvml:")] == [
        ("gpu1", "nvml:gpu1:energy-counter", "gpu"),
        ("gpu1-polled", "nvml:gpu1:power-integrated", "cross-check"),
    ]
    assert manifest["device"]["nvml_domain"] == "gpu1" and manifest["device"]["driver"] == "550.54.15"
    assert manifest["device"]["power_limit_w"] == 400.0 and manifest["device"]["clocks"]["sm_max_mhz"] == 1410
    assert [(u["domain"], u["uuid"]) for u in manifest["device"]["unused_gpus"]] == [("gpu0", B)]
    train = summary["phases"]["train"]
    assert train["energy"]["gpu1"]["source"] == "counter" and train["energy"]["gpu1-polled"]["source"] == "polled"
    both = train["nvml_agreement"]["gpu1"]
    assert both["counter_j"] == pytest.approx(100 * train["duration_s"], rel=0.2)
    assert abs(both["diff_rel"]) < 0.2 and both["short"] is True  # a sub-second phase: under ten 1 s windows
    # the cross-check never enters the total
    assert "nvml:gpu1:power-integrated" not in train["total"]["methods"]
    assert "nvml:gpu1:energy-counter" in train["total"]["methods"]
    # another process on the GPU: recorded beside the CPU contention, per phase
    assert train["gpu_contention"]["gpu1"] == {
        "other_processes": [{"pid": 999999, "used_gpu_memory_mb": 1024.0}],
        "contended": True,
    }
    assert "train" in summary["gpu_contended_phases"]
    # per sample: temperature, SM clock, throttle reasons
    samples = [e for e in events_in(proc.stdout) if isinstance(e, Sample)]
    gpu = samples[-1].gpu if samples else None
    assert gpu is not None and gpu["gpu1"] == {"temp_c": 40, "sm_mhz": 1410, "throttle": 1, "power_w": 100.0}
    # idle before and after; the first run on this GPU sets the baseline
    assert summary["started_warm"] is False and summary["thermal"]["baseline"] is None
    assert summary["thermal"]["idle_before"]["temp_c"] == 40
    assert summary["thermal"]["idle_before"]["power_w"] == pytest.approx(100.0, rel=0.2)
    assert summary["thermal"]["idle_after"]["temp_c"] == 40

    # The next run finds the GPU 20 C warmer than that baseline: it waits cooldown_s, then says it started warm.
    code = GPU_CODE.format(repo=str(REPO), log=str(tmp_path / "syncs2.log"), a=A, b=B, temp=60)
    proc = run_worker(tiny_spec(tmp_path / "logs2", idle_s=0.3, cooldown_s=1.5), code=code)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((the_run_dir(tmp_path / "logs2") / "summary.json").read_text())
    thermal = summary["thermal"]
    assert summary["started_warm"] is True and thermal["baseline"]["temp_c"] == 40
    assert thermal["why_warm"] == ["temperature 60 C > 40 + 3 C"]
    assert 1.4 <= thermal["waited_s"] < 5
