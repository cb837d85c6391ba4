"""The launcher's view of its ranks' ends (engine.worker.ranks.ExitWatch): how each child ended,
read before its parent reaps it, so the leader can say which rank died and how."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from engine.worker.ranks import ExitWatch, rank_exits
from tests.helpers import wait_until


def both(exits):
    return {e.pid: e for e in exits} if len(exits) == 2 else None


@pytest.mark.slow  # two tiny child processes, about 0.4 s
def test_a_killed_child_and_one_that_exits_are_told_apart_and_stay_waitable(tmp_path):
    path = tmp_path / "rank-exits.json"
    watch = ExitWatch(path)
    watch.start()
    try:
        killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        failed = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(0.3); sys.exit(3)"])
        wait_until(lambda: killed.pid in watch.alive, timeout=10, what="the watcher to see the child")
        killed.send_signal(signal.SIGKILL)
        exits = wait_until(lambda: both(rank_exits(path)), timeout=20, what="both exits on file")
    finally:
        watch.stop()
    assert exits[killed.pid].how == "killed by SIGKILL" and exits[killed.pid].code is None
    assert exits[failed.pid].how == "exit code 3" and exits[failed.pid].code == 3 and exits[failed.pid].seen
    assert killed.wait(5) == -signal.SIGKILL and failed.wait(5) == 3  # still the parent's to reap
    assert rank_exits(None) == [] and rank_exits(tmp_path / "none.json") == []
