"""Meters that fail: a counter that vanishes, steps back (a reset) or loses wraps while the worker
was stopped is a gap, never phantom energy, and a phase with a gap gives no per-unit energy.
Real workers reading a fake powercap tree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from engine.core.events import Epoch, Hello, MeterGap, Progress, decode_event
from engine.store.run_log import load_run
from tests.fakes.powercap import PowercapTree, intel_server
from tests.helpers import (
    start_cli,
    start_worker,
    the_run_dir,
    tiny_spec,
)

pytestmark = pytest.mark.slow  # real workers, in subprocesses

RANGE_UJ = 1_000_000_000 - 1  # a 1,000 J counter


MAX_POWER_UW = 100_000_000  # 100 W, so the meter's bound is 200 W: one wrap every 5 s at most


class Hardware(threading.Thread):
    """A package counter that uses `watts` in real time and wraps like the kernel's, while the
    worker reads it through the fake powercap tree. `step_back(uj)` moves it back once (a reset)."""

    def __init__(self, tree: PowercapTree, watts: float) -> None:
        super().__init__(daemon=True)
        self.tree, self.watts = tree, watts
        self.stop = threading.Event()
        self.back = 0

    def run(self) -> None:
        last = time.monotonic()
        value = self.tree.energy("intel-rapl:0")
        while not self.stop.wait(0.01):
            now = time.monotonic()
            value = (value + int(self.watts * (now - last) * 1e6)) % (RANGE_UJ + 1)
            if self.back:
                value, self.back = max(0, value - self.back), 0
            self._write(value)
            last = now

    def _write(self, value: int) -> None:
        # A sysfs read sees a whole value; a rename gives the worker's concurrent reads the same.
        path = self.tree.path("intel-rapl:0")
        tmp = path.with_name(".energy_uj.tmp")
        tmp.write_text(f"{value}\n")
        os.replace(tmp, path)


def powercap(tmp_path: Path) -> PowercapTree:
    tree = PowercapTree(tmp_path / "sys")
    tree.add_zone(
        "intel-rapl:0", "package-0", energy_uj=100_000_000, max_energy_range_uj=RANGE_UJ, max_power_uw=MAX_POWER_UW
    )
    return tree


def test_a_meter_that_fails_mid_run_leaves_a_gap_in_events_and_summary(tmp_path):
    tree = intel_server(tmp_path / "sys", sockets=1)
    spec = tiny_spec(tmp_path / "logs", epochs=50, synthetic_seconds=40.0)
    proc = start_worker(spec, {"JOULELAB_POWERCAP_ROOT": str(tree.root)}, stderr=subprocess.DEVNULL)
    events = []
    removed = False
    for line in proc.stdout:
        event = decode_event(line)
        events.append(event)
        match event:
            case Hello():
                assert any(m["method"] == "rapl:package-0" for m in event.meters)
            case Progress() if not removed:
                tree.remove("intel-rapl:0")  # the package counter vanishes mid-training
                removed = True
            case Epoch() if event.epoch >= 2:
                proc.send_signal(signal.SIGTERM)  # enough: the gap has happened
    assert proc.wait(timeout=60) == 130  # cancelled at epoch 2 of 50
    gaps = [e for e in events if isinstance(e, MeterGap)]
    assert gaps and gaps[0].domain == "package-0" and "energy_uj" in gaps[0].reason
    summary = json.loads((the_run_dir(tmp_path / "logs") / "summary.json").read_text())
    assert "package-0" in summary["meter_gaps"]
    assert summary["phases"]["train"]["energy"]["package-0"]["gap"] is True
    assert summary["phases"]["train"]["energy"]["package-0"]["source"] == "counter"


def test_a_rapl_reset_and_lost_wraps_are_gaps_never_phantom_energy(tmp_path):
    tree = powercap(tmp_path)
    hw = Hardware(tree, watts=50.0)  # a wrap every 20 s
    hw.start()
    spec = tiny_spec(tmp_path / "logs", epochs=200, synthetic_seconds=60.0, sample_hz=10.0)
    proc = start_worker(spec, {"JOULELAB_POWERCAP_ROOT": str(tree.root)})
    try:
        stream = []
        for line in proc.stdout:
            event = decode_event(line)
            stream.append(event)
            gap_count = sum(isinstance(e, MeterGap) for e in stream)
            if isinstance(event, Progress) and event.epoch == 1 and not hw.back and gap_count == 0:
                hw.back = 20_000_000  # 20 J back on a 1,000 J range: a reset, not 980 J
            if gap_count == 1 and isinstance(event, MeterGap):
                os.kill(proc.pid, signal.SIGSTOP)  # 6 s stopped > the 5 s shortest wrap period
                time.sleep(6.0)
                os.kill(proc.pid, signal.SIGCONT)
            if gap_count == 2:
                proc.send_signal(signal.SIGTERM)
                break
        assert proc.wait(timeout=60) == 130
    finally:
        hw.stop.set()
        proc.kill()
    gaps = [e for e in stream if isinstance(e, MeterGap)]
    assert len(gaps) == 2, gaps
    assert "went back" in gaps[0].reason and "a reset, not counted" in gaps[0].reason
    assert "wraps may be lost" in gaps[1].reason
    summary = json.loads((the_run_dir(tmp_path / "logs") / "summary.json").read_text())
    train = summary["phases"]["train"]
    pkg = train["energy"]["package-0"]
    assert pkg["gap"] is True and train["total"]["gap"] == ["package-0"]
    # No phantom energy: at most 50 W of real use over the phase (980 J would have been added).
    assert pkg["gross_j"] <= 50.0 * train["duration_s"] + 1.0
    assert summary["phases"]["idle"]["energy"]["package-0"].get("gap") is None  # only the phase it hit
    # `runs` never shows the phase's net joules as a bare measurement
    listing = start_cli("runs", "--logs", str(tmp_path / "logs")).communicate(timeout=60)[0]
    assert "(gap)" in listing


def test_a_phase_with_a_gap_gives_no_per_unit_energy(tmp_path):
    """A completed run whose train phase had a counter reset: the per-sample joules, stored beside
    their source, would read as a counter measurement; there is none, so there is no value."""
    tree = powercap(tmp_path)
    hw = Hardware(tree, watts=50.0)
    hw.start()
    spec = tiny_spec(tmp_path / "logs", epochs=8, synthetic_seconds=60.0, sample_hz=10.0)
    proc = start_worker(spec, {"JOULELAB_POWERCAP_ROOT": str(tree.root)})
    try:
        for line in proc.stdout:
            event = decode_event(line)
            if isinstance(event, Progress) and event.phase == "train" and event.epoch == 2 and not hw.back:
                hw.back = 20_000_000  # a reset in the middle of the train phase
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        hw.stop.set()
        proc.kill()
    record = load_run(the_run_dir(tmp_path / "logs"))
    summary = record.summary
    assert record.status == "complete" and "package-0" in summary.phases["train"].total.gap
    per_sample, per_inference = summary.metrics.j_per_train_sample, summary.metrics.j_per_inference
    assert per_sample is not None and per_sample.value is None and per_sample.source is None
    # each per-unit value stands exactly when its phase was measured whole, with that phase's source
    test = summary.phases["test"].total
    assert per_inference is not None
    assert (per_inference.value is not None) == test.known
    assert per_inference.source == (test.source if test.known else None)
