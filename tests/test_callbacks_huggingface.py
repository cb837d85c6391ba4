"""The Hugging Face callback (joulelab.integrations.huggingface): a real transformers Trainer
trains a tiny model built in code (no hub download) for 2 epochs; the run log holds the train
phase, a curve point per epoch's evaluation, and the test phase of `test()`; a training that
raises ends the run failed with the train phase partial when Python exits; other ranks do nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("transformers", reason="transformers is not installed: pip install 'joulelab[huggingface]'")

from transformers import Trainer, TrainingArguments

from engine.store.run_log import load_run
from joulelab.integrations.huggingface import JouleLabCallback
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # trains a network

MODEL = '''
import torch
from transformers import EvalPrediction

class Tiny(torch.nn.Module):
    """What the Trainer asks of a model: labels in, a loss out (with the logits)."""

    def __init__(self, fail_at_step=None):
        super().__init__()
        self.net = torch.nn.Linear(8, 2)
        self.fail_at_step, self.steps = fail_at_step, 0

    def forward(self, x, labels=None):
        if self.training:
            self.steps += 1
            if self.steps == self.fail_at_step:
                raise RuntimeError("diverged")
        logits = self.net(x)
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}

def data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return [{"x": row, "labels": int(row[0] > 0)} for row in x]

def accuracy(p: EvalPrediction):
    return {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())}
'''
namespace: dict[str, object] = {}
exec(MODEL, namespace)  # the same model in-process and in the subprocess test
Tiny, data, accuracy = namespace["Tiny"], namespace["data"], namespace["accuracy"]


def arguments(tmp_path: object) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=2,
        per_device_train_batch_size=16,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
        learning_rate=0.1,
    )


def test_training_and_a_test_make_one_run_with_the_curve(tmp_path):
    logs = tmp_path / "logs"
    meter = JouleLabCallback("tiny-hf", logs=logs, labels={"mode": "transfer"}, test=True, idle_s=0.1)
    trainer = Trainer(
        model=Tiny(),  # type: ignore[operator]
        args=arguments(tmp_path / "out"),
        train_dataset=data(64, 0),  # type: ignore[operator]
        eval_dataset=data(32, 1),  # type: ignore[operator]
        compute_metrics=accuracy,  # type: ignore[arg-type]
        callbacks=[meter],
    )
    trainer.train()
    test_set = data(48, 2)  # type: ignore[operator]
    with meter.test(inferences=len(test_set)):
        trainer.predict(test_set)
    s = load_run(logs / str(meter.run_id)).summary
    assert s is not None and s.status == "complete" and str(s.key) == "tiny-hf/custom/transfer/baseline"
    assert list(s.phases) == ["idle", "train", "test"] and not s.phases["train"].partial
    assert [p.epoch for p in s.curve] == [1, 2] and s.curve[1].cumulative_j >= s.curve[0].cumulative_j > 0
    assert s.metrics.accuracy_frac is not None and s.metrics.inferences == 48
    assert s.metrics.j_per_inference is not None
    # 64 samples, twice: joules per training sample, as the worker's and Lightning's runs have
    assert s.metrics.train_samples_seen == 128 and s.metrics.j_per_train_sample is not None


def test_without_test_the_run_ends_with_training(tmp_path):
    meter = JouleLabCallback("train-only", logs=tmp_path / "logs", idle_s=0)
    Trainer(
        model=Tiny(),  # type: ignore[operator]
        args=arguments(tmp_path / "out"),
        train_dataset=data(64, 0),  # type: ignore[operator]
        eval_dataset=data(32, 1),  # type: ignore[operator]
        compute_metrics=accuracy,  # type: ignore[arg-type]
        callbacks=[meter],
    ).train()
    s = load_run(tmp_path / "logs" / str(meter.run_id)).summary
    assert s is not None and s.status == "complete" and list(s.phases) == ["train"] and len(s.curve) == 2
    with pytest.raises(Exception, match="pass test=True"):
        with meter.test():
            pass


def test_a_rank_other_than_local_zero_does_nothing(tmp_path):
    from transformers import TrainerControl, TrainerState

    meter = JouleLabCallback("rank1", logs=tmp_path / "logs", idle_s=0)
    state, control = TrainerState(is_local_process_zero=False), TrainerControl()
    args = arguments(tmp_path / "out")
    meter.on_train_begin(args, state, control)
    meter.on_epoch_end(args, state, control)
    meter.on_evaluate(args, state, control, metrics={"eval_accuracy": 0.5})
    meter.on_train_end(args, state, control)
    assert meter.run_id is None and not (tmp_path / "logs").exists()


def test_a_training_that_raises_ends_the_run_failed_with_the_train_phase_partial(tmp_path):
    # The Trainer has no exception hook: the run is ended when the script dies, at exit.
    script = tmp_path / "train.py"
    script.write_text(
        MODEL
        + textwrap.dedent(f"""
        from transformers import Trainer, TrainingArguments
        from joulelab.integrations.huggingface import JouleLabCallback
        meter = JouleLabCallback("boom", logs={str(tmp_path / "logs")!r}, idle_s=0)
        args = TrainingArguments(output_dir={str(tmp_path / "out")!r}, num_train_epochs=2, eval_strategy="epoch",
            per_device_train_batch_size=16, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
            remove_unused_columns=False)
        Trainer(model=Tiny(fail_at_step=6), args=args, train_dataset=data(64, 0), eval_dataset=data(32, 1),
            compute_metrics=accuracy, callbacks=[meter]).train()
        """)
    )
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "RuntimeError: diverged" in done.stderr
    (run_dir,) = (tmp_path / "logs").iterdir()
    s = load_run(run_dir).summary
    assert s is not None and s.status == "failed" and s.error is not None and "inside phase train" in s.error
    assert s.phases["train"].partial and s.phases["train"].total.gross_j > 0 and len(s.curve) == 1
