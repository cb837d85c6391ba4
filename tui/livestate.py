"""The lab's view of one run: the one event fold plus what only the lab shows.

`engine.orchestrate.event_fold.RunFold` is the one fold of a run's events (phase, epoch, watts,
joules per phase and domain net of the idle baseline, provenance); the CLI's progress reads it
too. `RunState` adds only what the lab's widgets ask of it (the time left in a training phase,
provenance marks); it derives no energy. Times are the worker's monotonic event times, so a
replayed stream shows exactly what the live one did.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.orchestrate.event_fold import RunFold
from engine.outputs.tables import SOURCE_MARK


@dataclass
class RunState(RunFold):
    @property
    def phase_remaining_s(self) -> float | None:
        """Left in the current training phase, from its progress so far (None when unknown)."""
        row = self.open_row
        if row is None or not (self.epochs and self.steps and self.epoch and self.step):
            return None
        done = (self.epoch - 1) * self.steps + self.step
        total = self.epochs * self.steps
        spent = (self.t_last or row.start_t) - row.start_t
        if done <= 0 or spent <= 0:
            return None
        return max(0.0, spent * (total - done) / done)

    def domain_names(self) -> list[str]:
        return list(self.domains())

    def domain_source(self, name: str) -> str | None:
        return self.sources.get(name)

    def domain_kind(self, name: str) -> str | None:
        return self.kinds.get(name)

    @property
    def overall_source(self) -> str | None:
        return self.source

    def mark(self, name: str | None = None) -> str:
        source = self.overall_source if name is None else self.sources.get(name)
        return SOURCE_MARK.get(source or "", "")
