"""The model meter against a real process that burns CPU."""

import subprocess
import sys

import pytest

from engine.worker.meters.model import ModelMeter

# The child waits for "go", burns 0.5 s of its own CPU time, reports the CPU time it used, and
# waits to be released (so the meter can still see it when it reads).
CHILD = r"""
import sys, time
print("ready", flush=True)
sys.stdin.readline()
t0 = time.process_time()
x = 0
while time.process_time() - t0 < 0.5:
    x += 1
print("done", time.process_time() - t0, flush=True)
sys.stdin.readline()
"""


@pytest.mark.slow
def test_modelled_cpu_joules_are_cpu_seconds_times_watts_per_core():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        meter = ModelMeter(pid=child.pid, tdp_w=100.0, cores=10)  # 10 W per core
        assert meter.watts_per_core == 10.0
        child.stdin.write("go\n")
        child.stdin.flush()
        word, burned = child.stdout.readline().split()
        assert word == "done"
        joules = meter.read()["cpu"]
        child.stdin.write("bye\n")
        child.stdin.flush()
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    assert joules > 0
    # /proc reports CPU time in clock ticks (10 ms): allow two ticks of difference.
    assert joules == pytest.approx(float(burned) * 10.0, abs=0.02 * 10.0 + 0.03 * joules)
    sources = {d.name: (d.source, d.method) for d in meter.domains}
    assert sources["cpu"] == ("modelled", "model:tdp-cpu-time")
