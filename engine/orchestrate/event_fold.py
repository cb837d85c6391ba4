"""The one fold of a run's events into its state: phase, epoch, watts, joules per phase and domain.

`RunFold` is fed a run's events in order (live from a worker, or read back from events.jsonl) and
holds what every reader needs: the CLI's progress, the Slurm follower, the lab's Live view and
run detail (tui.livestate.RunState adds display-only state), the Prometheus metrics, the summary
the runner writes for a stalled worker, and the lab's past-run power reference. None of them
adds up joules itself.

A finished phase holds exactly the worker's numbers from its phase_end. The phase still open is
measured the way the worker measures one (engine.worker.meters.sampler.phase_energy): the
cumulative joules from the last sample at or before its start to the last sample received, minus
the idle baseline over the same time. Provenance (counter, polled, modelled) follows each domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.core.energy import Domain, PhaseEnergy, Snapshot, idle_watts_from, in_totals, phase_energy, weakest_source
from engine.core.events import (
    AnyEvent,
    Done,
    Epoch,
    Error,
    FinalStatus,
    Hello,
    MachineLoad,
    MeterGap,
    MeterInfo,
    PhaseEnd,
    PhaseStart,
    Progress,
    Result,
    Sample,
)
from engine.core.records import BASELINE_PHASES


@dataclass
class PhaseRow:
    """One phase's joules per domain: while it runs, from the samples' cumulative joules (net of
    the idle baseline as the worker records it); once it ends, exactly the worker's phase_end."""

    phase: str
    start_t: float  # the phase_start event's time
    start: Snapshot | None  # the last sample at or before the start (None: the phase began first)
    net_j: dict[str, float] = field(default_factory=dict)
    gross_j: dict[str, float] = field(default_factory=dict)
    total_net_j: float = 0.0
    total_gross_j: float = 0.0
    duration_s: float = 0.0
    final: bool = False
    partial: bool = False
    ended: PhaseEnd | None = None  # the worker's record of it, once it ended


@dataclass
class RunFold:
    """The state of one run, built only from its events (`update` one at a time, in order)."""

    phase: str | None = None  # the last phase started
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    val_accuracy: float | None = None
    samples_per_s: float | None = None
    watts: dict[str, float] = field(default_factory=dict)  # each domain's last known watts
    sample_w: float | None = None  # the last sample's total watts (known domains in totals), if any
    sources: dict[str, str] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    joules_now: dict[str, float] = field(default_factory=dict)  # cumulative meter joules at the last sample
    joules_at_start: dict[str, float] = field(default_factory=dict)
    first_sample: Snapshot | None = None
    last_sample: Snapshot | None = None
    gap_counts: dict[str, int] = field(default_factory=dict)  # meter_gap events per domain
    status: FinalStatus | None = None  # from `done`
    machine: MachineLoad | None = None  # the last second's contention (a sample's `machine`)
    idle_w: dict[str, float] = field(default_factory=dict)  # the idle baseline, once its phase ended
    rows: dict[str, PhaseRow] = field(default_factory=dict)  # in phase order
    meters: list[MeterInfo] = field(default_factory=list)  # from hello
    missing: list[dict[str, Any]] = field(default_factory=list)
    curve: list[Epoch] = field(default_factory=list)
    metrics: dict[str, Any] | None = None  # the last result's metrics, as the event carries them
    error: str | None = None  # the last error's message
    t0: float | None = None  # the first event's time (the worker's monotonic clock)
    t_last: float | None = None
    events: int = 0

    def update(self, event: AnyEvent) -> None:
        self.events += 1
        self.t0 = event.t if self.t0 is None else self.t0
        self.t_last = event.t if self.t_last is None else max(self.t_last, event.t)
        match event:
            case Sample():
                self._sample(event)
            case Hello():
                self.meters, self.missing = list(event.meters), list(event.missing)
                for m in event.meters:
                    self.sources[m["name"]], self.methods[m["name"]] = m["source"], m["method"]
                    self.kinds[m["name"]] = m.get("kind", "")
            case PhaseStart():
                # One phase is open at a time (PhaseMeter refuses nesting), so a start while another
                # is open means that one was withdrawn with no end (`joulelab measure` hands its
                # provisional phase to the command's own run): it holds no joules of its own
                if (open_row := self.open_row) is not None:
                    del self.rows[open_row.phase]
                self.phase = event.phase
                self.epoch = self.step = None
                self.rows[event.phase] = PhaseRow(event.phase, event.t, self.last_sample)
            case PhaseEnd():
                self._phase_ended(event)
            case Progress():
                self.epoch, self.epochs, self.step, self.steps = event.epoch, event.epochs, event.step, event.steps
                self.loss, self.accuracy, self.samples_per_s = event.loss, event.accuracy, event.samples_per_s
            case Epoch():
                self.val_accuracy = event.val_accuracy
                self.curve.append(event)
            case MeterGap():
                self.gap_counts[event.domain] = self.gap_counts.get(event.domain, 0) + 1
            case Result():
                self.metrics = event.metrics
            case Error():
                self.error = event.message
            case Done():
                self.status = event.status

    def _sample(self, event: Sample) -> None:
        known = []
        for name, d in event.domains.items():
            self.joules_at_start.setdefault(name, d["j"])
            self.joules_now[name] = d["j"]
            if d["w"] is not None:
                self.watts[name] = d["w"]
                if in_totals(self.kinds.get(name)):
                    known.append(d["w"])
            self.sources.setdefault(name, d["source"])
            self.methods.setdefault(name, d["method"])
        self.sample_w = sum(known) if known else None
        if event.machine is not None:
            self.machine = event.machine
        joules = {n: d["j"] for n, d in event.domains.items()}
        self.last_sample = Snapshot(event.t, joules, frozenset(), dict(self.gap_counts))
        if self.first_sample is None:
            self.first_sample = self.last_sample
        self._measure_open_phase()

    def _phase_ended(self, event: PhaseEnd) -> None:
        row = self.rows.get(event.phase) or PhaseRow(event.phase, event.t, None)
        row.final, row.partial, row.ended = True, event.partial, event
        row.duration_s = event.duration_s
        for name, e in event.energy.items():
            row.net_j[name], row.gross_j[name] = e["net_j"], e["gross_j"]
            if e.get("source"):
                self.sources[name] = e["source"]
        row.total_net_j, row.total_gross_j = event.total.get("net_j", 0.0), event.total.get("gross_j", 0.0)
        self.rows[event.phase] = row
        if event.phase == "idle":
            self.idle_w = idle_watts_from(row.gross_j, row.duration_s)

    # -- the open phase ---------------------------------------------------------------------------
    @property
    def open_row(self) -> PhaseRow | None:
        """The phase started and not yet ended, if any."""
        row = self.rows.get(self.phase or "")
        return row if row is not None and not row.final else None

    def domains(self) -> dict[str, Domain]:
        """Every domain seen (hello's meters first), with its provenance and kind."""
        names = [m["name"] for m in self.meters]
        names += [n for n in self.joules_now if n not in names]
        return {n: Domain(n, self.sources.get(n, ""), self.methods.get(n, ""), self.kinds.get(n, "")) for n in names}

    def open_phase_energy(self, *, from_first_sample: bool = True) -> dict[str, PhaseEnergy] | None:
        """The open phase's energy per domain so far, as the worker would record it if the phase
        ended at the last sample; None when it cannot be measured (no open phase, no sample in
        it). A phase that began before the first sample is measured from that sample unless
        `from_first_sample` is False (a rebuilt summary records only what lies wholly inside)."""
        row = self.open_row
        start = row.start if row is not None else None
        if row is not None and start is None and from_first_sample:
            start = self.first_sample
        end = self.last_sample
        if start is None or end is None:
            return None
        domains = {n: d for n, d in self.domains().items() if n in start.joules and n in end.joules}
        idle_w = {} if row is not None and row.phase == "idle" else self.idle_w  # idle is all idle
        return phase_energy(start, end, domains, idle_w)

    def _measure_open_phase(self) -> None:
        row = self.open_row
        energy = self.open_phase_energy()
        if row is None or energy is None:
            return
        for name, e in energy.items():
            row.gross_j[name], row.net_j[name] = e.gross_j, e.net_j
        counted = [e for e in energy.values() if in_totals(e.domain.kind)]
        row.total_gross_j = sum(e.gross_j for e in counted)
        row.total_net_j = sum(e.net_j for e in counted)
        row.duration_s = next(iter(energy.values())).duration_s if energy else 0.0

    # -- what readers show ------------------------------------------------------------------------
    def counted(self) -> list[str]:
        """The domains that add up to the run's totals (no platform, no cross-check)."""
        return [n for n in self.joules_now if in_totals(self.kinds.get(n))]

    @property
    def net_total_j(self) -> float:
        """Net joules of the metered phases so far: what summary.json totals (the idle baseline
        and the unmetered warm-up are in no figure)."""
        return sum(r.total_net_j for p, r in self.rows.items() if p not in BASELINE_PHASES)

    @property
    def total_w(self) -> float:
        return sum(self.watts.get(n, 0.0) for n in self.counted())

    @property
    def total_j(self) -> float:
        return sum(self.joules_now[n] - self.joules_at_start[n] for n in self.counted())

    @property
    def source(self) -> str | None:
        """The weakest provenance among the counted domains (modelled if any is modelled)."""
        known = [self.sources[n] for n in self.counted() if self.sources.get(n)]
        return weakest_source(known) if known else None

    def since_start(self, t: float | None) -> float:
        """Seconds from the run's first event to `t`."""
        if t is None or self.t0 is None:
            return 0.0
        return t - self.t0

    @property
    def elapsed_s(self) -> float:
        return self.since_start(self.t_last)

    def energy_text(self) -> str:
        if not self.joules_now:
            return "waiting for meters"
        mark = "~" if self.source == "modelled" else ""
        return f"{mark}{self.total_w:6.1f} W  {mark}{self.total_j:8.1f} J {self.source}{self.busy_text()}"

    def busy_text(self) -> str:
        """' ! busy: others 48 % CPU' while other processes contend for the machine, else ''."""
        if self.machine is None or not self.machine["contended"]:
            return ""
        share = self.machine["others_cpu_share"] + self.machine["steal_share"]
        return f" ! busy: others {100 * share:.0f} % CPU"

    def progress_text(self) -> str:
        parts = [self.phase or "starting"]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}/{self.epochs}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3f}")
        if self.val_accuracy is not None:
            parts.append(f"val {self.val_accuracy:.1%}")
        return "  ".join(parts)


def fold_events(events: list[AnyEvent]) -> RunFold:
    """A whole log folded (a run read back from its events.jsonl)."""
    fold = RunFold()
    for event in events:
        fold.update(event)
    return fold


def power_trace(events: list[AnyEvent]) -> tuple[list[float], list[float]]:
    """Total watts of each sample that has any (the run's totals: no platform, no cross-check
    domain), by seconds since the run's first event: a past run drawn beside a live one."""
    fold = RunFold()
    t: list[float] = []
    w: list[float] = []
    for event in events:
        fold.update(event)
        if isinstance(event, Sample) and fold.sample_w is not None:
            t.append(fold.since_start(event.t))
            w.append(fold.sample_w)
    return t, w
