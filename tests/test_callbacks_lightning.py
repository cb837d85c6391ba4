"""The Lightning callback (joulelab.integrations.lightning): a real Trainer fits and tests a tiny
model; the run log holds the train and test phases, a curve point per epoch and the result; an
exception ends the run failed with the train phase partial; under DDP only local rank zero meters."""

from __future__ import annotations

import pytest

pl = pytest.importorskip("lightning.pytorch", reason="Lightning is not installed: pip install 'joulelab[lightning]'")

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from engine.store.run_log import load_run  # noqa: E402
from joulelab.integrations.lightning import JouleLabCallback  # noqa: E402

pytestmark = pytest.mark.slow  # trains a network


def loader(n: int = 64, seed: int = 0) -> DataLoader[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long()  # separable: accuracy climbs
    return DataLoader(TensorDataset(x, y), batch_size=16)


class Tiny(pl.LightningModule):
    def __init__(self, fail_in_epoch: int | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Linear(8, 2)
        self.fail_in_epoch = fail_in_epoch

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.current_epoch == self.fail_in_epoch:
            raise RuntimeError("diverged")
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def _accuracy(self, batch: tuple[torch.Tensor, torch.Tensor], key: str) -> None:
        x, y = batch
        self.log(key, (self.net(x).argmax(1) == y).float().mean(), on_epoch=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._accuracy(batch, "val_acc")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._accuracy(batch, "test_acc")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


def trainer(callback: JouleLabCallback, **options: object) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )


def test_fit_and_test_make_one_run_with_both_phases_and_the_curve(tmp_path):
    meter = JouleLabCallback("tiny-lightning", logs=tmp_path, labels={"mode": "scratch"}, test=True, idle_s=0.1)
    t, model = trainer(meter), Tiny()
    t.fit(model, loader(), loader(32, seed=1))
    t.test(model, loader(48, seed=2))
    s = load_run(tmp_path / str(meter.run_id)).summary
    assert s is not None and s.status == "complete" and str(s.key) == "tiny-lightning/custom/scratch/baseline"
    assert list(s.phases) == ["idle", "train", "test"]
    assert not s.phases["train"].partial and s.phases["train"].total.gross_j > 0
    assert [p.epoch for p in s.curve] == [1, 2]  # the sanity check's validation is not a point
    assert all(0 <= p.val_accuracy_frac <= 1 for p in s.curve) and s.curve[1].cumulative_j >= s.curve[0].cumulative_j
    assert s.metrics.accuracy_frac is not None and s.metrics.inferences == 48
    assert s.metrics.train_samples_seen == 128  # 64 samples, 2 epochs
    assert s.metrics.j_per_inference is not None and "metered_ranks" not in s.spec["labels"]


def test_without_test_the_run_ends_with_fit_and_a_later_test_is_not_metered(tmp_path):
    meter = JouleLabCallback("fit-only", logs=tmp_path, idle_s=0)
    t, model = trainer(meter), Tiny()
    t.fit(model, loader(), loader(32, seed=1))
    s = load_run(tmp_path / str(meter.run_id)).summary
    assert s is not None and s.status == "complete" and list(s.phases) == ["train"] and len(s.curve) == 2
    with pytest.warns(UserWarning, match="pass test=True"):
        t.test(model, loader(48, seed=2))
    assert [p.name for p in tmp_path.iterdir()] == [meter.run_id]


def test_an_exception_in_training_ends_the_run_failed_with_the_train_phase_partial(tmp_path):
    meter = JouleLabCallback("boom", logs=tmp_path, idle_s=0)
    with pytest.raises(RuntimeError, match="diverged"):
        trainer(meter).fit(Tiny(fail_in_epoch=1), loader(), loader(32, seed=1))
    s = load_run(tmp_path / str(meter.run_id)).summary
    assert s is not None and s.status == "failed" and s.error == "RuntimeError: diverged"
    assert s.phases["train"].partial and s.phases["train"].total.gross_j > 0 and len(s.curve) == 1


def test_under_ddp_only_local_rank_zero_meters_and_the_log_says_so(tmp_path):
    meter = JouleLabCallback("ddp", logs=tmp_path, idle_s=0)
    trainer(meter, devices=2, strategy="ddp_spawn").fit(Tiny(), loader(), loader(32, seed=1))
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1  # rank 1 wrote nothing
    s = load_run(runs[0]).summary
    assert s is not None and s.status == "complete" and len(s.curve) == 2
    assert s.spec["labels"]["metered_ranks"] == "local rank 0 of 2 on this node (world size 2)"
