"""Energy and its provenance, as every room reads it: domains, the weakest-source rule, what a
meter can resolve, and the arithmetic of a phase (gross, idle baseline, net) from two snapshots.

The worker's sampler takes the snapshots; a stalled run's summary (rebuilt from its events), the
live totals and the stats read the same definitions, so no two rooms can disagree on a joule.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import msgspec

from engine.core.events import SOURCES
from engine.core.records import (
    TRAINING_PHASES,
    EnergyValue,
    NodeEnergy,
    NodeRecord,
    PerUnitEnergy,
    PhaseRecord,
    PhaseTotal,
)


@dataclass(frozen=True)
class Domain:
    """One thing that uses energy, and how its joules are obtained.

    name:   unique within a run ("package-0", "dram-0", "gpu0", "cpu", "dram")
    source: "counter" (a hardware energy counter), "polled" (power readings integrated over time)
            or "modelled" (an estimate from utilisation; never a measurement)
    method: the exact means, e.g. "rapl:package-0", "nvml:gpu0:energy-counter", "model:tdp-cpu-time"
    kind:   "cpu", "dram", "gpu", "platform" (psys: reported, never added to the others) or
            "cross-check" (a second method for a domain already counted, e.g. NVML's polled power
            beside its energy counter: reported, never added)
    """

    name: str
    source: str
    method: str
    kind: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown energy source {self.source!r}")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


# Kinds reported but never summed into a total: they would count energy twice.
PLATFORM = "platform"
CROSS_CHECK = "cross-check"
NOT_IN_TOTALS = frozenset({PLATFORM, CROSS_CHECK})


def in_totals(kind: str | None) -> bool:
    return kind not in NOT_IN_TOTALS


# From strongest to weakest evidence. A value computed from several inputs is only as strong as
# its weakest input: a sum of a counter and a model is modelled.
SOURCE_STRENGTH = {"counter": 0, "polled": 1, "modelled": 2}


def weakest_source(sources: Iterable[str]) -> str:
    values = list(sources)
    if not values:
        raise ValueError("no sources")
    return max(values, key=SOURCE_STRENGTH.__getitem__)


@dataclass(frozen=True)
class Uncertainty:
    """What a meter cannot resolve, as documented for it (the README's table lists the sources).

    relative: error of one phase's joules that does not cancel when two runs on the same meter
              are compared (a ratio), as a fraction
    update_s: how often the value changes (counter update period, polling period or averaging
              window, CPU-time tick): each phase edge can be off by up to this much time
    """

    relative: float
    update_s: float
    basis: str


# Looked up by method pattern (fnmatch), most specific first.
UNCERTAINTY: tuple[tuple[str, Uncertainty], ...] = (
    (
        "rapl:*",
        Uncertainty(
            0.02,
            0.001,
            "RAPL: counters updated about every 1 ms (Intel SDM vol. 3B, 15.10); "
            "package energy tracks wall-plug measurements within a few percent "
            "(Khan et al., ACM TOMPECS 2018)",
        ),
    ),
    (
        "nvml:*:power-integrated",
        Uncertainty(
            0.05,
            1.0,
            "NVML power: +/-5 % (nvmlDeviceGetPowerUsage); on Ampere "
            "and newer (except GA100) a 1 s average, and on A100/H100 "
            "it samples only part of each second",
        ),
    ),
    (
        "nvml:*",
        Uncertainty(
            0.05,
            0.1,
            "NVML: power accurate to +/-5 % (nvmlDeviceGetPowerUsage); the energy "
            "counter and power readings update about every 100 ms",
        ),
    ),
    (
        "model:tdp-cpu-time*",
        Uncertainty(
            0.10,
            0.01,
            "model: CPU time is exact to a 10 ms tick; power per busy "
            "core varies by about 10 % between workloads at one clock "
            "(an assumption, not a measurement)",
        ),
    ),
    (
        "model:*",
        Uncertainty(
            0.10,
            0.0,
            "model: resident memory x 0.375 W/GB, read at every phase edge (an assumption, not a measurement)",
        ),
    ),
)

# A phase shorter than this many update periods is flagged `short`: its edges alone can be off by
# more than 10 %.
SHORT_PHASE_PERIODS = 10


def uncertainty(method: str) -> Uncertainty:
    for pattern, value in UNCERTAINTY:
        if fnmatch.fnmatchcase(method, pattern):
            return value
    return Uncertainty(0.10, 0.1, "unknown meter: assumed like the model")


# More than 10 % of the machine's CPU capacity used by others (or stolen) during a phase. One
# busy process on a 2-core machine is 50 %; a quiet desktop with a browser open is 1-5 %.
CONTENDED_SHARE = 0.10


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU seconds at one instant: the whole machine's busy and stolen time, ours."""

    t: float
    machine_busy_s: float
    steal_s: float
    own_s: float


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


def per_unit_energy(
    records: Mapping[str, PhaseRecord], train_samples: int | None, inferences: int | None
) -> tuple[PerUnitEnergy, PerUnitEnergy]:
    """Net joules per training sample (train and prune) and per inference (test), only from
    totals that are measurements (no meter gap), labelled with the weakest source they come from."""
    training = [records[p].total for p in TRAINING_PHASES if p in records]
    train_known = bool(training) and all(t.known for t in training)
    train_net = sum(t.net_j for t in training)
    train_source = weakest_source(t.source for t in training if t.source is not None) if train_known else None
    per_sample = PerUnitEnergy(
        value=train_net / train_samples if train_samples and train_known else None,
        source=train_source,
    )
    test = records["test"].total if "test" in records else None
    test_known = test is not None and test.known
    per_inference = PerUnitEnergy(
        value=test.net_j / inferences if test is not None and inferences and test_known else None,
        source=test.source if test is not None and test_known else None,
    )
    return per_sample, per_inference


# -- a run over several nodes ----------------------------------------------------------------
def node_domain(node_rank: int, domain: str) -> str:
    """A node's domain as the run's summary names it: "node1:package-0" (hosts may repeat)."""
    return f"node{node_rank}:{domain}"


def sum_totals(totals: list[PhaseTotal]) -> PhaseTotal:
    """Phase totals of several nodes summed, with the weakest source and the widest error."""
    measured = [t for t in totals if t.source is not None]
    return PhaseTotal(
        gross_j=sum(t.gross_j for t in totals),
        idle_j=sum(t.idle_j for t in totals),
        net_j=sum(t.net_j for t in totals),
        source=weakest_source(t.source for t in measured if t.source is not None) if measured else None,
        methods=sorted({m for t in totals for m in t.methods}),
        error_rel=max((t.error_rel for t in totals if t.error_rel is not None), default=None),
        short=any(t.short for t in totals),
        gap=[g for t in totals for g in t.gap],
    )


def gather_nodes(nodes: list[NodeRecord], expected: int) -> tuple[dict[str, PhaseRecord], list[NodeEnergy], str | None]:
    """A multi-node run's phases from its nodes' records: each phase's domains under their node's
    name and its total the nodes' sum; every node's own totals and provenance; and a note when the
    total mixes methods (a node with counters beside one modelled) or a node never reported (its
    energy is a gap in every phase: the total is not a measurement).

    `nodes` are the records that arrived; `expected` how many nodes the run had."""
    by_rank = {n.node_rank: n for n in nodes}
    missing = [r for r in range(expected) if r not in by_rank]
    names = [p for n in sorted(nodes, key=lambda n: n.node_rank) for p in n.phases]
    phases: dict[str, PhaseRecord] = {}
    for name in dict.fromkeys(names):
        parts = [(n.node_rank, n.phases[name]) for n in nodes if name in n.phases]
        first = min(parts, key=lambda p: p[0])[1]  # the leader's node: contention as it saw it
        absent = [f"node{r}:not reported" for r in sorted(set(range(expected)) - {r for r, _ in parts})]
        total = sum_totals(
            [
                msgspec.structs.replace(rec.total, gap=[node_domain(r, g) for g in rec.total.gap])
                for r, rec in sorted(parts, key=lambda p: p[0])
            ]
        )
        phases[name] = msgspec.structs.replace(
            first,
            duration_s=max(rec.duration_s for _, rec in parts),  # the edges are barriers: equal but for jitter
            energy={
                node_domain(r, d): e for r, rec in sorted(parts, key=lambda p: p[0]) for d, e in rec.energy.items()
            },
            total=msgspec.structs.replace(total, gap=total.gap + absent),
            partial=any(rec.partial for _, rec in parts),
        )
    entries = [
        NodeEnergy(
            node_rank=n.node_rank,
            host=n.host,
            rank=n.rank,
            source=weakest_source(m.source for m in n.meters if in_totals(m.kind)) if n.meters else None,
            meters=sorted({m.method for m in n.meters}),
            phases={p: rec.total for p, rec in n.phases.items()},
        )
        for n in sorted(nodes, key=lambda n: n.node_rank)
    ] + [NodeEnergy(node_rank=r, reported=False) for r in missing]
    entries.sort(key=lambda e: e.node_rank)
    notes = []
    sources = {e.source for e in entries if e.source is not None}
    if len(sources) > 1:
        each = ", ".join(f"node{e.node_rank} ({e.host}) {e.source}" for e in entries if e.source)
        notes.append(
            f"the total over {expected} nodes mixes methods ({each}): it is labelled with the weakest, "
            f"{weakest_source(sources)}"
        )
    if missing:
        notes.append(
            "no record from "
            + ", ".join(f"node{r}" for r in missing)
            + ": its energy is unknown, so the total is a gap"
        )
    return phases, entries, "; ".join(notes) or None
