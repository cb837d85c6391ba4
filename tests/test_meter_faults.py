"""Faults, round two (issue #11): counters that step back or lose wraps, stalled workers, full
disks, a summary without its done line. Real workers, real files, real signals."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from engine.core.events import AnyEvent, Done, Hello, MeterGap, Progress, Sample, decode_event
from engine.core.spec import spec_from_dict
from engine.orchestrate.worker_process import run_spec
from engine.store.run_log import list_runs, load_run
from tests.fakes.powercap import PowercapTree
from tests.helpers import start_worker, the_run_dir, tiny_spec
from tests.test_worker_faults import cli, preset_file, training_worker, wait_for

LONG = {"epochs": 200, "synthetic_seconds": 60.0}
RANGE_UJ = 1_000_000_000 - 1  # a 1,000 J counter
MAX_POWER_UW = 100_000_000  # 100 W, so the meter's bound is 200 W: one wrap every 5 s at most


def events_of(run_path: Path) -> list[AnyEvent]:
    return [decode_event(line) for line in (run_path / "events.jsonl").read_text().splitlines()]


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


# -- 1 and 2: a counter that steps back, and wraps lost while the worker was stopped ---------


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
    listing = cli("runs", "--logs", str(tmp_path / "logs")).communicate(timeout=60)[0]
    assert "(gap)" in listing


# -- 3: a stalled worker -------------------------------------------------------------------


def test_a_stopped_worker_is_declared_stalled_cancelled_and_recorded(tmp_path):
    logs = tmp_path / "logs"
    proc = cli("run", str(preset_file(tmp_path, **LONG)), "--logs", str(logs), env={"JOULELAB_STALL_S": "3"})
    worker = training_worker(logs)
    time.sleep(0.5)
    worker.suspend()  # kill -STOP: the worker says nothing any more
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 15
    assert proc.returncode == 1, err
    lines = [line for line in err.splitlines() if "stalled" in line]
    assert len(lines) == 1 and "no event from the worker for 3 s" in lines[0] and "Traceback" not in err
    wait_for(
        lambda: not psutil.pid_exists(worker.pid) or worker.status() == psutil.STATUS_ZOMBIE,
        timeout=5,
        what="the stalled worker to be gone",
    )
    record = load_run(the_run_dir(logs))
    assert record.status == "stalled" and record.summary.error in lines[0]
    train = record.summary.phases["train"]
    assert train.partial is True and train.total.gross_j > 0 and train.total.source == "modelled"
    assert record.summary.phases["idle"].total.gross_j > 0
    events = events_of(record.path)  # the log ends as the CLI said: no torn line, stalled
    assert isinstance(events[-1], Done) and events[-1].status == "stalled"
    listing = cli("runs", "--logs", str(logs)).communicate(timeout=60)[0]
    assert "stalled (train)" in listing


# -- 4: the disk fills during a run --------------------------------------------------------


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def check_log_readable_to_the_last_line(run_path: Path) -> list[AnyEvent]:
    text = (run_path / "events.jsonl").read_text()
    assert text.endswith("\n")
    return [decode_event(line) for line in text.splitlines()]  # every line whole


def test_a_log_that_cannot_grow_mid_run_stops_the_run_with_its_cause(tmp_path):
    logs = tmp_path / "logs"
    cache = tmp_path / "cache"
    proc = cli(
        "run",
        str(preset_file(tmp_path, sample_hz=100.0, **LONG)),
        "--logs",
        str(logs),
        preexec_fn=_limit_file_size(40_000),
        env={"PYTHONDONTWRITEBYTECODE": "1", "JOULELAB_CACHE": str(cache)},
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if "failed" in x]
    assert len(line) == 1 and "file too large while writing" in line[0] and "events.jsonl" in line[0]
    run_path = the_run_dir(logs)
    events = check_log_readable_to_the_last_line(run_path)
    assert any(isinstance(e, Sample) for e in events)
    summary = json.loads((run_path / "summary.json").read_text())  # small enough to fit the limit
    assert summary["status"] == "failed" and "events.jsonl" in summary["error"]
    assert "while writing" in (run_path / "stderr.log").read_text()


def test_a_full_tmpfs_as_logs_stops_the_run_with_no_space_left_and_a_readable_log(tmp_path):
    """The reported case: a small tmpfs as --logs (300 KB there, 120 KB here to fill sooner),
    sampling at 100 Hz; stderr.log is on it too."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        proc = cli(
            "run",
            str(preset_file(tmp_path, sample_hz=100.0, **LONG)),
            "--logs",
            str(mnt),
            "--format",
            "json",
            env={"JOULELAB_CACHE": str(tmp_path / "cache")},
        )
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        assert "Traceback" not in err
        (run,) = json.loads(out)["runs"]
        # the worker stopped itself with its exit code for an unwritable log, and said why
        assert (run["status"], run["exit_code"]) == ("failed", 3)
        assert "no space left on device while writing" in run["error"] and "events.jsonl" in run["error"]
        events = check_log_readable_to_the_last_line(the_run_dir(mnt))
        assert isinstance(events[0], Hello) and any(isinstance(e, Sample) for e in events)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# -- 5: killed between the summary's rename and the done line -------------------------------

KILLED_BEFORE_DONE = """
import os, signal, sys
import engine.worker.main as w
emit = w.EventWriter.emit
def before_done(self, event_type, **fields):
    if event_type == "done":
        os.kill(os.getpid(), signal.SIGKILL)  # the summary is on disk; the done line never comes
    return emit(self, event_type, **fields)
w.EventWriter.emit = before_done
sys.exit(w.main())
"""


def test_a_run_killed_after_its_summary_is_what_its_summary_says(tmp_path):
    spec = spec_from_dict(tiny_spec(tmp_path))
    outcome = asyncio.run(run_spec(spec, command=[sys.executable, "-c", KILLED_BEFORE_DONE]))
    assert outcome.exit_code == -signal.SIGKILL
    assert outcome.status == "complete" and outcome.ok
    assert [r.status for r in list_runs(tmp_path)] == ["complete"]
    assert not isinstance(events_of(outcome.run_path)[-1], Done)


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
