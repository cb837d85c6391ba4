"""A process's identity: its pid and its start time, so that a pid reused by another program is
never taken for a run's worker (the worker records both in run.json; readers compare them)."""

from __future__ import annotations


def process_started(pid: int) -> float | None:
    """The start time psutil gives a process, or None when it is gone."""
    try:
        import psutil

        started: float = psutil.Process(pid).create_time()
    except Exception:
        return None
    return started


def same_process_alive(pid: int | None, pid_started: float | None) -> bool:
    """The process `pid` is alive, not a zombie, and (when its start time was recorded) the same
    process as then: a pid reused by another program is not it."""
    if not pid:
        return False
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return pid_started is None or abs(proc.create_time() - pid_started) < 0.05
    except Exception:
        return False
