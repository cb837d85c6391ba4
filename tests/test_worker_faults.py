"""A worker that dies, is interrupted, stalls, loses its reader or runs beside another: nothing
lost, nothing hangs, every end says what happened. Real workers, real signals."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from engine.core.events import AnyEvent, Done, Hello, PhaseStart, Progress, decode_event
from engine.core.spec import spec_from_dict
from engine.orchestrate.worker_process import run_spec
from engine.store.run_log import list_runs, load_run
from tests.helpers import (
    LONG,
    preset_file,
    run_worker,
    start_cli,
    start_worker,
    the_run_dir,
    tiny_spec,
    training_worker,
    wait_until,
)

pytestmark = pytest.mark.slow  # real workers and the real CLI, in subprocesses


def events_of(run_path: Path) -> list[AnyEvent]:
    return [decode_event(line) for line in (run_path / "events.jsonl").read_text().splitlines()]


def test_sigkilled_worker_is_crashed_with_its_events_and_the_cli_exits_1(tmp_path):
    logs = tmp_path / "logs"
    proc = start_cli("run", str(preset_file(tmp_path, **LONG)), "--logs", str(logs))
    worker = training_worker(logs)
    worker.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    crash_lines = [line for line in err.splitlines() if "crashed" in line]
    assert len(crash_lines) == 1 and "SIGKILL" in crash_lines[0]
    assert "Traceback" not in err
    record = load_run(the_run_dir(logs))
    assert record.status == "crashed" and record.last_phase == "train"
    events = [decode_event(line) for line in (record.path / "events.jsonl").read_text().splitlines()]
    assert isinstance(events[0], Hello) and any(isinstance(e, Progress) for e in events)
    assert not psutil.pid_exists(worker.pid) or worker.status() == psutil.STATUS_ZOMBIE
    # `joulelab runs` lists it as crashed, with the phase it reached
    listing = start_cli("runs", "--logs", str(logs))
    assert "crashed (train)" in listing.communicate(timeout=60)[0]


def test_ctrl_c_cancels_the_run_keeps_partial_energy_and_leaves_no_process(tmp_path):
    logs = tmp_path / "logs"
    proc = start_cli("run", str(preset_file(tmp_path, **LONG)), "--logs", str(logs))
    worker = training_worker(logs)
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    wait_until(
        lambda: not psutil.pid_exists(worker.pid) or worker.status() == psutil.STATUS_ZOMBIE,
        timeout=2.5,
        what="the worker to be gone",
    )
    assert time.monotonic() - t0 < 5
    record = load_run(the_run_dir(logs))
    assert record.status == "cancelled"
    train = record.summary.phases["train"]
    assert train.partial is True and train.total.gross_j > 0 and train.total.source == "modelled"


def test_worker_finishes_its_run_when_the_reader_disappears(tmp_path):
    proc = start_worker(tiny_spec(tmp_path, epochs=3), stderr=subprocess.DEVNULL)
    for line in proc.stdout:
        if isinstance(decode_event(line), PhaseStart):
            break
    proc.stdout.close()  # the SSH session dropped: nobody reads the stream any more
    assert proc.wait(timeout=120) == 0
    record = load_run(the_run_dir(tmp_path))
    assert record.status == "complete" and record.summary.reader_lost is True
    lines = (record.path / "events.jsonl").read_text().splitlines()
    assert isinstance(decode_event(lines[-1]), Done)  # the log went on to the end


def test_two_runs_at_once_write_separate_uncorrupted_logs(tmp_path):
    results = []
    threads = [
        threading.Thread(target=lambda s=seed: results.append(run_worker(tiny_spec(tmp_path, seed=s))))
        for seed in (1, 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0]
    runs = list_runs(tmp_path)
    assert len(runs) == 2 and {r.status for r in runs} == {"complete"}
    for r in runs:
        events = [decode_event(line) for line in (r.path / "events.jsonl").read_text().splitlines()]
        assert {e.run for e in events} == {r.run_id}
        assert not list(r.path.glob(".summary.json*"))  # no temporary left behind


# -- a stalled worker -------------------------------------------------------------------


def test_a_stopped_worker_is_declared_stalled_cancelled_and_recorded(tmp_path):
    logs = tmp_path / "logs"
    proc = start_cli("run", str(preset_file(tmp_path, **LONG)), "--logs", str(logs), env={"JOULELAB_STALL_S": "3"})
    worker = training_worker(logs)
    time.sleep(0.5)
    worker.suspend()  # kill -STOP: the worker says nothing any more
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 15
    assert proc.returncode == 1, err
    lines = [line for line in err.splitlines() if "stalled" in line]
    assert len(lines) == 1 and "no event from the worker for 3 s" in lines[0] and "Traceback" not in err
    wait_until(
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
    listing = start_cli("runs", "--logs", str(logs)).communicate(timeout=60)[0]
    assert "stalled (train)" in listing


# -- killed between the summary's rename and the done line -------------------------------

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
