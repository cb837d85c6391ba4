"""The real worker subprocess: events, log files, summary, stream protection, bad input."""

import json

import pytest

from engine.core.events import (
    PHASES,
    SCHEMA_VERSION,
    Done,
    Epoch,
    Error,
    Hello,
    PhaseEnd,
    PhaseStart,
    Sample,
)
from engine.core.records import summary_from_json
from engine.store.run_log import load_run
from tests.helpers import events_in, run_worker, the_run_dir, tiny_spec


@pytest.mark.slow
def test_scratch_run_streams_events_and_writes_a_complete_log(tmp_path):
    proc = run_worker(tiny_spec(tmp_path, mode="scratch", epochs=2))
    assert proc.returncode == 0, proc.stderr
    events = events_in(proc.stdout)
    first, last = events[0], events[-1]
    assert isinstance(first, Hello) and isinstance(last, Done)
    assert last.status == "complete"
    assert all(e.v == SCHEMA_VERSION for e in events)
    run_ids = {e.run for e in events}
    assert len(run_ids) == 1
    # monotonic timestamps
    ts = [e.t for e in events]
    assert ts == sorted(ts)

    phases = [e.phase for e in events if isinstance(e, PhaseStart)]
    assert phases == ["idle", "warmup", "train", "test"]
    assert [e.phase for e in events if isinstance(e, PhaseEnd)] == phases

    # samples: watts and cumulative joules per domain, with provenance, never decreasing
    samples = [e for e in events if isinstance(e, Sample)]
    assert len(samples) >= 5
    cpu_j = [s.domains["cpu"]["j"] for s in samples]
    assert cpu_j == sorted(cpu_j) and cpu_j[-1] > 0
    assert samples[-1].domains["cpu"]["source"] == "modelled"
    assert samples[-1].domains["cpu"]["method"] == "model:tdp-cpu-time"

    epochs = [e for e in events if isinstance(e, Epoch)]
    assert [e.epoch for e in epochs] == [1, 2]
    assert epochs[1].cumulative_j >= epochs[0].cumulative_j > 0

    run_path = the_run_dir(tmp_path)
    assert run_path.name == next(iter(run_ids))
    # the log is the stream: same lines, same order
    assert (run_path / "events.jsonl").read_text() == proc.stdout
    manifest = json.loads((run_path / "run.json").read_text())
    assert manifest["spec"]["mode"] == "scratch"
    assert manifest["environment"]["torch"]
    assert {m["meter"] for m in manifest["missing_meters"]} >= {"rapl", "nvml"}
    assert manifest["network"]["parameters"] > 1000
    assert manifest["dataset"]["synthetic"] is True

    summary = json.loads((run_path / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert summary["synthetic"] is True and summary["dataset"] == "synthetic" and summary["log_schema"] == 2
    assert set(summary["phases"]) == {"idle", "warmup", "train", "test"}
    for phase in summary["phases"].values():
        assert phase["duration_s"] > 0
        for domain in phase["energy"].values():
            assert domain["source"] == "modelled"
            assert abs(domain["gross_j"] - domain["idle_j"] - domain["net_j"]) < 1e-9
        assert phase["total"]["source"] == "modelled"
    # the idle baseline is each domain's mean power over the idle phase
    idle = summary["phases"]["idle"]
    for domain, baseline in summary["idle_watts"].items():
        assert baseline["source"] == "modelled"
        assert baseline["w"] == pytest.approx(idle["energy"][domain]["gross_j"] / idle["duration_s"], rel=1e-6)
    # the idle phase is the baseline: all idle, nothing net
    assert summary["phases"]["idle"]["total"]["net_j"] == 0
    assert summary["phases"]["train"]["total"]["gross_j"] > 0
    m = summary["metrics"]
    assert m["test_samples"] > 0 and m["inferences"] >= m["test_samples"]
    assert 0 <= m["accuracy_frac"] <= 1 and 0 <= m["f1_macro_frac"] <= 1
    assert m["inferences"] == m["test_passes"] * m["test_samples"]
    assert m["j_per_inference"]["source"] == "modelled"
    assert m["j_per_train_sample"]["value"] > 0
    assert load_run(run_path).status == "complete"


@pytest.mark.slow
def test_transfer_meters_pretraining_as_its_own_phase(tmp_path):
    proc = run_worker(tiny_spec(tmp_path, mode="transfer"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((the_run_dir(tmp_path) / "summary.json").read_text())
    assert list(summary["phases"]) == ["idle", "warmup", "pretrain", "train", "test"]
    assert summary["phases"]["pretrain"]["total"]["gross_j"] > 0
    assert "source_accuracy_frac" in summary["metrics"]
    manifest = json.loads((the_run_dir(tmp_path) / "run.json").read_text())
    # the body is frozen: only the new head trains
    assert manifest["network"]["trainable_parameters"] < manifest["network"]["parameters"]


@pytest.mark.slow
def test_a_stray_print_cannot_corrupt_the_event_stream(tmp_path):
    code = (
        "import sys, engine.worker.train as t\n"
        "fit = t.fit\n"
        "def noisy(*a, **k):\n"
        "    print('STRAY OUTPUT FROM A LIBRARY')\n"
        "    return fit(*a, **k)\n"
        "t.fit = noisy\n"
        "import engine.worker.main as w\n"
        "sys.exit(w.main([]))\n"
    )
    proc = run_worker(tiny_spec(tmp_path), code=code)
    assert proc.returncode == 0, proc.stderr
    events = events_in(proc.stdout)  # every line parses
    assert isinstance(events[-1], Done)
    assert "STRAY OUTPUT FROM A LIBRARY" in proc.stderr


@pytest.mark.slow
def test_bad_spec_is_one_line_and_exit_2(tmp_path):
    proc = run_worker(tiny_spec(tmp_path, epochs=0))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "epochs: 0 must be >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    events = events_in(proc.stdout)
    assert isinstance(events[0], Error) and isinstance(events[-1], Done)


def test_phases_constant_lists_every_phase_the_worker_can_emit():
    assert PHASES == ("idle", "warmup", "pretrain", "train", "prune", "test")


@pytest.mark.slow
def test_a_second_transfer_reuses_the_saved_source_network_and_its_pretraining_energy(tmp_path):
    from engine.analysis.stats import config_stats

    first = run_worker(tiny_spec(tmp_path / "a", mode="transfer"))
    second = run_worker(tiny_spec(tmp_path / "b", mode="finetune"))
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    s1 = json.loads((the_run_dir(tmp_path / "a") / "summary.json").read_text())
    s2 = json.loads((the_run_dir(tmp_path / "b") / "summary.json").read_text())
    assert s1["pretrain"]["cached"] is False and "pretrain" in s1["phases"]
    # the fine-tune run started from the network the transfer run trained: no pretrain phase here,
    # but the cost is carried over from the run that paid it
    assert "pretrain" not in s2["phases"]
    assert s2["pretrain"]["cached"] is True and s2["pretrain"]["run_id"] == s1["run_id"]
    assert s2["pretrain"]["total"] == s1["phases"]["pretrain"]["total"]
    assert s2["metrics"]["source_accuracy_frac"] == s1["metrics"]["source_accuracy_frac"]
    (stats,) = config_stats([summary_from_json(s2)])
    assert stats.pretrain_j.mean == s1["phases"]["pretrain"]["total"]["net_j"] and stats.cached_sources == 1
    # reuse can be switched off
    third = run_worker(tiny_spec(tmp_path / "c", mode="transfer", reuse_source=False))
    s3 = json.loads((the_run_dir(tmp_path / "c") / "summary.json").read_text())
    assert third.returncode == 0 and "pretrain" in s3["phases"] and s3["pretrain"]["cached"] is False


@pytest.mark.slow
def test_a_split_that_leaves_someone_without_test_windows_is_bad_input(tmp_path):
    proc = run_worker(tiny_spec(tmp_path, synthetic_seconds=20.0))
    assert proc.returncode == 2
    summary = json.loads((the_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "have no test samples" in summary["error"] and "synthetic_seconds" in summary["error"]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_cancel_that_comes_twice_still_leaves_a_cancelled_summary(tmp_path):
    """scancel signals every process of a Slurm job and the job passes the signal on, so a worker
    gets SIGTERM more than once, here right as it announces its train phase. Fails when the phase
    is announced before it is opened (the partial train phase was lost); the kernel merges
    signals sent at once, so the only-the-first-cancels guard is not what this exercises."""
    import os
    import signal

    from tests.helpers import start_worker

    proc = start_worker(tiny_spec(tmp_path, epochs=200))
    for line in proc.stdout:
        if '"phase_start"' in line and '"train"' in line:
            break
    for _ in range(3):
        os.kill(proc.pid, signal.SIGTERM)
    proc.stdout.read()
    assert proc.wait(timeout=60) == 130, proc.stderr.read()
    summary = json.loads((the_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "cancelled" and summary["error"] == "cancelled by SIGTERM"
    assert summary["phases"]["train"]["partial"] is True
