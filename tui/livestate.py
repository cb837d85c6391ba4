"""The live state of one run, folded from its events.

`engine.runs.LiveTotals` is the one fold of events into what a person watches (phase, epoch,
watts, running joules, provenance); the CLI's progress reads it too. `RunState` extends it with
what only the lab shows: joules per phase *and domain* net of the idle baseline while they
accumulate, the phase boundaries for the graph, and elapsed/remaining time. Times are the worker's
monotonic event times, so a replayed stream shows exactly what the live one did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.meters.base import weakest_source
from engine.protocol import AnyEvent, Epoch, Error, Hello, MeterInfo, PhaseEnd, PhaseStart, Result, Sample
from engine.report import SOURCE_MARK
from engine.runs import LiveTotals


@dataclass
class PhaseRow:
    phase: str
    start_t: float
    start_j: dict[str, float]
    net_j: dict[str, float] = field(default_factory=dict)
    gross_j: dict[str, float] = field(default_factory=dict)
    total_net_j: float = 0.0
    total_gross_j: float = 0.0
    duration_s: float = 0.0
    final: bool = False
    partial: bool = False


@dataclass
class RunState(LiveTotals):
    t0: float | None = None
    t_last: float | None = None
    meters: list[MeterInfo] = field(default_factory=list)  # from hello
    missing: list[dict[str, Any]] = field(default_factory=list)
    idle_w: dict[str, float] = field(default_factory=dict)
    rows: dict[str, PhaseRow] = field(default_factory=dict)  # in phase order
    boundaries: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, phase)
    curve: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    events_seen: int = 0

    def update(self, event: AnyEvent) -> None:
        super().update(event)
        self.events_seen += 1
        t = event.t
        if event.run:
            if self.t0 is None:
                self.t0 = t
            self.t_last = t if self.t_last is None else max(self.t_last, t)
        match event:
            case Hello():
                self.meters = list(event.meters)
                self.missing = list(event.missing)
            case PhaseStart(phase=phase):
                self.rows[phase] = PhaseRow(phase, t, dict(self.joules_now))
                self.boundaries.append((self.since_start(t), phase))
            case PhaseEnd(phase=phase):
                row = self.rows.get(phase) or PhaseRow(phase, t, {})
                row.final, row.partial = True, event.partial
                row.duration_s = event.duration_s
                for name, e in event.energy.items():
                    row.net_j[name], row.gross_j[name] = e["net_j"], e["gross_j"]
                    self.sources[name] = e.get("source", self.sources.get(name))
                total = event.total
                row.total_net_j, row.total_gross_j = total.get("net_j", 0.0), total.get("gross_j", 0.0)
                self.rows[phase] = row
                if phase == "idle" and row.duration_s > 0:
                    self.idle_w = {n: g / row.duration_s for n, g in row.gross_j.items()}
            case Sample():
                self._running_phase()
            case Epoch():
                self.curve.append(
                    {
                        "phase": event.phase,
                        "epoch": event.epoch,
                        "val_accuracy": event.val_accuracy,
                        "cumulative_j": event.cumulative_j,
                        "source": event.source,
                    }
                )
            case Result():
                self.metrics = event.metrics
            case Error():
                self.error = event.message

    def _running_phase(self) -> None:
        if self.phase is None or self.phase not in self.rows or self.rows[self.phase].final:
            return
        row = self.rows[self.phase]
        dt = max(0.0, (self.t_last or row.start_t) - row.start_t)
        for name, j in self.joules_now.items():
            gross = j - row.start_j.get(name, self.joules_at_start.get(name, j))
            row.gross_j[name] = gross
            row.net_j[name] = gross if self.phase == "idle" else gross - self.idle_w.get(name, 0.0) * dt
        counted = self._counted()
        row.total_gross_j = sum(row.gross_j.get(n, 0.0) for n in counted)
        row.total_net_j = sum(row.net_j.get(n, 0.0) for n in counted)
        row.duration_s = dt

    # -- what the views read -------------------------------------------------------------
    def since_start(self, t: float | None) -> float:
        if t is None or self.t0 is None:
            return 0.0
        return t - self.t0

    @property
    def elapsed_s(self) -> float:
        return self.since_start(self.t_last)

    @property
    def phase_remaining_s(self) -> float | None:
        """Left in the current training phase, from its progress so far (None when unknown)."""
        row = self.rows.get(self.phase or "")
        if row is None or row.final or not (self.epochs and self.steps and self.epoch and self.step):
            return None
        done = (self.epoch - 1) * self.steps + self.step
        total = self.epochs * self.steps
        spent = (self.t_last or row.start_t) - row.start_t
        if done <= 0 or spent <= 0:
            return None
        return max(0.0, spent * (total - done) / done)

    def domain_names(self) -> list[str]:
        names = [m["name"] for m in self.meters]
        return names + [n for n in self.joules_now if n not in names]

    def domain_source(self, name: str) -> str | None:
        return self.sources.get(name)

    def domain_kind(self, name: str) -> str | None:
        return self.kinds.get(name)

    @property
    def net_total_j(self) -> float:
        """Net joules of every phase but idle, so far."""
        return sum(r.total_net_j for p, r in self.rows.items() if p != "idle")

    @property
    def overall_source(self) -> str | None:
        names = self._counted()
        known = [self.sources[n] for n in names if self.sources.get(n)]
        return weakest_source(known) if known else None

    def mark(self, name: str | None = None) -> str:
        source = self.overall_source if name is None else self.sources.get(name)
        return SOURCE_MARK.get(source or "", "")
