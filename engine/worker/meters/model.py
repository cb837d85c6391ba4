"""The modelled meter, for machines with no energy counter (VMs, CI, laptops without root).

CPU:  P_cpu(t)  = u(t) * W_core,  W_core = TDP of one package / that package's physical cores
      (one basis for the table and for --tdp: the table's core count for a CPU it knows, else
      the "cpu cores" that /proc/cpuinfo gives per package)
      where u(t) is the CPU time of the worker's process tree per second of wall time (so 1.0
      means one core busy). Energy is therefore CPU-seconds * W_core, exactly, with no sampling
      error of its own.
DRAM: P_dram(t) = RSS_GB(t) * 0.375 W/GB  (3 W per 8 GB, the figure CodeCarbon uses),
      integrated over the sampler's reads.

Known error: TDP is a thermal design figure, not a measurement. Against RAPL, utilisation x TDP
models are typically off by tens of percent (they ignore frequency, SIMD width, memory stalls and
uncore power, and attribute no idle power to the process). Treat these values as estimates for
comparing runs on one machine, never as absolute joules. Every value says `modelled`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from engine.core.energy import Domain
from engine.worker.meters.base import Meter, MeterError

DRAM_WATTS_PER_GB = 0.375

# Used when the CPU model is not in the table below: a mid-range desktop/server core under load.
DEFAULT_WATTS_PER_CORE = 10.0


@dataclass(frozen=True)
class CpuPower:
    pattern: str  # regex matched against the CPU model name
    tdp_w: float
    cores: int  # physical cores sharing that TDP

    @property
    def watts_per_core(self) -> float:
        return self.tdp_w / self.cores


# A small table of common CPUs (vendor TDP, cores per package). First match wins, so specific
# patterns come before generic ones. Extend it, or pass --tdp, for better estimates.
CPU_TABLE: tuple[CpuPower, ...] = (
    CpuPower(r"EPYC 9654", 360, 96),
    CpuPower(r"EPYC 9554", 360, 64),
    CpuPower(r"EPYC 7763", 280, 64),
    CpuPower(r"EPYC 7742", 225, 64),
    CpuPower(r"EPYC 7543", 225, 32),
    CpuPower(r"AMD EPYC", 280, 64),  # unnamed EPYC (typical in VMs): a 64-core Milan part
    CpuPower(r"Xeon.*Platinum 8480", 350, 56),
    CpuPower(r"Xeon.*Platinum 8380", 270, 40),
    CpuPower(r"Xeon.*Gold 6248", 150, 20),
    CpuPower(r"Xeon.*Gold 6130", 125, 16),
    CpuPower(r"Xeon", 150, 20),
    CpuPower(r"Ryzen 9 7950X", 170, 16),
    CpuPower(r"Ryzen 7 5800X", 105, 8),
    CpuPower(r"Core\(TM\) i9-13900K", 125, 24),
    CpuPower(r"Core\(TM\) i7-12700", 65, 12),
    CpuPower(r"Core\(TM\) i7-1165G7", 28, 4),
    CpuPower(r"Apple M1", 20, 8),
)


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def table_entry(model_name: str) -> CpuPower | None:
    return next((e for e in CPU_TABLE if re.search(e.pattern, model_name)), None)


def watts_per_core(model_name: str, tdp_w: float | None = None, cores: int | None = None) -> tuple[float, str]:
    """Per-core power for the model, and a sentence saying where it came from.

    `tdp_w` and the table mean the same thing: the TDP of one package, shared by that package's
    physical cores. So a given TDP is divided by the table's core count for a CPU the table knows
    (a VM sees only its vCPUs, not the 64 cores that share the package's TDP), else by the
    physical cores per package the machine reports; `cores` overrides both.
    """
    entry = table_entry(model_name)
    if tdp_w is None and entry is not None and cores is None:
        return entry.watts_per_core, f"TDP table: {entry.pattern!r} -> {entry.tdp_w:g} W / {entry.cores} cores"
    if tdp_w is None:
        return DEFAULT_WATTS_PER_CORE, (
            f"CPU {model_name!r} not in the TDP table: default {DEFAULT_WATTS_PER_CORE:g} W per core"
        )
    if cores is not None:
        n, where = cores, "given"
    elif entry is not None:
        n, where = entry.cores, f"TDP table {entry.pattern!r}"
    else:
        n, where = cores_per_package(), "this machine"
    return tdp_w / n, f"TDP {tdp_w:g} W given / {n} physical cores per package ({where})"


def cores_per_package() -> int:
    """Physical cores of one package, from /proc/cpuinfo ("cpu cores"), else all physical cores."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu cores"):
                return max(1, int(line.split(":", 1)[1]))
    except (OSError, ValueError):
        pass
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def descendant_pids(pid: int) -> list[int] | None:
    """Every descendant of `pid`, from /proc/<pid>/task/<tid>/children (a few small reads per process
    of the tree, instead of reading every process on the machine); None where the kernel has no such
    files. A child forked during the walk may be missed: it is found at the next walk."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            if parent == pid:
                return None
            continue  # exited during the walk
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", encoding="ascii") as f:
                    children = [int(c) for c in f.read().split()]
            except FileNotFoundError:
                if parent == pid and tid == str(pid):
                    return None  # no children files here (a kernel without CONFIG_PROC_CHILDREN)
                continue
            except (OSError, ValueError):
                continue
            found += children
            stack += children
    return found


class ProcessTreeCpuTime:
    """CPU seconds used by a process and all its descendants, alive or already reaped, and their
    resident memory. One per metered process: the model meter and the contention probe share it
    (PhaseMeter), so the tree is found once for both.

    Finding the descendants is the costly part, so it is done every RESCAN_S between phase edges
    and at every edge (rescan_soon). A descendant started mid-phase is counted with all its CPU time
    since it started once it is found: within RESCAN_S in the live readings, and always by the
    phase's end (the edge rescans), so a phase's CPU energy includes every descendant alive at its
    end; its memory enters the DRAM model up to RESCAN_S late."""

    RESCAN_S = 2.0

    def __init__(self, pid: int) -> None:
        try:
            self._root = psutil.Process(pid)
        except psutil.Error as exc:
            raise MeterError(f"cannot watch process {pid}: {exc}") from None
        self._children: list[psutil.Process] = []
        self._next_scan = 0.0  # time.monotonic() of the next rescan
        self._scan_lock = threading.Lock()  # the sampler's thread and a phase edge may both ask
        self._last_total = 0.0

    @property
    def pid(self) -> int:
        return int(self._root.pid)

    def rescan_soon(self) -> None:
        """Find the descendants again at the next read (a phase edge)."""
        self._next_scan = 0.0

    def pids(self) -> set[int]:
        """The process and its descendants as of the latest scan (rescanned when due)."""
        self._refresh()
        return {self._root.pid, *(c.pid for c in self._children)}

    def _refresh(self) -> None:
        now = time.monotonic()
        with self._scan_lock:
            if now < self._next_scan:
                return
            self._next_scan = now + self.RESCAN_S
            self._children = self._descendants()

    def _descendants(self) -> list[psutil.Process]:
        pids = descendant_pids(self._root.pid)
        if pids is None:  # no children files: psutil's scan of every process
            try:
                return list(self._root.children(recursive=True))
            except psutil.Error:
                return []
        # keep the Process objects of descendants already known (psutil reads a new one's start time)
        known = {c.pid: c for c in self._children}
        out = []
        for pid in pids:
            proc = known.get(pid)
            if proc is None:
                try:
                    proc = psutil.Process(pid)
                except psutil.Error:
                    continue  # exited since the walk
            out.append(proc)
        return out

    def seconds(self) -> float:
        try:
            t = self._root.cpu_times()
        except psutil.Error as exc:
            raise MeterError(f"process {self._root.pid} vanished: {exc}") from None
        # children_* counts the descendants already waited for; live ones are read directly.
        total = t.user + t.system + t.children_user + t.children_system
        self._refresh()
        for child in self._children:
            try:
                ct = child.cpu_times()
                total += ct.user + ct.system
            except psutil.Error:
                pass
        # A child that exited but is not yet reaped drops out of both sums for a moment; the
        # energy it used reappears once reaped, so hold the total rather than let it step back.
        self._last_total = max(self._last_total, total)
        return self._last_total

    def rss_bytes(self) -> int:
        try:
            rss: int = self._root.memory_info().rss
        except psutil.Error as exc:
            raise MeterError(f"process {self._root.pid} vanished: {exc}") from None
        for child in self._children:
            try:
                rss += child.memory_info().rss
            except psutil.Error:
                pass
        return rss


class ModelMeter(Meter):
    """CPU and DRAM energy estimated from the process tree's CPU time and resident memory."""

    def __init__(
        self, pid: int | None = None, tdp_w: float | None = None, cores: int | None = None, include_dram: bool = True
    ) -> None:
        self.pid = pid or os.getpid()
        self.cpu_model = cpu_model_name()
        self.watts_per_core, self.tdp_note = watts_per_core(self.cpu_model, tdp_w, cores)
        self.tree = ProcessTreeCpuTime(self.pid)  # shared with the contention probe (PhaseMeter)
        self._lock = threading.Lock()
        self._cpu0 = self.tree.seconds()
        self._include_dram = include_dram
        self._dram_j = 0.0
        self._last_t = time.monotonic()
        self._last_rss_gb = self.tree.rss_bytes() / 1e9
        domains = [Domain("cpu", "modelled", "model:tdp-cpu-time", "cpu")]
        if include_dram:
            domains.append(Domain("dram", "modelled", "model:rss-dram", "dram"))
        self.domains = tuple(domains)

    def read(self) -> dict[str, float]:
        with self._lock:
            cpu_j = (self.tree.seconds() - self._cpu0) * self.watts_per_core
            out = {"cpu": cpu_j}
            if self._include_dram:
                now = time.monotonic()
                rss_gb = self.tree.rss_bytes() / 1e9
                # Trapezoid between reads: memory changes slowly against the sampling rate.
                self._dram_j += (self._last_rss_gb + rss_gb) / 2 * DRAM_WATTS_PER_GB * (now - self._last_t)
                self._last_t, self._last_rss_gb = now, rss_gb
                out["dram"] = self._dram_j
            return out

    def basis(self) -> dict[str, dict[str, float]]:
        """What each domain's joules are modelled from, per joule: enough to re-model a stored
        value under another TDP (cpu_s = J / watts_per_core) instead of mixing bases."""
        out = {"cpu": {"watts_per_core": self.watts_per_core}}
        if self._include_dram:
            out["dram"] = {"watts_per_gb": DRAM_WATTS_PER_GB}
        return out

    def manifest(self) -> dict[str, Any]:
        return {
            "meter": "model",
            "cpu_model": self.cpu_model,
            "watts_per_core": self.watts_per_core,
            "tdp_basis": self.tdp_note,
            "dram_watts_per_gb": DRAM_WATTS_PER_GB if self._include_dram else None,
            "formula": "cpu_j = cpu_seconds(process tree) * watts_per_core; "
            "dram_j = integral(rss_gb * dram_watts_per_gb) dt",
        }
