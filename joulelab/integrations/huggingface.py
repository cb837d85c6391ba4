"""JouleLab metering as a Hugging Face Trainer callback (`pip install 'joulelab[huggingface]'`):

    from joulelab.integrations.huggingface import JouleLabCallback

    meter = JouleLabCallback("bert-sst2", test=True)
    trainer = transformers.Trainer(model, args, train_dataset=..., eval_dataset=..., callbacks=[meter])
    trainer.train()
    with meter.test(inferences=len(test_set)):         # optional: the test phase, then the run ends
        trainer.predict(test_set)

on_train_begin begins the run (with the API's idle baseline) and the train phase; on_train_end
ends the phase, and the run unless `test=True` (then `test()` ends it, or Python's exit if none
came). Evaluation during training is part of training's
cost. Each training epoch is one epoch of the run, a point of the energy-to-accuracy curve when an
evaluation after it reported `accuracy_key` (a fraction of 1: compute_metrics' "accuracy" is
reported as "eval_accuracy"); an evaluation every N steps adds a point of its own, numbered on.
The samples trained on (the training set's size per epoch trained) go into the result, for
joules per training sample.

The Trainer has no hook before predict or evaluate starts, so the callback cannot open a test
phase by itself: `meter.test()` is that phase (the accuracy is taken from the predict or evaluate
run inside it, "test_accuracy"; the inferences are what you pass). Nor has it a hook for an
exception: a run whose training raised is ended failed, its train phase partial, when Python
exits (or at once by `meter.end("failed", ...)`).

Under distributed training only local rank zero meters (its node's counters; GPUs: every visible
one unless `metered_gpus` says otherwise), and the run's `metered_ranks` label says so; other
ranks do nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as exc:
    raise ImportError(
        "joulelab.integrations.huggingface needs transformers: pip install 'joulelab[huggingface]'"
    ) from exc

from engine.core.events import FinalStatus
from engine.worker.user_run import Label, RunError
from joulelab.integrations._callback_run import CallbackRun


class JouleLabCallback(TrainerCallback):
    """Meter a Trainer's training (and a test after it, with `test=True`) as one JouleLab run.

    name, logs, labels and **run_options are joulelab.run's (idle_s, device, ...);
    accuracy_key: the evaluation metric that is validation accuracy;
    test_accuracy_key: the metric that is test accuracy inside `test()`."""

    def __init__(
        self,
        name: str,
        logs: str | os.PathLike[str] | None = None,
        labels: Mapping[str, Label] | None = None,
        *,
        test: bool = False,
        accuracy_key: str = "eval_accuracy",
        test_accuracy_key: str = "test_accuracy",
        **run_options: Any,
    ) -> None:
        self.metering = CallbackRun(name, logs, labels, run_options)
        self.test_follows = test
        self.accuracy_key, self.test_accuracy_key = accuracy_key, test_accuracy_key
        self._epoch_loss: float | None = None
        self._epoch_pending = False  # an epoch ended; the evaluation after it may bring its accuracy
        self._test_accuracy: float | None = None
        self._samples_per_epoch: int | None = None  # the training set's size, when it has one

    @property
    def run_id(self) -> str | None:
        return self.metering.run.run_id if self.metering.run is not None else None

    def end(self, status: FinalStatus = "complete", error: str | None = None) -> None:
        """End the run now (an open phase ends partial): after an exception you caught."""
        self.metering.end(status, error)

    # -- training --------------------------------------------------------------------------
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if not state.is_local_process_zero:
            return  # other ranks never meter
        world = args.world_size
        if world > 1 and "metered_gpus" not in self.metering.options:
            self.metering.options["metered_gpus"] = "all"  # the node's GPUs: every local rank's work
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))  # set by torchrun and accelerate launch
        self.metering.begin((local, world) if world > 1 else None)
        self.metering.begin_phase("train")
        self._samples_per_epoch = _dataset_size(kw.get("train_dataloader"))

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._flush_epoch(None)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        # The Trainer evaluates after this hook: the epoch is recorded when its evaluation
        # reports, or at the next epoch's start (or training's end) when none does.
        self._epoch_pending = True
        self._epoch_loss = _last_loss(state)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        metrics = metrics or {}
        if self.metering.phase == "test":
            self._take_test_accuracy(metrics)
        elif self.metering.phase == "train":
            accuracy = metrics.get(self.accuracy_key)
            if self._epoch_pending:
                self._flush_epoch(accuracy)
            elif accuracy is not None:  # an evaluation every N steps: a point of its own
                self.metering.epoch(float(accuracy), _last_loss(state))

    def on_predict(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float],
        **kw: Any,
    ) -> None:
        if self.metering.phase == "test":
            self._take_test_accuracy(metrics or {})

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._flush_epoch(None)
        self.metering.end_phase("train")
        if self.metering.run is not None and self._samples_per_epoch and state.epoch:
            # the samples trained on, for joules per training sample: the set once per epoch (a
            # fraction of it for an epoch cut short by max_steps)
            self.metering.run.result(train_samples=round(state.epoch * self._samples_per_epoch))
        if not self.test_follows:
            self.metering.end()

    # -- the test --------------------------------------------------------------------------
    @contextmanager
    def test(self, inferences: int | None = None) -> Iterator[JouleLabCallback]:
        """The test phase around trainer.predict or trainer.evaluate on a test set; the run ends
        after it (failed, the phase partial, if the body raises)."""
        if not self.test_follows:
            raise RunError("JouleLabCallback.test(): pass test=True when making the callback, so the run stays open")
        if not self.metering.open:
            if self.metering.run is None:  # a rank that does not meter, or no training ran
                yield self
                return
            raise RunError("JouleLabCallback.test(): the run has ended; a run has one test phase")
        run = self.metering.run
        assert run is not None
        self._test_accuracy = None
        self.metering.begin_phase("test")
        try:
            yield self
        except BaseException as exc:
            status: FinalStatus = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
            self.metering.end(status, f"{type(exc).__name__}: {exc}")
            raise
        self.metering.end_phase("test")
        run.result(accuracy=self._test_accuracy, inferences=inferences)
        self.metering.end()

    # -- helpers ---------------------------------------------------------------------------
    def _flush_epoch(self, accuracy: float | None) -> None:
        if self._epoch_pending:
            self._epoch_pending = False
            self.metering.epoch(None if accuracy is None else float(accuracy), self._epoch_loss)

    def _take_test_accuracy(self, metrics: Mapping[str, float]) -> None:
        value = metrics.get(self.test_accuracy_key)
        if value is not None:
            self._test_accuracy = float(value)


def _dataset_size(dataloader: Any) -> int | None:
    """The samples in one epoch of the Trainer's training dataloader; None for a dataset without a
    length (an iterable one): the count is unknown, not a guess."""
    try:
        return len(dataloader.dataset)
    except (AttributeError, TypeError):
        return None


def _last_loss(state: TrainerState) -> float | None:
    """The training loss the Trainer logged last (its log_history), if any."""
    for entry in reversed(state.log_history):
        if "loss" in entry:
            return float(entry["loss"])
    return None
