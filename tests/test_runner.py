"""The async runner against the real worker: streaming, cancelling the process group, crashes."""

import asyncio
import os
import signal
import sys
import time

import psutil
import pytest

from engine.protocol import Done, Hello, PhaseStart, decode_event
from engine.protocol import Progress as ProgressEvent
from engine.runner import WorkerProcess, run_spec
from engine.spec import spec_from_dict
from engine.store import load_run
from tests.helpers import tiny_spec


async def test_run_spec_streams_every_event_and_reports_the_outcome(tmp_path):
    seen = []
    outcome = await run_spec(spec_from_dict(tiny_spec(tmp_path)), on_event=seen.append)
    assert outcome.ok and outcome.exit_code == 0
    assert outcome.events == len(seen)
    assert isinstance(seen[0], Hello) and isinstance(seen[-1], Done)
    assert outcome.result is not None and outcome.result.metrics["accuracy"] >= 0
    # the stream the runner saw is exactly the log the worker wrote
    logged = (outcome.run_path / "events.jsonl").read_text().splitlines()
    assert [decode_event(line) for line in logged] == seen
    assert (outcome.run_path / "stderr.log").exists()


async def test_cancel_stops_the_whole_group_within_two_seconds_and_keeps_partial_energy(tmp_path):
    spec = spec_from_dict(tiny_spec(tmp_path, epochs=200, synthetic_seconds=60.0))
    worker = WorkerProcess(spec)
    await worker.start()
    pid = worker.proc.pid
    async for event in worker.events():
        if isinstance(event, PhaseStart) and event.phase == "train":
            break
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    await worker.cancel()
    # drain what the worker wrote while closing its record
    async for _ in worker.events():
        pass
    outcome = await worker.wait()
    assert time.monotonic() - t0 < 2.0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    assert outcome.status == "cancelled"
    record = load_run(outcome.run_path)
    assert record.status == "cancelled"
    train = record.summary["phases"]["train"]
    assert train["partial"] is True
    assert train["total"]["gross_j"] > 0 and train["total"]["source"] == "modelled"


async def test_a_killed_worker_is_a_crash_with_its_events_kept(tmp_path):
    spec = spec_from_dict(tiny_spec(tmp_path, epochs=200, synthetic_seconds=60.0))
    worker = WorkerProcess(spec)
    await worker.start()
    async for event in worker.events():
        if isinstance(event, ProgressEvent):
            os.kill(worker.proc.pid, signal.SIGKILL)
            break
    async for _ in worker.events():
        pass
    outcome = await worker.wait()
    assert outcome.status == "crashed"
    assert "SIGKILL" in outcome.error
    record = load_run(outcome.run_path)
    assert record.status == "crashed" and record.last_phase == "train"
    assert record.summary is None
    lines = (outcome.run_path / "events.jsonl").read_text().splitlines()
    assert len(lines) >= outcome.events  # everything the runner saw was logged first


async def test_malformed_lines_on_the_stream_are_skipped_counted_and_logged(tmp_path):
    script = tmp_path / "noisy_worker.py"
    script.write_text(
        "import sys, json, time\n"
        "spec = json.load(sys.stdin)\n"
        "ev = lambda **f: print(json.dumps({'v': 1, 'run': spec['run_id'], 't': time.monotonic(), **f}), flush=True)\n"
        "ev(type='hello')\n"
        "print('this is not json', flush=True)\n"
        "print(json.dumps({'v': 99, 'type': 'done'}), flush=True)\n"
        "ev(type='done', status='complete', exit_code=0)\n"
    )
    spec = spec_from_dict(tiny_spec(tmp_path / "logs"))
    outcome = await run_spec(spec, command=[sys.executable, str(script)])
    assert outcome.events == 2 and outcome.bad_lines == 2
    assert outcome.status == "complete"
    assert "skipped a malformed event line" in (outcome.run_path / "stderr.log").read_text()
