"""A cached source network that is well-formed but wrong (a state_dict of other keys or shapes) is
a cache miss: discarded, pretrained again, and said so in the run's notes and in `joulelab show`.
Real tiny transfer runs of the worker, a wrong state_dict planted where the cache entry lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from engine.cli import app
from engine.store.run_log import load_summary, run_dirs
from tests.helpers import run_worker, tiny_spec

pytestmark = pytest.mark.slow  # real workers in subprocesses
runner = CliRunner()


def transfer_run(logs: Path):
    proc = run_worker(tiny_spec(logs, mode="transfer", epochs=1))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(logs)
    summary = load_summary(run_dir)
    assert summary is not None and summary.pretrain is not None
    return summary


def wrong_states(right: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    first = next(iter(right))
    return {
        "other keys": {"not.a.layer": torch.zeros(3)},
        "other shapes": {k: torch.zeros(tuple(s + 1 for s in v.shape)) for k, v in right.items()},
        "a missing key": {k: v for k, v in right.items() if k != first},
    }


def test_a_wrong_cached_source_network_is_discarded_and_pretrained_again(tmp_path):
    # one first run, then each kind of wrong network planted in turn (each run saves the right one
    # anew, which the next plants over), then one run that reuses it: 5 runs, not 3 per kind
    first = transfer_run(tmp_path / "first")
    assert first.pretrain.cached is False and first.pretrain.key
    cached = Path(os.environ["JOULELAB_CACHE"]) / "sources" / f"{first.pretrain.key}.pt"
    right = torch.load(cached, weights_only=True)
    says = {"other keys": "unexpected not.a.layer", "other shapes": "other shapes for", "a missing key": "missing"}
    for what, wrong in wrong_states(right).items():
        torch.save(wrong, cached)
        logs = tmp_path / what.replace(" ", "-")
        again = transfer_run(logs)
        assert again.status == "complete" and again.pretrain.cached is False, what  # pretrained, not reused
        said = again.pretrain.cache_discarded
        assert said and f"cached source network {first.pretrain.key} discarded" in said, what
        assert "pretrained again" in said and says[what] in said, (what, said)
        restored = torch.load(cached, weights_only=True)  # saved anew: the right network is back
        assert {k: v.shape for k, v in restored.items()} == {k: v.shape for k, v in right.items()}, what

        shown = runner.invoke(app, ["show", again.run_id, "--logs", str(logs)])
        assert shown.exit_code == 0, shown.output
        assert f"pretrain: cached source network {first.pretrain.key} discarded" in " ".join(shown.stdout.split())

    reused = transfer_run(tmp_path / "third")
    assert reused.pretrain.cached is True and reused.pretrain.cache_discarded is None


def test_the_notes_name_a_source_network_that_could_not_be_cached():
    from engine.outputs.tables import run_notes
    from tests.helpers import golden_summary

    summary = golden_summary("golden-transfer")
    assert summary.pretrain is not None
    summary.pretrain.cache_problem = "source network not cached: /x/sources: Read-only file system"
    assert "pretrain: source network not cached: /x/sources: Read-only file system" in run_notes(summary)
