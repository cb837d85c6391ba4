"""The run a trainer callback meters, shared by the Lightning and Hugging Face callbacks: begun
once (on the process that meters), phases opened and closed by the trainer's hooks, epochs
recorded once each, and ended once, also when the process exits first."""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from typing import Any

from engine.core.events import FinalStatus
from engine.worker.user_run import Label, Run, RunError


class CallbackRun:
    """One run for one callback. A callback on a rank that does not meter never begins it, and
    every other call is then a no-op."""

    def __init__(
        self, name: str, logs: str | os.PathLike[str] | None, labels: Mapping[str, Label] | None, options: Any
    ) -> None:
        self.name, self.logs, self.labels = name, logs, dict(labels or {})
        self.options: dict[str, Any] = options
        self._make({})  # a bad name or label is one line where the callback is made, not mid-training
        self.run: Run | None = None
        self.ended = False
        self.phase: str | None = None  # the phase the hooks opened and have not closed

    def _make(self, extra: Mapping[str, Label]) -> Run:
        return Run(self.name, logs=self.logs, labels={**self.labels, **extra}, **self.options)

    @property
    def open(self) -> bool:
        return self.run is not None and not self.ended

    def begin(self, ranks: tuple[int, int] | None) -> None:
        """Begin metering. `ranks` is (processes on this node, world size) under distributed
        training, where only local rank zero meters: the log's `metered_ranks` label says so."""
        if self.run is not None:
            if self.ended:
                raise RunError(f"run {self.run.run_id} has ended: make a new JouleLabCallback for each run")
            return
        extra: dict[str, Label] = {}
        if ranks is not None:
            local, world = ranks
            extra["metered_ranks"] = f"local rank 0 of {local} on this node (world size {world})"
        self.run = self._make(extra)
        self.run.begin()
        atexit.register(self._end_at_exit)

    def begin_phase(self, name: str) -> None:
        if self.open and self.phase is None:
            assert self.run is not None
            self.run.begin_phase(name)
            self.phase = name

    def end_phase(self, name: str) -> None:
        if self.open and self.phase == name:
            assert self.run is not None
            self.run.end_phase(name)
            self.phase = None

    def epoch(self, val_accuracy: float | None, loss: float | None) -> None:
        """An epoch of the open phase ended (with a curve point when val_accuracy is known)."""
        if self.open and self.phase is not None:
            assert self.run is not None
            progress = {} if loss is None else {"loss": loss}
            self.run.epoch(val_accuracy=val_accuracy, **progress)

    def end(self, status: FinalStatus = "complete", error: str | None = None) -> None:
        """End the run (an open phase ends partial). Safe to call more than once."""
        if self.open:
            assert self.run is not None
            self.ended = True
            atexit.unregister(self._end_at_exit)
            self.phase = None
            self.run.end(status, error)

    def _end_at_exit(self) -> None:
        # The process is exiting with the run open: after an exception that no hook saw (Hugging
        # Face's Trainer has no exception hook), or with a test that never came.
        if self.phase is not None:
            self.end("failed", f"the process exited inside phase {self.phase}: training did not reach its end hook")
        else:
            self.end()
