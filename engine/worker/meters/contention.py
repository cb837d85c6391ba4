"""Contention: how much of the machine other processes used while a phase ran.

A run shares its machine. Other processes' CPU time does not enter a modelled value directly
(the model counts only our process tree), but it slows our threads, heats the package that a
RAPL counter meters whole, and makes spinning threads burn time. So every phase records:

    others_cpu_share = (busy CPU time of the whole machine - our process tree's) / (wall x CPUs)
    steal_share      = time the hypervisor gave our vCPUs to someone else / (wall x CPUs)

from /proc/stat (all CPUs) and the process tree's own CPU time. A phase is `contended` when
others_cpu_share + steal_share exceeds CONTENDED_SHARE: above it, one other busy process on a
small machine has taken cores the run's threads would use. On a GPU, other processes on the same
device are recorded by the NVML meter.
"""

from __future__ import annotations

import os
from typing import TypedDict

from engine.core.energy import CONTENDED_SHARE, CpuTimes
from engine.worker.meters.model import ProcessTreeCpuTime

PROC_STAT = "/proc/stat"


class ContentionRecord(TypedDict):
    """Other processes' share of the machine's CPU over a window (a phase, or a live sample's)."""

    others_cpu_share: float
    steal_share: float
    own_cpu_share: float
    cpus: int
    contended: bool
    threshold: float


def contention_between(start: CpuTimes, end: CpuTimes, cpus: int) -> ContentionRecord | None:
    """The phase's contention record, or None when the window is empty."""
    capacity = (end.t - start.t) * cpus
    if capacity <= 0:
        return None
    own = end.own_s - start.own_s
    others = max(0.0, (end.machine_busy_s - start.machine_busy_s) - own)
    steal = max(0.0, end.steal_s - start.steal_s)
    others_share, steal_share = min(1.0, others / capacity), min(1.0, steal / capacity)
    return {
        "others_cpu_share": others_share,
        "steal_share": steal_share,
        "own_cpu_share": min(1.0, own / capacity),
        "cpus": cpus,
        "contended": others_share + steal_share > CONTENDED_SHARE,
        "threshold": CONTENDED_SHARE,
    }


class CpuContention:
    """Reads /proc/stat and our process tree's CPU time; cheap enough for every sample."""

    def __init__(
        self, pid: int | None = None, proc_stat: str = PROC_STAT, tree: ProcessTreeCpuTime | None = None
    ) -> None:
        self._proc_stat = proc_stat
        # the model meter's tree when there is one (one scan of the descendants for both)
        self._tree = tree or ProcessTreeCpuTime(pid or os.getpid())
        self._tick = os.sysconf("SC_CLK_TCK")
        self.cpus = self._count_cpus()

    def _count_cpus(self) -> int:
        with open(self._proc_stat, encoding="ascii") as f:
            return sum(1 for line in f if line.startswith("cpu") and line[3:4].isdigit()) or 1

    def read(self, t: float) -> CpuTimes:
        with open(self._proc_stat, encoding="ascii") as f:
            fields = f.readline().split()
        # cpu user nice system idle iowait irq softirq steal guest guest_nice (guest time is
        # already inside user and nice, so it is not added again)
        values = [int(v) for v in fields[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = values + [0] * (8 - len(values))
        busy = (user + nice + system + irq + softirq) / self._tick
        return CpuTimes(t, busy, steal / self._tick, self._tree.seconds())


def open_contention(pid: int | None = None, tree: ProcessTreeCpuTime | None = None) -> CpuContention | None:
    """A probe (over `tree` when given), or None where /proc/stat is not there to read (not Linux)."""
    try:
        return CpuContention(pid, tree=tree)
    except (OSError, ValueError):
        return None
