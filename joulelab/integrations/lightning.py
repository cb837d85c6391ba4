"""JouleLab metering as a Lightning callback (`pip install 'joulelab[lightning]'`):

    from joulelab.integrations.lightning import JouleLabCallback

    trainer = lightning.pytorch.Trainer(max_epochs=5, callbacks=[JouleLabCallback("mnist", test=True)])
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm)

The run begins when fit (or a test on its own) sets up, with the API's idle baseline. The train
phase spans on_train_start to on_train_end: the validation Lightning runs inside it is part of
training's cost, and each training epoch is one epoch of the run, a point of the energy-to-accuracy
curve when a validation in it logged `accuracy_key` (a fraction of 1). trainer.test is the test
phase: its accuracy (`test_accuracy_key`) and the samples it saw go into the run's result. The run
ends with fit, or with the test that follows when `test=True` (or when Python exits, if none
came). An exception ends it failed, the open phase partial; Ctrl-C ends it cancelled.

Under distributed training only local rank zero meters (its node's counters; GPUs: every visible
one unless `metered_gpus` says otherwise), and the run's `metered_ranks` label says so; other
ranks do nothing. Samples are counted per batch by Lightning's own batch-size inference.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

try:
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.data import extract_batch_size
except ImportError:  # the standalone package, where that is what is installed
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
        from pytorch_lightning.utilities.data import extract_batch_size
    except ImportError as exc:
        raise ImportError("joulelab.integrations.lightning needs Lightning: pip install 'joulelab[lightning]'") from exc

from engine.worker.user_run import Label
from joulelab.integrations._callback_run import CallbackRun

VAL_ACCURACY_KEYS = ("val_acc", "val_accuracy")
TEST_ACCURACY_KEYS = ("test_acc", "test_accuracy")
LOSS_KEYS = ("train_loss", "loss")


class JouleLabCallback(pl.Callback):
    """Meter a Lightning fit (and the test after it, with `test=True`) as one JouleLab run.

    name, logs, labels and **run_options are joulelab.run's (idle_s, device, ...);
    accuracy_key / test_accuracy_key: the `trainer.callback_metrics` keys of validation and test
    accuracy (the first one present is used)."""

    def __init__(
        self,
        name: str,
        logs: str | os.PathLike[str] | None = None,
        labels: Mapping[str, Label] | None = None,
        *,
        test: bool = False,
        accuracy_key: str | Sequence[str] = VAL_ACCURACY_KEYS,
        test_accuracy_key: str | Sequence[str] = TEST_ACCURACY_KEYS,
        **run_options: Any,
    ) -> None:
        super().__init__()
        self.metering = CallbackRun(name, logs, labels, run_options)
        self.test = test
        self.accuracy_keys = (accuracy_key,) if isinstance(accuracy_key, str) else tuple(accuracy_key)
        self.test_accuracy_keys = (
            (test_accuracy_key,) if isinstance(test_accuracy_key, str) else tuple(test_accuracy_key)
        )
        self._val_accuracy: float | None = None  # the last validation's, until its epoch ends
        self._samples: int | None = 0  # None once a batch's size could not be told
        self._inferences: int | None = 0

    @property
    def run_id(self) -> str | None:
        return self.metering.run.run_id if self.metering.run is not None else None

    # -- the run ---------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage not in ("fit", "test") or trainer.local_rank != 0:
            return  # validate/predict alone are not metered; other ranks never meter
        if self.metering.ended:
            if stage == "test":
                warnings.warn(
                    "JouleLab: the run ended with fit, so this test is not metered; pass test=True to meter it",
                    stacklevel=2,
                )
                return
        distributed = trainer.world_size > 1
        if distributed and "metered_gpus" not in self.metering.options:
            self.metering.options["metered_gpus"] = "all"  # the node's GPUs: every local rank's work
        self.metering.begin((trainer.num_devices, trainer.world_size) if distributed else None)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "test" or (stage == "fit" and not self.test):
            self.metering.end()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.metering.end("cancelled", "cancelled by KeyboardInterrupt")
        else:
            self.metering.end("failed", f"{type(exception).__name__}: {exception}")

    # -- training --------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.metering.begin_phase("train")

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.metering.phase == "train":
            self._samples = _add_batch(self._samples, batch)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on_validation_end, not on_validation_epoch_end: only here has Lightning reduced the
        # epoch's logged metrics into callback_metrics. The sanity check runs before training.
        if self.metering.phase == "train" and not trainer.sanity_checking:
            self._val_accuracy = _metric(trainer, self.accuracy_keys)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning validates inside the epoch, before this hook: one run epoch per training epoch
        self.metering.epoch(self._val_accuracy, _metric(trainer, LOSS_KEYS))
        self._val_accuracy = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.metering.end_phase("train")
        if self.metering.run is not None and self._samples:
            self.metering.run.result(train_samples=self._samples)

    # -- the test --------------------------------------------------------------------------
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._inferences = 0
        self.metering.begin_phase("test")

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.metering.phase == "test":
            self._inferences = _add_batch(self._inferences, batch)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.metering.phase != "test":
            return
        self.metering.end_phase("test")
        assert self.metering.run is not None
        self.metering.run.result(
            accuracy=_metric(trainer, self.test_accuracy_keys), inferences=self._inferences or None
        )


def _metric(trainer: pl.Trainer, keys: Sequence[str]) -> float | None:
    """The first of `keys` among the metrics the module logged, as a float."""
    for key in keys:
        value = trainer.callback_metrics.get(key)
        if value is not None:
            return float(value)
    return None


def _add_batch(count: int | None, batch: Any) -> int | None:
    if count is None:
        return None
    try:
        return count + extract_batch_size(batch)
    except Exception:  # a batch Lightning cannot size: the count is unknown, not a guess
        return None
