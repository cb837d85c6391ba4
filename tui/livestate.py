"""The live state of one run, folded from its events.

`engine.orchestrate.plan_runner.LiveTotals` is the one fold of events into what a person watches (phase, epoch,
watts, running joules per phase and domain net of the idle baseline, provenance); the CLI's
progress reads it too. `RunState` extends it with what only the lab shows: the phase boundaries
for the graph, the curve so far, and elapsed/remaining time. Times are the worker's
monotonic event times, so a replayed stream shows exactly what the live one did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.core.energy import weakest_source
from engine.core.events import AnyEvent, Epoch, Error, Hello, MeterInfo, PhaseStart, Result
from engine.orchestrate.plan_runner import LiveTotals
from engine.outputs.tables import SOURCE_MARK


@dataclass
class RunState(LiveTotals):
    t0: float | None = None
    t_last: float | None = None
    meters: list[MeterInfo] = field(default_factory=list)  # from hello
    missing: list[dict[str, Any]] = field(default_factory=list)
    boundaries: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, phase)
    curve: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def update(self, event: AnyEvent) -> None:
        super().update(event)
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
                self.boundaries.append((self.since_start(t), phase))
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
    def overall_source(self) -> str | None:
        names = self._counted()
        known = [self.sources[n] for n in names if self.sources.get(n)]
        return weakest_source(known) if known else None

    def mark(self, name: str | None = None) -> str:
        source = self.overall_source if name is None else self.sources.get(name)
        return SOURCE_MARK.get(source or "", "")
