"""Networks and mechanisms: sizes, determinism, augmentation, pruning measured in a real worker."""

import json

import numpy as np
import pytest
import torch

from engine.core.spec import RunSpec
from engine.worker.data.prepare import prepare
from engine.worker.models import build_network, count_parameters, flops_per_sample
from engine.worker.train import augment_batch, prune_global, set_seed
from tests.helpers import run_worker, the_run_dir, tiny_spec


def test_big_is_the_scale_of_the_authors_net_and_small_a_fraction():
    big = build_network((6, 128), "big", 24)
    small = build_network((6, 128), "small", 24)
    assert 150_000 < count_parameters(big) < 260_000
    assert count_parameters(small) < count_parameters(big) / 5
    assert flops_per_sample(big, (6, 128)) > 5 * flops_per_sample(small, (6, 128))
    mlp_big, mlp_small = build_network((52,), "big", 5), build_network((52,), "small", 5)
    assert count_parameters(mlp_small) < count_parameters(mlp_big) / 5


def test_same_spec_and_seed_give_the_same_split_and_initial_weights():
    spec = RunSpec(synthetic_subjects=6, synthetic_seconds=40.0, stride=32, seed=3)
    a, b = prepare(spec), prepare(spec)
    assert np.array_equal(a.target.x_train, b.target.x_train) and np.array_equal(a.target.y_test, b.target.y_test)
    set_seed(3)
    w1 = build_network((6, 128), "small", 3).state_dict()
    set_seed(3)
    w2 = build_network((6, 128), "small", 3).state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    other = prepare(RunSpec(synthetic_subjects=6, synthetic_seconds=40.0, stride=32, seed=4))
    assert not np.array_equal(a.target.x_train, other.target.x_train)


def test_augmentation_rotates_triples_without_changing_their_length():
    x = torch.randn(8, 6, 128)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, g)
    assert out.shape == x.shape and not torch.allclose(out, x)


def test_global_pruning_reaches_the_target_sparsity_but_not_fewer_flops():
    net = build_network((6, 128), "small", 4)
    flops = flops_per_sample(net, (6, 128))
    report = prune_global(net, 0.5)
    assert abs(report["sparsity"] - 0.5) < 0.01
    assert flops_per_sample(net, (6, 128)) == flops  # dense kernels still multiply the zeros


@pytest.mark.slow
def test_pruning_augmentation_and_no_batchnorm_are_measured_in_the_worker(tmp_path):
    proc = run_worker(tiny_spec(tmp_path, prune=0.5, augment=True, batchnorm=False, epochs=2))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((the_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["config"] == "synthetic/small/scratch/no-batchnorm+augmentation+pruning"
    assert list(summary["phases"]) == ["idle", "warmup", "train", "prune", "test"]
    assert summary["phases"]["prune"]["total"]["gross_j"] > 0
    pruning = summary["metrics"]["pruning"]
    assert abs(pruning["sparsity"] - 0.5) < 0.02 and "unstructured" in pruning["note"]
    manifest = json.loads((the_run_dir(tmp_path) / "run.json").read_text())
    assert "BatchNorm" not in manifest["network"]["architecture"]
