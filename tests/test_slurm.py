"""The Slurm executor: one job per pair through submitit, exclusive nodes, pairing within a node.

Tests marked `slurm` submit to a real Slurm (`.ci/slurm-up` starts a one-node cluster); without
one they skip with the reason, except under CI=true, where a missing Slurm is a failure.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from engine.analysis.stats import compare
from engine.core.events import PhaseStart
from engine.orchestrate import slurm
from engine.orchestrate.presets import load
from engine.worker.slurm_job import job_manifest
from tests.helpers import REPO, TINY, tiny_spec
from tests.test_stats import summary as fake_summary

# The quick preset, with settings that keep each run to a few seconds.
TINY_QUICK = (
    (REPO / "presets" / "quick.toml").read_text().split("[settings]")[0]
    + "[settings]\n"
    + "\n".join(
        f"{k} = {json.dumps(v)}" for k, v in {**TINY, "pretrain_epochs": 1}.items() if k not in ("dataset", "size")
    )
    + "\n"
)


@functools.cache  # asked once per session: an unreachable controller takes sinfo ~10 s to report
def slurm_missing() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no Slurm here (sinfo/sbatch not on PATH); start one with .ci/slurm-up"
    out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return f"no Slurm reachable (sinfo: {out.stderr.strip()[:200]}); start one with .ci/slurm-up"
    return None


@pytest.fixture
def real_slurm():
    reason = slurm_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true needs a real Slurm: {reason}")
        pytest.skip(reason)


def joulelab(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        **kw,
    )


@pytest.fixture
def quick_preset(tmp_path) -> Path:
    path = tmp_path / "quick.toml"
    path.write_text(TINY_QUICK)
    return path


@pytest.fixture
def idling_preset(tmp_path) -> Path:
    """quick, tiny, but each run idles 5 s first, so a cancel lands inside a run, not after it."""
    path = tmp_path / "quick.toml"
    path.write_text(TINY_QUICK.replace("idle_s = 0.3", "idle_s = 5.0"))
    assert "idle_s = 5.0" in path.read_text()
    return path


def run_json(logs: Path, run_id: str) -> dict:
    return json.loads((logs / run_id / "run.json").read_text())


# -- without a scheduler --------------------------------------------------------------------------
def test_one_group_per_trial_keeps_the_pair_together(quick_preset):
    plan = load(str(quick_preset)).plan(trials=3)
    groups = slurm.pair_groups(plan)
    assert [[(p.config.mode, p.trial) for p in g] for g in groups] == [
        [("transfer", t), ("scratch", t)] for t in range(3)
    ]
    assert all(g[0].spec.seed == g[1].spec.seed for g in groups)


def test_job_manifest_records_job_array_node_and_what_was_granted():
    assert job_manifest({}) is None
    context = {"requested": {"exclusive": True, "gpus": 0}, "granted": {"OverSubscribe": "NO", "exclusive": True}}
    env = {
        "SLURM_JOB_ID": "42",
        "SLURM_ARRAY_JOB_ID": "40",
        "SLURM_ARRAY_TASK_ID": "2",
        "SLURMD_NODENAME": "n7",
        "SLURM_CPUS_ON_NODE": "64",
        "SLURM_JOB_GPUS": "0,1",
        "CUDA_VISIBLE_DEVICES": "0,1",
        slurm.CONTEXT_ENV: json.dumps(context),
    }
    m = job_manifest(env)
    assert (m["job_id"], m["slurm_job_id"], m["array_index"], m["node"], m["cpus_on_node"]) == (
        "40_2",
        "42",
        2,
        "n7",
        64,
    )
    assert m["job_gpus"] == "0,1" and m["exclusive"] and "requested and granted" in m["note"]
    shared = job_manifest({**env, slurm.CONTEXT_ENV: json.dumps({"granted": {"exclusive": False}})})
    assert not shared["exclusive"] and "NOT exclusive" in shared["note"]


def test_stats_pair_within_a_node_and_add_an_all_row():
    def on(node, s):
        return msgspec.structs.replace(s, slurm={"node": node})

    runs = [
        on("a", fake_summary("transfer", 0, 10, 0.9, pretrain_j=50)),
        on("a", fake_summary("scratch", 0, 40, 0.9)),
        on("b", fake_summary("transfer", 1, 12, 0.9, pretrain_j=50)),
        on("b", fake_summary("scratch", 1, 30, 0.9)),
        # seed 2's runs landed on different nodes: not a pair
        on("a", fake_summary("transfer", 2, 10, 0.9, pretrain_j=50)),
        on("b", fake_summary("scratch", 2, 40, 0.9)),
    ]
    rows = {c.group: c for c in compare(runs)}
    assert set(rows) == {"synthetic/small/baseline @a", "synthetic/small/baseline @b", "synthetic/small/baseline @all"}
    assert rows["synthetic/small/baseline @a"].pairs == 1 and rows[
        "synthetic/small/baseline @a"
    ].train_ratio.mean == pytest.approx(0.25)
    assert rows["synthetic/small/baseline @b"].train_ratio.mean == pytest.approx(0.4)
    assert rows["synthetic/small/baseline @all"].pairs == 2
    # One node (or local runs): the label is unchanged, as for a local run.
    (only,) = compare(runs[:2])
    assert only.group == "synthetic/small/baseline"


def test_ctrl_c_without_a_terminal_cancels_and_says_so():
    cancel, message = slurm.interrupt_choice(interactive=False, ask=lambda _: pytest.fail("must not ask"))
    assert cancel and "no terminal" in message and "cancelling" in message
    asked = []
    cancel, message = slurm.interrupt_choice(True, ask=lambda q: asked.append(q) or False)
    assert not cancel and "left the jobs running" in message and asked


def test_event_tail_waits_for_a_whole_line(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = slurm.EventTail(path)
    assert tail.read() == []
    line = json.dumps({"v": 1, "type": "phase_start", "run": "r", "t": 0.0, "phase": "idle"})
    path.write_text(line[:10])
    assert tail.read() == []
    with open(path, "a") as f:
        f.write(line[10:] + "\n")
    (event,) = tail.read()
    assert isinstance(event, PhaseStart) and event.phase == "idle"


@pytest.mark.slow
def test_no_sbatch_is_one_line_and_exit_2(tmp_path, quick_preset):
    empty = tmp_path / "bin"
    empty.mkdir()
    out = joulelab(
        "run",
        str(quick_preset),
        "--executor",
        "slurm",
        "--logs",
        str(tmp_path / "logs"),
        env={**os.environ, "PATH": str(empty)},
    )
    assert out.returncode == 2, out.stderr
    assert "no `sbatch` on PATH" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_job_callable_runs_the_pair_in_sequence_through_the_worker(tmp_path):
    """run_group, pickled and run by submitit's local executor (no scheduler): both runs, in order."""
    import submitit

    logs = tmp_path / "logs"
    specs = [tiny_spec(logs, mode=mode, run_id=f"r{i}", seed=3) for i, mode in enumerate(("scratch", "scratch"))]
    job = submitit.LocalExecutor(folder=tmp_path / "jobs").submit(slurm.run_group, specs, {"exclusive": True})
    results = job.result()
    assert [(r["run_id"], r["status"]) for r in results] == [("r0", "complete"), ("r1", "complete")]
    first, second = (json.loads((logs / rid / "summary.json").read_text()) for rid in ("r0", "r1"))
    assert second["started"] >= first["started"]
    assert run_json(logs, "r0")["environment"]["slurm"] is None  # not a Slurm job


# -- against the real scheduler -------------------------------------------------------------------
def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def node_name() -> str:
    return subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]


def comparison_rows(stdout: str) -> list[tuple]:
    return [(c["group"], c["treatment"], c["reference"], c["pairs"]) for c in json.loads(stdout)["comparisons"]]


@pytest.mark.slurm
@pytest.mark.slow
def test_quick_through_slurm_pairs_on_one_node_like_a_local_run(real_slurm, tmp_path, quick_preset):
    logs = tmp_path / "logs"
    out = joulelab("run", str(quick_preset), "--executor", "slurm", "--logs", str(logs), "--format", "json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [r["status"] for r in result["runs"]] == ["complete", "complete"]
    manifests = [run_json(logs, r["run_id"]) for r in result["runs"]]
    jobs = [m["environment"]["slurm"] for m in manifests]
    (record,) = slurm.load_records(logs.resolve())
    (job,) = record["jobs"]
    # Both runs of the pair: one job, one node, one after the other, exclusively.
    assert [j["job_id"] for j in jobs] == [job["job_id"], job["job_id"]] and job["job_id"] in result["jobs"]
    assert [j["node"] for j in jobs] == [node_name()] * 2
    assert all(j["requested"]["exclusive"] and j["granted"]["OverSubscribe"] == "NO" and j["exclusive"] for j in jobs)
    assert [m["spec"]["mode"] for m in manifests] == ["transfer", "scratch"]
    first_end = json.loads((logs / result["runs"][0]["run_id"] / "summary.json").read_text())["ended"]
    assert manifests[1]["started"] >= first_end
    assert json.loads((logs / result["runs"][0]["run_id"] / "summary.json").read_text())["slurm"]["node"] == node_name()

    listed = json.loads(joulelab("jobs", "--logs", str(logs), "--format", "json").stdout)
    assert [(j["job_id"], j["state"], j["node"]) for j in listed] == [(job["job_id"], "done", node_name())]

    # The same comparison as a local run of the same preset.
    slurm_cmp = joulelab("compare", "--last", "--logs", str(logs), "--format", "json")
    local_logs = tmp_path / "local"
    assert joulelab("run", str(quick_preset), "--logs", str(local_logs), "--format", "json").returncode == 0
    local_cmp = joulelab("compare", "--last", "--logs", str(local_logs), "--format", "json")
    assert (
        comparison_rows(slurm_cmp.stdout)
        == comparison_rows(local_cmp.stdout)
        == [("synthetic/small/baseline", "transfer", "scratch", 1)]
    )


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.parametrize("interrupted", [0, 1], ids=["during-transfer", "during-scratch"])
def test_ctrl_c_cancels_the_jobs_without_a_terminal_and_resume_resubmits_them(
    real_slurm, tmp_path, idling_preset, interrupted
):
    """Ctrl-C with no terminal cancels the job; --resume reruns what did not complete (a completed
    transfer is kept, and its scratch partner reruns on the same node), and the batch compares."""
    logs = tmp_path / "logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(idling_preset), "--executor", "slurm", "--logs", str(logs)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        record = wait_until(lambda: slurm.latest_record(logs.resolve()), 60, "the submission record")
        (job,) = record["jobs"]
        first = job["runs"][interrupted]["run_id"]
        wait_until(
            lambda: (
                b'"phase_start"' in (logs / first / "events.jsonl").read_bytes()
                if (logs / first / "events.jsonl").exists()
                else False
            ),
            120,
            f"run {interrupted} to start",
        )
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "no terminal to ask: cancelling the submitted jobs" in stderr
    assert f"cancelled 1 job(s): {job['job_id']}" in stderr
    wait_until(lambda: job["job_id"] not in slurm.queue_states(), 60, "the job to leave the queue")
    states = [slurm.run_state(logs, r["run_id"]) for r in job["runs"]]
    # The running worker got scancel's SIGTERM and kept its log; the pair's other run never started.
    assert states == (["cancelled", "not started"] if interrupted == 0 else ["complete", "cancelled"])
    assert json.loads((logs / first / "summary.json").read_text())["error"] == "cancelled by SIGTERM"
    listed = json.loads(joulelab("jobs", "--logs", str(logs), "--format", "json").stdout)
    assert [(j["job_id"], j["state"]) for j in listed] == [(job["job_id"], "cancelled")]

    out = joulelab("run", "--executor", "slurm", "--resume", "--logs", str(logs))
    assert out.returncode == 0, out.stderr
    listed = json.loads(joulelab("jobs", "--logs", str(logs), "--format", "json").stdout)
    assert [j["state"] for j in listed] == ["resubmitted", "done"]
    assert listed[0]["resubmitted_as"] == listed[1]["job_id"] != job["job_id"]
    rerun = [run_json(logs, rid) for rid in listed[1]["runs"]]
    assert [m["spec"]["mode"] for m in rerun] == (["transfer", "scratch"] if interrupted == 0 else ["scratch"])
    assert {m["environment"]["slurm"]["job_id"] for m in rerun} == {listed[1]["job_id"]}
    if interrupted == 1:  # the rerun was pinned to the node of its completed partner
        assert rerun[0]["environment"]["slurm"]["requested"]["exclusive"]
        assert (
            rerun[0]["environment"]["slurm"]["node"]
            == run_json(logs, job["runs"][0]["run_id"])["environment"]["slurm"]["node"]
        )
        assert "nodelist" in (logs / ".jobs" / record["batch"] / f"{listed[1]['job_id']}_submission.sh").read_text()
    compared = joulelab("compare", "--last", "--logs", str(logs), "--format", "json")
    assert comparison_rows(compared.stdout) == [("synthetic/small/baseline", "transfer", "scratch", 1)]
    # Nothing left to resume: says so, submits nothing.
    again = joulelab("run", "--executor", "slurm", "--resume", "--logs", str(logs))
    assert again.returncode == 0 and "nothing failed or was lost" in again.stdout


@pytest.mark.slurm
def test_bad_partition_is_one_line_and_exit_2(real_slurm, tmp_path, quick_preset):
    out = joulelab(
        "run", str(quick_preset), "--executor", "slurm", "--partition", "nosuch", "--logs", str(tmp_path / "logs")
    )
    assert out.returncode == 2
    assert "--partition nosuch: no such partition; this cluster has: " in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_resume_with_nothing_submitted_is_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm, "check_cluster", lambda options: None)
    from typer.testing import CliRunner

    from engine.cli import app

    result = CliRunner().invoke(app, ["run", "--executor", "slurm", "--resume", "--logs", str(tmp_path)])
    assert result.exit_code == 2
    assert "nothing to resume" in result.output


@pytest.mark.slurm
@pytest.mark.slow
def test_ctrl_c_at_a_terminal_asks_and_can_leave_the_jobs_running(real_slurm, tmp_path, idling_preset):
    import pty

    logs = tmp_path / "logs"
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(idling_preset), "--executor", "slurm", "--logs", str(logs)],
        cwd=REPO,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""

    def read_until(text: bytes, timeout: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen and time.monotonic() < deadline:
            try:
                seen += os.read(controller, 65536)
            except OSError:
                break
        assert text in seen, seen[-2000:]

    try:
        record = wait_until(lambda: slurm.latest_record(logs.resolve()), 60, "the submission record")
        (job,) = record["jobs"]
        first = job["runs"][0]["run_id"]
        wait_until(lambda: (logs / first / "events.jsonl").exists(), 120, "the first run to start")
        proc.send_signal(signal.SIGINT)
        read_until(b"Cancel the submitted Slurm jobs?", 30)
        os.write(controller, b"n\n")
        read_until(b"left the jobs running", 30)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert job["job_id"] in slurm.queue_states()  # still queued or running: not cancelled
    # A job that is still running is not resubmitted.
    out = joulelab("run", "--executor", "slurm", "--resume", "--logs", str(logs))
    assert out.returncode == 0 and "resubmitted 0 job(s)" in out.stdout, out.stderr
    # It finishes on its own, and writes complete logs.
    wait_until(lambda: job["job_id"] not in slurm.queue_states(), 240, "the job to finish")
    listed = json.loads(joulelab("jobs", "--logs", str(logs), "--format", "json").stdout)
    assert [(j["job_id"], j["state"]) for j in listed] == [(job["job_id"], "done")]


# -- the lab's Presets tab --------------------------------------------------------------------------
def slurm_box(app) -> str:
    from textual.widgets import Static

    return str(app.query_one("#preset-slurm", Static).render())


async def test_the_presets_tab_says_why_it_cannot_submit(tmp_path, quick_preset, monkeypatch):
    from tests.tui.conftest import make_app, press, wait_for

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    app = make_app(tmp_path / "logs", preset_paths=[quick_preset])
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "p", "u")
        await wait_for(pilot, lambda: "no `sbatch` on PATH" in slurm_box(app), what="the Slurm error")
    assert not slurm.load_records((tmp_path / "logs").resolve())


@pytest.mark.slurm
@pytest.mark.slow
async def test_the_presets_tab_submits_to_slurm_and_follows_the_jobs(real_slurm, tmp_path, quick_preset):
    from engine.store.run_log import list_runs
    from tests.tui.conftest import make_app, press, wait_for

    logs = tmp_path / "logs"
    app = make_app(logs, preset_paths=[quick_preset])
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "p", "u")
        await wait_for(
            pilot,
            lambda: "running on" in slurm_box(app) and " W " in slurm_box(app),
            timeout=120,
            what="live watts from the running job",
        )
        await wait_for(pilot, lambda: "all jobs ended" in slurm_box(app), timeout=180, what="the jobs to end")
        assert "done: transfer complete, scratch complete" in slurm_box(app)
    (record,) = slurm.load_records(logs.resolve())
    runs = list_runs(logs)
    assert len(runs) == 2 and all(r.status == "complete" for r in runs)
    assert {r.manifest.environment["slurm"]["job_id"] for r in runs} == {record["jobs"][0]["job_id"]}
