"""The sampler: reads every meter on a thread at a fixed rate, and reads them at phase boundaries.

Live samples carry watts (for graphs) and cumulative joules (so no energy is lost by dropping or
merging samples). A phase's energy is *not* a sum of samples: `snapshot()` reads every meter at the
phase's start and end, so for a counter the phase energy is exactly the counter difference.
Sampling still matters for counters: it keeps wraparound tracking fed (see engine.worker.meters.rapl).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypedDict

import msgspec

from engine.core.records import EnergyValue, PhaseTotal
from engine.worker.meters.base import (
    SHORT_PHASE_PERIODS,
    Domain,
    Meter,
    MeterError,
    in_totals,
    uncertainty,
    weakest_source,
)
from engine.worker.meters.contention import ContentionRecord, CpuContention, CpuTimes, contention_between

MIN_HZ = 0.1
MAX_HZ = 100.0
LIVE_CONTENTION_S = 1.0


@dataclass
class Snapshot:
    """Cumulative joules of every domain at one instant, which domains are failing to answer, and
    how many gaps (failures, counter resets, lost wraps) each domain has had so far."""

    t: float
    joules: dict[str, float]
    gaps: frozenset[str] = frozenset()
    gap_counts: dict[str, int] = field(default_factory=dict)
    cpu: CpuTimes | None = None  # the machine's and our CPU time, for contention


@dataclass
class PhaseEnergy:
    """A phase's energy for one domain: gross, the idle share over the same time, and the rest."""

    domain: Domain
    gross_j: float
    idle_j: float
    gap: bool = False  # the meter failed, or its counter reset or lost wraps, in the phase: unreliable
    duration_s: float = 0.0
    update_s: float | None = None  # the meter's update period here, when it differs from the table's

    @property
    def error_rel(self) -> float:
        """The meter's documented relative error plus what the phase's two edges can add."""
        u = uncertainty(self.domain.method)
        update = self.update_s if self.update_s is not None else u.update_s
        edges = 2 * update / self.duration_s if self.duration_s > 0 else 1.0
        return u.relative + edges

    @property
    def short(self) -> bool:
        u = uncertainty(self.domain.method)
        update = self.update_s if self.update_s is not None else u.update_s
        return self.duration_s < SHORT_PHASE_PERIODS * update

    @property
    def net_j(self) -> float:
        return self.gross_j - self.idle_j

    def as_value(self) -> EnergyValue:
        """The phase's record of this domain (engine.core.records.EnergyValue)."""
        return EnergyValue(
            gross_j=self.gross_j,
            idle_j=self.idle_j,
            net_j=self.net_j,
            source=self.domain.source,
            method=self.domain.method,
            kind=self.domain.kind,
            error_rel=self.error_rel,
            gap=self.gap,
            short=self.short,
        )


def idle_watts_from(gross_j: dict[str, float], duration_s: float) -> dict[str, float]:
    """The idle baseline's mean power per domain, from the idle phase's gross joules: what every
    later phase subtracts (the worker's records, a stalled run's rebuilt summary, the live totals)."""
    return {name: j / duration_s for name, j in gross_j.items()} if duration_s > 0 else {}


def idle_energy(idle_w: float, duration_s: float) -> float:
    """The idle share of a phase for one domain: the baseline's power over the phase's time."""
    return idle_w * duration_s


def phase_energy(
    start: Snapshot,
    end: Snapshot,
    domains: dict[str, Domain],
    idle_watts: dict[str, float],
    sample_period: float | None = None,
) -> dict[str, PhaseEnergy]:
    duration = end.t - start.t
    # A domain is a gap for the phase if it was failing at either end or a gap began in between.
    gaps = start.gaps | end.gaps | {n for n, c in end.gap_counts.items() if c > start.gap_counts.get(n, 0)}
    return {
        name: PhaseEnergy(
            domain=domain,
            gross_j=end.joules[name] - start.joules[name],
            idle_j=idle_energy(idle_watts.get(name, 0.0), duration),
            gap=name in gaps,
            duration_s=duration,
            # power polled by the sampler changes only once per sampling period
            update_s=(
                max(sample_period, uncertainty(domain.method).update_s)
                if domain.source == "polled" and sample_period
                else None
            ),
        )
        for name, domain in domains.items()
    }


def phase_total(energies: Iterable[PhaseEnergy]) -> PhaseTotal:
    """Sum of a phase's domains, excluding platform (psys) and cross-check domains, which would
    double count."""
    parts = [e for e in energies if in_totals(e.domain.kind)]
    if not parts:
        return PhaseTotal()
    return PhaseTotal(
        gross_j=sum(e.gross_j for e in parts),
        idle_j=sum(e.idle_j for e in parts),
        net_j=sum(e.net_j for e in parts),
        source=weakest_source(e.domain.source for e in parts),
        methods=sorted(e.domain.method for e in parts),
        # the least precise domain bounds the sum's error (conservative, and simple to state)
        error_rel=max(e.error_rel for e in parts),
        short=any(e.short for e in parts),
        # these domains' energy in the phase is incomplete: not a measurement
        gap=sorted(e.domain.name for e in parts if e.gap),
    )


def sum_energy_records(energy: dict[str, EnergyValue], like: PhaseTotal) -> PhaseTotal:
    """A phase total recomputed from its domain records (after re-modelling), as phase_total."""
    parts = [e for e in energy.values() if in_totals(e.kind)]
    return msgspec.structs.replace(
        like,
        gross_j=sum(e.gross_j for e in parts),
        idle_j=sum(e.idle_j for e in parts),
        net_j=sum(e.net_j for e in parts),
    )


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
