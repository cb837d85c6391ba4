"""The sampler: reads every meter on a thread at a fixed rate, and reads them at phase boundaries.

Live samples carry watts (for graphs) and cumulative joules (so no energy is lost by dropping or
merging samples). A phase's energy is *not* a sum of samples: `snapshot()` reads every meter at the
phase's start and end, so for a counter the phase energy is exactly the counter difference.
Sampling still matters for counters: it keeps wraparound tracking fed (see engine.worker.meters.rapl).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

from engine.core.energy import CpuTimes, Domain, Snapshot
from engine.worker.meters.base import Meter, MeterError
from engine.worker.meters.contention import ContentionRecord, CpuContention, contention_between

MIN_HZ = 0.1
MAX_HZ = 100.0
LIVE_CONTENTION_S = 1.0


class DomainSample(TypedDict):
    """One domain in a live sample: watts since the previous sample (None for the first) and
    cumulative joules."""

    w: float | None
    j: float
    source: str
    method: str


# A live sample's domains, and the machine's CPU contention over the last window (None until one
# has passed, or where /proc/stat cannot be read).
SampleFn = Callable[[dict[str, DomainSample], ContentionRecord | None], None]


@dataclass
class Sampler:
    meters: list[Meter]
    hz: float
    on_sample: SampleFn = lambda domains, machine: None
    on_gap: Callable[[str, str], None] = lambda domain, reason: None
    contention: CpuContention | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _last: dict[str, float] = field(default_factory=dict)
    _failing: set[str] = field(default_factory=set)
    _gap_count: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not MIN_HZ <= self.hz <= MAX_HZ:
            raise ValueError(f"sampling rate {self.hz} Hz out of range {MIN_HZ}-{MAX_HZ}")
        self.domains: dict[str, Domain] = {d.name: d for m in self.meters for d in m.domains}
        self._prev: Snapshot | None = None
        # Live contention is computed over windows of at least LIVE_CONTENTION_S: a 0.1 s window
        # of jiffy-resolution counters would be mostly rounding.
        self._machine_ref: CpuTimes | None = None
        self.machine: ContentionRecord | None = None

    def snapshot(self) -> Snapshot:
        """Read every meter now. A failing meter keeps its last value and is reported as a gap."""
        with self._lock:
            t = time.monotonic()
            for meter in self.meters:
                names = [d.name for d in meter.domains]
                try:
                    self._last.update(meter.read())
                    self._failing.difference_update(names)
                    for name, reason in meter.take_gaps().items():  # answered, but energy unknown
                        self._gap(name, reason)
                except MeterError as exc:
                    for name in names:
                        self._last.setdefault(name, 0.0)
                        if name not in self._failing:
                            self._failing.add(name)
                            self._gap(name, str(exc))
            cpu = None
            if self.contention is not None:
                try:
                    cpu = self.contention.read(t)
                except (OSError, ValueError, MeterError):
                    cpu = None  # contention is context, not energy: a failed read only loses the flag
            return Snapshot(t, dict(self._last), frozenset(self._failing), dict(self._gap_count), cpu)

    def _gap(self, name: str, reason: str) -> None:
        self._gap_count[name] = self._gap_count.get(name, 0) + 1
        self.on_gap(name, reason)

    def sample(self) -> dict[str, DomainSample]:
        """Take a snapshot and turn it into per-domain watts since the previous sample."""
        snap = self.snapshot()
        prev, self._prev = self._prev, snap
        dt = snap.t - prev.t if prev else 0.0
        out: dict[str, DomainSample] = {}
        for name, domain in self.domains.items():
            j = snap.joules[name]
            w = (j - prev.joules[name]) / dt if prev and dt > 0 else None
            out[name] = {"w": w, "j": j, "source": domain.source, "method": domain.method}
        if snap.cpu is not None and self.contention is not None:  # the CPU times come from it
            ref = self._machine_ref
            if ref is None:
                self._machine_ref = snap.cpu
            elif snap.cpu.t - ref.t >= LIVE_CONTENTION_S:
                self.machine = contention_between(ref, snap.cpu, self.contention.cpus)
                self._machine_ref = snap.cpu
        return out

    def _loop(self) -> None:
        period = 1.0 / self.hz
        next_t = time.monotonic()
        while not self._stop.is_set():
            domains = self.sample()
            if any(v["w"] is not None for v in domains.values()):
                self.on_sample(domains, self.machine)
            next_t += period
            # Fixed-rate schedule; if we fell behind (a long GC pause), skip ahead rather than burst.
            delay = next_t - time.monotonic()
            if delay < 0:
                next_t = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def start(self) -> None:
        self.sample()  # prime: the first live sample then has a rate
        self._thread = threading.Thread(target=self._loop, name="joulelab-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for meter in self.meters:
            meter.close()

    def gaps(self) -> frozenset[str]:
        return frozenset(self._gap_count)  # every domain that ever had a gap
