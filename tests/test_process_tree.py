"""The run's process tree: found from /proc/<pid>/task/*/children (the same set psutil's scan of
every process finds), shared by the model meter and the contention probe, and rescanned at every
phase edge, so a descendant started mid-phase is in that phase's modelled CPU energy."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from engine.worker.meters.model import ModelMeter, ProcessTreeCpuTime, descendant_pids
from engine.worker.phase_meter import PhaseMeter

# burns CPU for `s` seconds, then stays alive (unreaped) until killed
BURN = (
    "import sys, time\n"
    "end = time.process_time() + float(sys.argv[1])\n"
    "while time.process_time() < end: pass\n"
    "time.sleep(60)"
)


@pytest.mark.slow
def test_the_children_files_find_what_psutils_scan_finds() -> None:
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    try:
        me = psutil.Process()
        deadline = time.monotonic() + 10
        while len(me.children(recursive=True)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        expected = {c.pid for c in me.children(recursive=True)}
        assert len(expected) >= 3  # the shell and its two sleeps (grandchildren)
        assert set(descendant_pids(os.getpid()) or []) == expected
        assert ProcessTreeCpuTime(os.getpid()).pids() == {os.getpid(), *expected}
    finally:
        for c in psutil.Process(shell.pid).children():
            c.kill()
        shell.kill()
        shell.wait()


@pytest.mark.slow
def test_a_child_started_mid_phase_is_in_the_phases_energy(monkeypatch) -> None:
    monkeypatch.setattr(ProcessTreeCpuTime, "RESCAN_S", 3600.0)  # only the edges rescan
    model = ModelMeter(tdp_w=100.0, cores=10, include_dram=False)  # 10 W per core
    meter = PhaseMeter([model], sample_hz=1.0)
    assert meter.sampler.contention is not None and meter.sampler.contention._tree is meter.tree is model.tree
    with meter:
        meter.begin_window("train")
        child = subprocess.Popen([sys.executable, "-c", BURN, "0.4"])
        try:
            proc = psutil.Process(child.pid)
            deadline = time.monotonic() + 20
            while (t := proc.cpu_times()).user + t.system < 0.4 and time.monotonic() < deadline:
                time.sleep(0.02)
            child_s = t.user + t.system
            record = meter.end_window("train")
        finally:
            child.kill()
            child.wait()
    # the child's CPU seconds at 10 W per core, alive and unreaped at the phase's end
    assert child_s >= 0.4 and record.energy["cpu"].gross_j >= 10.0 * child_s * 0.95
