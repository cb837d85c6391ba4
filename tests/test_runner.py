"""The async runner against the real worker: streaming, cancelling the process group, crashes."""

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from engine.core.events import Done, Hello, PhaseStart, decode_event
from engine.core.events import Progress as ProgressEvent
from engine.core.spec import spec_from_dict
from engine.orchestrate.plan_runner import (
    PlanEnded,
    PlanRunner,
    PlanStep,
    RunEnded,
    RunEvents,
    RunStarted,
    resume_latest_plan,
)
from engine.orchestrate.worker_process import WorkerProcess, run_spec
from engine.store.run_log import load_run
from tests.helpers import tiny_spec


@pytest.mark.slow
async def test_run_spec_streams_every_event_and_reports_the_outcome(tmp_path):
    seen = []
    outcome = await run_spec(spec_from_dict(tiny_spec(tmp_path)), on_event=seen.append)
    assert outcome.ok and outcome.exit_code == 0
    assert outcome.events == len(seen)
    assert isinstance(seen[0], Hello) and isinstance(seen[-1], Done)
    assert outcome.result is not None
    # the result the runner reports is the one the worker logged, a fraction of 1
    accuracy = outcome.result.metrics["accuracy_frac"]
    assert 0 <= accuracy <= 1 and accuracy == load_run(outcome.run_path).summary.metrics.accuracy_frac
    # the stream the runner saw is exactly the log the worker wrote
    logged = (outcome.run_path / "events.jsonl").read_text().splitlines()
    assert [decode_event(line) for line in logged] == seen
    assert (outcome.run_path / "stderr.log").exists()


@pytest.mark.slow
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
    train = record.summary.phases["train"]
    assert train.partial is True
    assert train.total.gross_j > 0 and train.total.source == "modelled"


@pytest.mark.slow
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


@pytest.mark.slow
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


# --- the typed event schema --------------------------------------------------------------------------


def test_every_golden_event_decodes_to_its_type_and_a_newer_schema_says_so():
    from engine.core.events import EVENT_CLASSES, ProtocolError, Sample
    from engine.store.run_log import read_events

    for log in sorted(Path(__file__).parent.glob("golden/logs/*/events.jsonl")):
        events, bad = read_events(log)
        assert events and bad == 0
        assert {type(e) for e in events} <= set(EVENT_CLASSES)
        sample = next(e for e in events if isinstance(e, Sample))
        assert sample.type == "sample" and sample.domains  # fields read as attributes
    done = '{"v":1,"type":"done","run":"r","t":1.5,"status":"complete","exit_code":0,"added_later":[1]}'
    assert decode_event(done) == Done(run="r", t=1.5, status="complete", exit_code=0)  # unknown fields tolerated
    with pytest.raises(ProtocolError, match="newer than this JouleLab understands"):
        decode_event('{"v":2,"type":"done","run":"r","t":1.5,"status":"complete"}')
    with pytest.raises(ProtocolError, match="newer than this JouleLab understands"):
        decode_event('{"v":2,"type":"meters_v2","run":"r","t":1.5}')  # even one whose type is unknown
    with pytest.raises(ProtocolError, match="status"):
        decode_event('{"v":1,"type":"done","run":"r","t":1.5}')  # a required field missing


# --- the plan runner ---------------------------------------------------------------------------------


def _plan(tmp_path: Path, n: int) -> tuple[list[PlanStep], Path]:
    from engine.orchestrate import plan_files as plans

    steps = [
        PlanStep(spec_from_dict({**tiny_spec(tmp_path), "run_id": f"plan-run-{i}", "seed": i}), "synthetic/small")
        for i in range(n)
    ]
    items = [plans.PlanItem(spec=s.spec.to_dict(), label=f"run {i}", config=s.config) for i, s in enumerate(steps)]
    path = plans.record_plan(tmp_path, "plan-1", "two runs", "lab", items)
    assert path is not None
    return [replace(s, plan_index=i) for i, s in enumerate(steps)], path


@pytest.mark.slow
async def test_a_cancel_while_the_plan_is_held_starts_nothing_more(tmp_path):
    """Hold (the quit dialog is open) keeps the next run from starting; a cancel then ends the plan,
    and the plan file says what happened to each run. Every event comes through, in batches."""
    steps, plan_file = _plan(tmp_path, 2)
    runner = PlanRunner(steps, plan_file=plan_file, flush_s=0.25)
    updates = runner.updates()
    seen = []
    async for update in updates:
        seen.append(update)
        if isinstance(update, RunStarted):
            runner.hold()
        if isinstance(update, RunEnded):
            break
    waiting = asyncio.ensure_future(updates.__anext__())
    await asyncio.sleep(0.3)
    assert runner.waiting_to_start and not waiting.done()  # held: the second run has not started
    runner.cancel()
    end = await waiting
    assert isinstance(end, PlanEnded) and end.stopped and end.cancelled
    assert [o.status for o in end.outcomes] == ["complete"] and len(end.summaries) == 1
    batches = [u for u in seen if isinstance(u, RunEvents)]
    assert isinstance(batches[0].events[0], Hello) and isinstance(batches[-1].events[-1], Done)
    # every event arrived, in order, batched
    logged = (end.outcomes[0].run_path / "events.jsonl").read_text().splitlines()
    assert [e for b in batches for e in b.events] == [decode_event(line) for line in logged]
    record = json.loads(plan_file.read_text())
    assert record["state"] == "stopped"
    assert [(i["run_id"], i["status"]) for i in record["items"]] == [("plan-run-0", "complete"), ("plan-run-1", None)]


@pytest.mark.slow
def test_resume_finishes_a_left_plan_through_the_plan_runner(tmp_path):
    from engine.orchestrate import plan_files as plans

    steps, plan_file = _plan(tmp_path, 2)
    plans.mark_item(plan_file, 0, "plan-run-0", "cancelled")
    plans.close_plan(plan_file, "left")  # quit, leaving it to finish
    assert resume_latest_plan(tmp_path) == 0
    record = json.loads(plan_file.read_text())
    assert record["state"] == "finished"
    assert [i["status"] for i in record["items"]] == ["complete", "complete"]
    assert all(load_run(tmp_path / i["run_id"]).status == "complete" for i in record["items"])


FAKE_WORKER = [sys.executable, "tests/fakes/fake_worker.py", "--rate", "5", "--duration", "3"]


@pytest.mark.slow
@pytest.mark.parametrize("lab", [False, True], ids=["cli-goes-on", "lab-stops"])
async def test_a_run_cancelled_from_elsewhere_ends_the_lab_plan_but_not_the_cli_one(tmp_path, lab):
    """A worker signalled by someone else (x on the run in another lab) ends cancelled. The CLI's
    plan goes on to the next run, as it always did; the lab's stops, as it always did."""
    steps, _ = _plan(tmp_path, 2)
    runner = PlanRunner(steps, command=FAKE_WORKER, stop_on_cancelled_run=lab)
    async for update in runner.updates():
        if isinstance(update, RunEvents) and update.index == 0 and isinstance(update.events[0], Hello):
            os.killpg(update.events[0].pid, signal.SIGTERM)
        if isinstance(update, PlanEnded):
            end = update
    assert not end.cancelled
    statuses = [o.status for o in end.outcomes]
    assert statuses == (["cancelled"] if lab else ["cancelled", "complete"])
    assert end.stopped is lab
