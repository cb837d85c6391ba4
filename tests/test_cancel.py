"""Cancelling a worker that is stopped (SIGSTOP, Ctrl-Z in its terminal): it is woken, so it handles
SIGTERM and writes its own summary, whether the lab started it (WorkerProcess) or follows it
(FollowedRun, a run started elsewhere)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.core.run_files import EVENTS, RUN_JSON, SUMMARY
from engine.core.spec import spec_from_dict
from engine.orchestrate.followed_run import FollowedRun
from engine.orchestrate.worker_process import WorkerProcess
from tests.helpers import REPO, tiny_spec

pytestmark = pytest.mark.slow

LONG = {"epochs": 200, "synthetic_seconds": 60.0}  # trains far longer than the test waits


def wait_until(check, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def training(run_path: Path) -> bool:
    try:
        return '"phase":"train"' in (run_path / EVENTS).read_text().replace(" ", "")
    except OSError:
        return False


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_cancelling_a_stopped_followed_run_wakes_it_and_it_writes_its_summary(tmp_path):
    """A run started elsewhere (in its own session, as the runner starts workers), then stopped."""
    spec = tiny_spec(tmp_path, run_id="followed", **LONG)
    with open(tmp_path / "worker.out", "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.worker"],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True,
            text=True,
        )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec))
    proc.stdin.close()
    run_path = tmp_path / "followed"
    try:
        wait_until(lambda: training(run_path) and (run_path / RUN_JSON).exists(), what="the train phase")
        os.kill(proc.pid, signal.SIGSTOP)
        wait_until(lambda: stopped(proc.pid), 5, "the worker to stop")
        asyncio.run(FollowedRun(run_path).cancel())
        assert proc.wait(10) is not None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # Woken, it wrote its own summary (a stopped worker killed by the grace period's SIGKILL writes
    # none). Whether it finished inside the 1.5 s grace depends on the machine's load: not asserted.
    summary = json.loads((run_path / SUMMARY).read_text())
    assert summary["status"] == "cancelled"


async def test_cancelling_a_stopped_worker_process_wakes_it_and_it_writes_its_summary(tmp_path):
    worker = WorkerProcess(spec_from_dict(tiny_spec(tmp_path, run_id="started", **LONG)))
    await worker.start()
    assert worker.proc is not None
    async for event in worker.events():
        if getattr(event, "phase", None) == "train":
            break
    os.kill(worker.proc.pid, signal.SIGSTOP)
    await asyncio.sleep(0.2)
    await worker.cancel()
    async for _ in worker.events():  # what it wrote while closing its record
        pass
    outcome = await worker.wait()
    assert outcome.status == "cancelled" and outcome.exit_code != -signal.SIGKILL
    assert json.loads((worker.run_path / SUMMARY).read_text())["status"] == "cancelled"
