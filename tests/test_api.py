"""The Python API (`import joulelab`): the user's own code metered into the same run log as the
worker's, read by every reader; failures keep what was measured; misuse is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import joulelab
from engine.core.errors import JouleLabError
from engine.core.records import summary_from_json
from engine.store.run_log import load_run, read_events
from tests.helpers import REPO


def busy(seconds: float = 0.05) -> None:
    """Work the model meter can see (CPU time in this process)."""
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(i * i for i in range(1000))


def test_a_run_writes_the_workers_log(tmp_path):
    with joulelab.run("mine", logs=tmp_path, labels={"mode": "transfer", "seed": 3}, idle_s=0.1) as run:
        with run.phase("train"):
            for _ in range(2):
                busy()
                run.epoch(val_accuracy=0.5, loss=1.2)
        with run.phase("test"):
            busy()
        run.result(accuracy=0.75, inferences=100, train_samples=200)
    record = load_run(tmp_path / run.run_id)
    assert record.status == "complete" and record.problem is None
    s = record.summary
    assert s is not None and str(s.key) == "mine/custom/transfer/baseline" and s.seed == 3
    assert list(s.phases) == ["idle", "train", "test"]
    for phase in ("train", "test"):
        total = s.phases[phase].total
        assert total.source == "modelled" and total.methods and total.gross_j > 0
    assert [p.epoch for p in s.curve] == [1, 2] and s.curve[1].cumulative_j >= s.curve[0].cumulative_j > 0
    assert s.metrics.accuracy_frac == 0.75 and s.metrics.j_per_inference is not None
    assert s.metrics.j_per_inference.source == "modelled"
    assert s.idle_watts and s.spec["source"] == "api"
    events, bad = read_events(tmp_path / run.run_id / "events.jsonl")
    assert bad == 0
    types = [type(e).__name__ for e in events]
    assert types[0] == "Hello" and types[-1] == "Done" and "Result" in types and types.count("Epoch") == 2
    manifest = json.loads((tmp_path / run.run_id / "run.json").read_text())
    assert manifest["pid"] == os.getpid() and manifest["meters"] and manifest["environment"]["torch"]


def test_a_run_that_raises_ends_failed_and_keeps_its_partial_energy(tmp_path):
    with pytest.raises(ZeroDivisionError), joulelab.run("boom", logs=tmp_path, idle_s=0) as run:
        with run.phase("train"):
            busy()
            1 / 0  # noqa: B018
    s = load_run(tmp_path / run.run_id).summary
    assert s is not None and s.status == "failed" and s.error == "ZeroDivisionError: division by zero"
    assert s.phases["train"].partial and s.phases["train"].total.gross_j > 0
    assert s.last_phase == "train"


def test_begin_and_end_without_with_and_the_decorator(tmp_path):
    run = joulelab.run("explicit", logs=tmp_path, idle_s=0)
    run.begin()
    run.begin_phase("train")
    busy()
    run.end_phase("train")
    summary = run.end()
    assert summary.status == "complete" and list(summary.phases) == ["train"]

    @joulelab.metered("decorated", logs=tmp_path, idle_s=0)
    def train(n: int) -> int:
        busy()
        return n * 2

    assert train(21) == 42
    decorated = [r for p in tmp_path.iterdir() if (r := load_run(p)).spec.get("name") == "decorated"]
    assert len(decorated) == 1 and list(decorated[0].summary.phases) == ["train"]


@pytest.mark.parametrize(
    ("misuse", "message"),
    [
        (lambda run: run.epoch(val_accuracy=0.5), "outside a phase"),
        (lambda run: (run.begin_phase("train"), run.begin_phase("test")), "windows do not nest"),
        (lambda run: (run.begin_phase("train"), run.epoch(val_accuracy=93)), "a fraction of 1"),
        (lambda run: run.end_phase("train"), "no window is open"),
        (lambda run: run.begin_phase("idle"), "not 'idle'"),
        (lambda run: run.result(accuracy=93.0), "a fraction of 1"),
    ],
    ids=["epoch-outside", "nested", "percent-epoch", "end-unopened", "idle", "percent-result"],
)
def test_misuse_is_one_line_and_the_run_still_records(tmp_path, misuse, message):
    with pytest.raises(JouleLabError) as caught:  # RunError, or the meter's WindowError
        with joulelab.run("misuse", logs=tmp_path, idle_s=0) as run:
            misuse(run)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert load_run(tmp_path / run.run_id).status == "failed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": {"seed": [1]}}, "labels are strings or numbers"),
        ({"idle_s": -1}, "idle baseline"),
        ({"sample_hz": 1000}, "between 0.1 and 100"),
    ],
)
def test_bad_arguments_say_what_to_change(tmp_path, kwargs, message):
    with pytest.raises(joulelab.RunError, match=message):
        joulelab.run("bad", logs=tmp_path, **kwargs)
    with pytest.raises(joulelab.RunError, match="non-empty name"):
        joulelab.run("a/b", logs=tmp_path)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
    )


@pytest.mark.slow
def test_the_example_runs_and_every_reader_reads_its_runs(tmp_path):
    """examples/tiny_transfer.py, as a user runs it, then show, compare and export."""
    logs = tmp_path / "logs"
    for mode in ("transfer", "scratch"):
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "examples" / "tiny_transfer.py"),
                "--mode",
                mode,
                "--logs",
                str(logs),
                "--epochs",
                "3",
                "--idle-s",
                "0.3",
                "--batch",
                "example",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert proc.returncode == 0, proc.stderr
    runs = sorted(p.name for p in logs.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 2
    summaries = [summary_from_json(json.loads((logs / r / "summary.json").read_text())) for r in runs]
    transfer = next(s for s in summaries if s.spec["mode"] == "transfer")
    assert list(transfer.phases) == ["idle", "pretrain", "train", "test"] and len(transfer.curve) == 3
    shown = cli("show", runs[0], "--logs", str(logs))
    assert shown.returncode == 0 and "modelled" in shown.stdout
    compared = cli("compare", "--last", "--logs", str(logs))
    assert compared.returncode == 0, compared.stderr
    assert "points/tiny/transfer" in compared.stdout and "transfer vs scratch" in compared.stdout
    exported = cli("export", "--all", "--logs", str(logs), "--format", "json", "-o", str(tmp_path / "e.json"))
    assert exported.returncode == 0, exported.stderr
    tables = json.loads((tmp_path / "e.json").read_text())
    assert {r["run_id"] for r in tables["runs"]} == set(runs)
    assert {p["phase"] for p in tables["phases"]} >= {"idle", "pretrain", "train", "test"}
    assert all(p["source"] == "modelled" for p in tables["phases"] if p.get("source"))
    assert len(tables["curve"]) == 6
