"""Runs over several nodes (#22 item 3): each node's metering process writes its node record, the
leader sums them into the run's phases with every node's energy and provenance, and pairs stay
within a node set. Only one node exists here: two worker launchers on this machine play two
nodes of one Slurm job (the rendezvous from Slurm's variables), each metering "its" node."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import msgspec
import pytest
from typer.testing import CliRunner

from engine.analysis.stats import compare
from engine.cli import app
from engine.core.energy import gather_nodes
from engine.core.records import EnergyValue, MeterDomain, NodeRecord, PhaseRecord, PhaseTotal
from engine.orchestrate.slurm import SlurmError, SlurmOptions, check_cluster, make_executor
from engine.outputs.tables import run_notes
from engine.store.run_log import load_summary
from engine.worker.slurm_job import job_manifest, rendezvous
from tests.helpers import REPO, make_summary, tiny_spec
from tests.test_slurm import real_slurm  # noqa: F401 (a fixture)


def node(rank: int, net_j: float, source: str, method: str) -> NodeRecord:
    energy = EnergyValue(gross_j=net_j + 1, idle_j=1.0, net_j=net_j, source=source, method=method, kind="cpu")
    total = PhaseTotal(gross_j=net_j + 1, idle_j=1.0, net_j=net_j, source=source, methods=[method], error_rel=0.05)
    return NodeRecord(
        node_rank=rank,
        host=f"n{rank + 1}",
        rank=2 * rank,
        phases={"train": PhaseRecord(duration_s=3.0 + rank / 100, energy={"cpu": energy}, total=total)},
        meters=[MeterDomain(name="cpu", source=source, method=method, kind="cpu")],
    )


def test_the_runs_phases_are_the_nodes_sum_and_a_modelled_node_makes_the_total_say_so():
    phases, nodes, note = gather_nodes(
        [node(1, 5.0, "modelled", "model:tdp-cpu-time"), node(0, 3.0, "counter", "rapl:package-0")], 2
    )
    train = phases["train"]
    assert train.total.net_j == 8.0 and train.total.gross_j == 10.0 and train.total.known
    assert train.total.source == "modelled"  # the weakest of the nodes'
    assert set(train.energy) == {"node0:cpu", "node1:cpu"} and train.duration_s == 3.01
    assert [(n.node_rank, n.host, n.source, n.phases["train"].net_j) for n in nodes] == [
        (0, "n1", "counter", 3.0),
        (1, "n2", "modelled", 5.0),
    ]
    assert (
        note is not None and "mixes methods" in note and "node0 (n1) counter" in note and "node1 (n2) modelled" in note
    )


def test_a_node_that_never_reported_leaves_the_total_a_gap_not_a_smaller_number():
    phases, nodes, note = gather_nodes([node(0, 3.0, "counter", "rapl:package-0")], 2)
    assert phases["train"].total.gap == ["node1:not reported"] and not phases["train"].total.known
    assert [n.reported for n in nodes] == [True, False]
    assert note is not None and "no record from node1" in note
    same = gather_nodes([node(0, 3.0, "counter", "rapl:package-0"), node(1, 4.0, "counter", "rapl:package-0")], 2)
    assert same[2] is None  # one method on every node: nothing to say


def test_a_job_of_several_nodes_is_paired_by_its_node_set():
    env = {"SLURM_JOB_ID": "77", "SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "n[1-2]"}
    manifest = job_manifest({**env, "SLURMD_NODENAME": "n2"})
    assert manifest is not None and manifest["node"] == "n[1-2]" and manifest["nodes"] == 2
    assert rendezvous(env).node_rank == 1 and rendezvous(env).endpoint.startswith("n1:")
    one = {"slurm": {"node": "n1"}}
    two = {"slurm": {"node": "n[1-2]"}}
    runs = [
        make_summary("synthetic/small-p2/transfer/baseline", 0, 1.0, 0.9, **two),
        make_summary("synthetic/small-p2/scratch/baseline", 0, 4.0, 0.9, **one),
    ]
    assert [c.pairs for c in compare(runs)] == [0]  # different node sets: no pair


def test_slurm_asks_for_k_nodes_with_one_task_each(tmp_path):
    options = SlurmOptions(nodes=3)
    assert options.requested()["nodes"] == 3 and SlurmOptions.from_requested(options.requested()).nodes == 3
    params = make_executor(tmp_path, options, "t").parameters
    assert params["nodes"] == 3 and params["ntasks_per_node"] == 1
    refused = CliRunner().invoke(app, ["run", "quick", "--nodes", "2", "--logs", str(tmp_path)])
    assert refused.exit_code == 2 and "--executor local" in refused.output


@pytest.mark.slow
def test_two_simulated_nodes_each_meter_themselves_and_the_leader_sums_them(tmp_path):
    logs = tmp_path / "logs"
    spec = tiny_spec(logs, run_id="two-nodes", mode="transfer", reuse_source=True, idle_s=0.1, test_min_s=0.0)
    job = str(random.randint(1000, 19000))  # the rendezvous port derives from it
    procs = []
    for node_id in (0, 1):
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "JOULELAB_CACHE": str(tmp_path / "cache"),
            "SLURM_JOB_ID": job,
            "SLURM_NNODES": "2",
            "SLURM_NODEID": str(node_id),
            "SLURM_JOB_NODELIST": "localhost",
            "SLURMD_NODENAME": "localhost",
        }
        with open(tmp_path / f"stderr{node_id}", "w") as stderr:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "engine.worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE if node_id == 0 else subprocess.DEVNULL,
                    stderr=stderr,
                    text=True,
                    env=env,
                )
            )
    assert procs[1].stdin is not None
    procs[1].stdin.write(json.dumps(spec))
    procs[1].stdin.close()
    out, _ = procs[0].communicate(json.dumps(spec), timeout=240)
    procs[1].wait(timeout=60)
    errors = "".join((tmp_path / f"stderr{n}").read_text() for n in (0, 1))
    assert procs[0].returncode == 0 and procs[1].returncode == 0, errors
    run = logs / "two-nodes"
    records = [msgspec.json.decode((run / "nodes" / f"{n}.json").read_bytes(), type=NodeRecord) for n in (0, 1)]
    assert [(r.node_rank, r.rank) for r in records] == [(0, 0), (1, 1)] and all(r.meters for r in records)
    summary = load_summary(run)
    assert summary is not None
    assert summary.status == "complete" and summary.node == "localhost"
    train = summary.phases["train"].total
    assert train.net_j == pytest.approx(sum(r.phases["train"].total.net_j for r in records))
    assert {n.node_rank: n.phases["train"].net_j for n in summary.nodes} == {
        r.node_rank: r.phases["train"].total.net_j for r in records
    }
    assert set(summary.phases["train"].energy) == {
        f"node{n}:{d}" for n in (0, 1) for d in records[n].phases["train"].energy
    }
    # pretrained on both nodes: its record is their sum, and not cached with node 0's joules alone
    assert summary.pretrain is not None and summary.pretrain.total is not None
    assert summary.pretrain.total.net_j == pytest.approx(sum(r.phases["pretrain"].total.net_j for r in records))
    assert (summary.pretrain.cache_problem or "").startswith("not saved: a run over several nodes")
    per_sample = summary.metrics.j_per_train_sample
    assert per_sample is not None and per_sample.value == pytest.approx(
        train.net_j / summary.metrics.train_samples_seen
    )
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in events].count("done") == 1  # one run log: node 1's launcher writes none
    assert json.loads((run / "run.json").read_text())["data_parallel"]["nodes"] == 2
    notes = run_notes(summary)  # `joulelab show`: each node's part under the summed phases
    assert any(line.startswith("node1 (") and "metered by rank 1" in line for line in notes)


@pytest.mark.slurm
@pytest.mark.slow
def test_more_nodes_than_the_cluster_has_is_refused_in_one_line(real_slurm):  # noqa: F811
    with pytest.raises(SlurmError, match=r"^--nodes 64: this cluster has 1 node\(s\); ask for at most 1$"):
        check_cluster(SlurmOptions(nodes=64))
    check_cluster(SlurmOptions(nodes=1))
