"""Data-parallel runs (procs_per_node = 2, gloo on the CPU): one metering process, both ranks'
samples, phases that line up, the 1-process run's accuracy; a killed rank fails the run cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from engine.core.events import decode_event
from engine.store.run_log import list_runs, load_summary, run_status
from engine.worker.phase_meter import PhaseMeter
from engine.worker.slurm_job import first_node, rendezvous
from tests.helpers import LONG, REPO, TINY, tiny_spec, wait_until

# quick's configuration (presets/quick.toml), one trial, transfer (the source network pretrained
# here, under data parallel too), with the idle baseline and the inference timing kept short
QUICK = {
    "dataset": "synthetic",
    "size": "small",
    "mode": "transfer",
    "epochs": 4,
    "pretrain_epochs": 4,
    "batch_size": 64,
    "lr": 0.003,
    "synthetic_seconds": 60.0,
    "stride": 16,
    "idle_s": 0.2,
    "test_min_s": 0.0,
    "reuse_source": False,
}


def _worker(spec: dict, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )
    out, err = proc.communicate(json.dumps(spec), timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same quick transfer run with one process and with two (one run of each, reused)."""
    env = {"JOULELAB_CACHE": str(tmp_path_factory.mktemp("cache"))}
    out = {}
    for n in (1, 2):
        logs = tmp_path_factory.mktemp(f"p{n}")
        done, pid = _worker({**QUICK, "logs_dir": str(logs), "procs_per_node": n}, env)
        assert done.returncode == 0, done.stderr[-3000:]
        (run,) = list_runs(logs)
        out[n] = {"run": run, "summary": load_summary(run.path), "stream": done.stdout, "pid": pid}
    return out


@pytest.mark.slow
def test_one_process_meters_the_node_over_every_rank(runs):
    two = runs[2]
    manifest = json.loads((two["run"].path / "run.json").read_text())
    dp = manifest["data_parallel"]
    assert manifest["spec"]["procs_per_node"] == 2 and dp["world_size"] == 2 and dp["backend"] == "gloo"
    # one metering process: rank 0, over the tree of the launcher that started both ranks
    (metering,) = dp["metering"]
    assert metering["rank"] == 0 and metering["process_tree_of"] == two["pid"]
    assert [r["rank"] for r in dp["ranks"]] == [0, 1]
    assert manifest["pid"] == dp["ranks"][0]["pid"]
    # one hello, one done: the stream is the leader's alone
    types = [decode_event(line).type for line in two["stream"].splitlines()]
    assert types.count("hello") == 1 and types.count("done") == 1 and types.count("result") == 1
    # no rank outlives the run
    assert not any(psutil.pid_exists(r["pid"]) for r in dp["ranks"])


@pytest.mark.slow
def test_both_ranks_samples_are_counted_and_accuracy_matches_one_process(runs):
    one, two = runs[1]["summary"], runs[2]["summary"]
    # each rank trains half of every epoch; the sum is the whole split (the sampler pads a sample
    # per rank and the one-sample last batch is dropped, so at most 2 apart per epoch)
    assert abs(two.metrics.train_samples_seen - one.metrics.train_samples_seen) <= 2 * QUICK["epochs"]
    assert two.metrics.test_samples == one.metrics.test_samples  # evaluated once, on the whole test set
    assert abs(two.metrics.accuracy_frac - one.metrics.accuracy_frac) <= 0.15
    # the same phases, in the same order, each measured in full
    assert list(two.phases) == list(one.phases) == ["idle", "warmup", "pretrain", "train", "test"]
    assert not any(p.partial for p in two.phases.values())
    assert two.config == "synthetic/small-p2/transfer/baseline" and one.config == "synthetic/small/transfer/baseline"


@pytest.mark.slow
def test_a_one_process_run_is_written_as_before(runs):
    manifest = json.loads((runs[1]["run"].path / "run.json").read_text())
    assert "data_parallel" not in manifest and "procs_per_node" not in manifest["spec"]


@pytest.mark.slow
@pytest.mark.parametrize("rank", [1, 0, "1, then the agent's SIGTERM"])
def test_a_killed_rank_fails_the_run_keeping_its_energy_and_no_process(tmp_path, rank):
    spec = tiny_spec(tmp_path, **LONG, procs_per_node=2, idle_s=0.1, test_min_s=0.0)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.worker", "--spec", str(tmp_path / "spec.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )

    def training():
        runs = list_runs(tmp_path)
        if runs and runs[0].last_phase == "train" and '"progress"' in (runs[0].path / "events.jsonl").read_text():
            return runs[0]
        return None

    run = wait_until(training, timeout=120, what="the ranks to train")
    ranks = json.loads((run.path / "run.json").read_text())["data_parallel"]["ranks"]
    if rank == 1 or rank == 0:
        os.kill(ranks[rank]["pid"], signal.SIGKILL)
    else:  # the race: the agent's SIGTERM for the survivor arrives before it sees its peer gone
        os.kill(ranks[0]["pid"], signal.SIGSTOP)
        os.kill(ranks[1]["pid"], signal.SIGKILL)
        time.sleep(0.3)
        os.kill(ranks[0]["pid"], signal.SIGTERM)
        os.kill(ranks[0]["pid"], signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    events = [decode_event(line) for line in out.splitlines()]
    assert events[-1].type == "done" and events[-1].status == "failed" and proc.returncode == 1, err[-2000:]
    assert not any(psutil.pid_exists(r["pid"]) for r in ranks)  # no orphan rank
    if rank != 0:  # the leader saw its peer go and closed the record: the partial train phase is kept
        summary = load_summary(run.path)
        assert summary.status == "failed"
        # which rank died and how, in one line, before what gloo (or the cancel) said
        assert summary.error.startswith(f"rank 1 (pid {ranks[1]['pid']}) died: killed by SIGKILL; ")
        assert "\n" not in summary.error and [e.message for e in events if e.type == "error"] == [summary.error]
        assert summary.phases["train"].partial and summary.phases["train"].total.net_j > 0
        assert not summary.phases["warmup"].partial
    else:  # the leader itself is gone: the launcher says so; the measured phases are in the log
        assert run_status(run.path) == "crashed"
        assert "rank 0" in events[-2].message
        logged = [decode_event(line) for line in (run.path / "events.jsonl").read_text().splitlines()]
        assert [e.phase for e in logged if e.type == "phase_end"] == ["idle", "warmup"]


def test_window_edges_are_barriers_after_the_device_and_not_at_a_partial_end():
    calls: list[str] = []
    meter = PhaseMeter([], sample_hz=10, sync=lambda: calls.append("sync"), edge=lambda: calls.append("edge"))
    with meter:
        meter.begin_window("train")
        meter.end_window("train")
        meter.begin_window("test")
    # the open window ends partial on exit: no barrier a failed rank could never reach
    assert calls == ["sync", "edge", "sync", "edge", "sync", "edge", "sync"]


def test_slurm_rendezvous_is_node_zero_on_a_port_of_the_job():
    env = {"SLURM_JOB_ID": "4242", "SLURM_NNODES": "3", "SLURM_NODEID": "2", "SLURM_JOB_NODELIST": "gpu[07-09]"}
    r = rendezvous(env)
    assert (r.nodes, r.node_rank, r.endpoint, r.backend) == (3, 2, "gpu07:33742", "static")
    assert rendezvous({"SLURM_JOB_ID": "1", "SLURM_NNODES": "1"}).backend == "c10d"  # one node: its own
    assert rendezvous({}).endpoint == "127.0.0.1:0"
    assert first_node("cpu1,cpu2") == "cpu1" and first_node("n[3,5-6],m1") == "n3" and first_node("a") == "a"


def test_procs_per_node_is_checked():
    from engine.core.spec import SpecError, spec_from_dict

    with pytest.raises(SpecError, match="procs_per_node"):
        spec_from_dict({"procs_per_node": 0})
    with pytest.raises(SpecError, match="one GPU each"):
        spec_from_dict({"procs_per_node": 2, "device": "cuda:1"})
    assert spec_from_dict({**TINY, "procs_per_node": 2}).describe() == "synthetic/small-p2/scratch/baseline"


def test_the_scaling_preset_compares_transfer_with_scratch_at_each_number_of_processes():
    from engine.orchestrate import presets

    plan = presets.load("scaling").plan()
    assert sorted(p.config.key for p in plan) == [
        "synthetic/small-p2/scratch/baseline",
        "synthetic/small-p2/transfer/baseline",
        "synthetic/small/scratch/baseline",
        "synthetic/small/transfer/baseline",
    ]
    assert {p.config.key: p.spec.procs_per_node for p in plan}["synthetic/small-p2/scratch/baseline"] == 2
    # pairs stay within one number of processes: transfer is compared with scratch at each
    assert len({p.pair for p in plan}) == 2
    with pytest.raises(presets.PresetError, match="procs_per_node"):
        presets.parse({"matrix": {"procs_per_node": [0]}}, presets.Path("bad.toml"))


def test_the_command_line_and_the_lab_set_procs_per_node(tmp_path):
    from engine.cli import load_plan
    from tui.lab_plan import LabChoice, lab_plan

    _, plan = load_plan("quick", tmp_path, procs_per_node=2)
    assert {p.spec.procs_per_node for p in plan} == {2}
    items = lab_plan(LabChoice(mode="scratch", procs_per_node=2), logs_dir=tmp_path).items
    assert [(i.spec.procs_per_node, i.config) for i in items] == [(2, "synthetic/small-p2/scratch/baseline")]
