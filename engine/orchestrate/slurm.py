"""Run a preset's plan on a Slurm cluster through submitit: one job per pair, on one node.

The energy rules, in code:
- a pair (or trial group: every mode of one configuration group and one seed) is ONE job, whose
  callable (`run_group`) runs `python -m engine.worker` for each spec in turn on its node, so the
  runs of a pair see the same machine, one after the other;
- a job asks for its node exclusively by default (RAPL and NVML meter a whole package or GPU);
  what was requested and what Slurm granted (`scontrol show job`) go into every run's run.json
  (`environment.slurm`) and the job's stdout;
- the node is recorded per run, so the statistics can pair within a node (engine/stats.py).

The worker, its protocol and its log are the same as for a local run; the logs directory must be
on a filesystem the nodes share. Submissions are recorded in `<logs>/.jobs/<batch>.json`, which
`joulelab jobs` lists and `joulelab run --resume` resubmits from. A job's state comes from
`squeue` while it is queued or running, and from its runs' logs afterwards (no accounting
database is needed).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from engine.core.errors import JouleLabError
from engine.core.events import FAILED_STATUSES
from engine.core.records import ConfigKey
from engine.core.run_files import EVENTS, RUN_JSON, atomic_write_json
from engine.core.settings import env_var
from engine.core.spec import RunSpec, new_run_id, spec_from_dict
from engine.orchestrate.event_fold import RunFold
from engine.orchestrate.presets import PlannedRun
from engine.store.run_log import EventTail, summary_status

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console
    from submitit import Job, SlurmExecutor

JOBS_DIR = ".jobs"
CONTEXT_ENV = env_var("slurm")  # requested/granted resources, passed from the job to its workers
ACTIVE = ("queued", "running")
RESUBMITTABLE = ("failed", "cancelled", "lost")


class SlurmError(JouleLabError):
    """Slurm cannot take the jobs (no sbatch, unknown partition, refused submission). One line."""


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_job: int = 0
    time_min: int = 60
    exclusive: bool = True
    max_parallel: int | None = None
    nodes: int = 1  # a job over several nodes: each run data-parallel over all of them, each node metered

    def requested(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "gpus": self.gpus_per_job,
            "time_min": self.time_min,
            "exclusive": self.exclusive,
            "max_parallel": self.max_parallel,
            "nodes": self.nodes,
        }

    @classmethod
    def from_requested(cls, requested: dict[str, Any]) -> SlurmOptions:
        """The options of a recorded submission (what --resume resubmits with)."""
        return cls(
            requested.get("partition"),
            requested.get("gpus") or 0,
            requested.get("time_min") or 60,
            bool(requested.get("exclusive", True)),
            requested.get("max_parallel"),
            requested.get("nodes") or 1,
        )

    def describe(self) -> str:
        parts = [
            f"partition {self.partition or '(default)'}",
            "an exclusive node per job" if self.exclusive else "a shared node (not exclusive)",
            f"{self.gpus_per_job} GPU(s)" if self.gpus_per_job else "no GPU",
            f"time limit {self.time_min} min",
        ]
        if self.nodes > 1:
            parts.append(f"{self.nodes} nodes per job, one task each (every run data-parallel over them)")
        if self.max_parallel:
            parts.append(f"at most {self.max_parallel} jobs at once")
        return ", ".join(parts)


# -- before submitting ------------------------------------------------------------------------
def check_cluster(options: SlurmOptions) -> None:
    """Refuse early, in one line, when this machine cannot submit the jobs."""
    if shutil.which("sbatch") is None:
        raise SlurmError(
            "no `sbatch` on PATH: this machine cannot submit to Slurm; run on a login node of "
            "the cluster, or use --executor local"
        )
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmError(f"cannot reach Slurm (sinfo: {exc})") from None
    if out.returncode != 0:
        raise SlurmError(f"cannot reach Slurm (sinfo: {out.stderr.strip().splitlines()[-1:] or out.returncode})")
    partitions = sorted(set(out.stdout.split()))
    if options.partition is not None and options.partition not in partitions:
        raise SlurmError(
            f"--partition {options.partition}: no such partition; this cluster has: {', '.join(partitions) or 'none'}"
        )
    if options.nodes > 1:  # a job of more nodes than the partition has would wait forever
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %R"], capture_output=True, text=True, timeout=30)
        hosts = {
            line.split()[0]
            for line in out.stdout.splitlines()
            if line.split() and (options.partition is None or line.split()[-1] == options.partition)
        }
        if out.returncode == 0 and len(hosts) < options.nodes:
            where = f"partition {options.partition}" if options.partition else "this cluster"
            raise SlurmError(f"--nodes {options.nodes}: {where} has {len(hosts)} node(s); ask for at most {len(hosts)}")


def pair_groups(plan: list[PlannedRun]) -> list[list[PlannedRun]]:
    """One group per (configuration group, trial): the runs that are compared with each other, in
    plan order (each mode in turn). Each group becomes one job."""
    groups: dict[tuple[str, int], list[PlannedRun]] = {}
    for planned in plan:
        groups.setdefault((planned.config.group, planned.trial), []).append(planned)
    return list(groups.values())


# -- inside the job ---------------------------------------------------------------------------
def granted_resources(job_id: str | None = None) -> dict[str, Any]:
    """What Slurm granted this job, from `scontrol show job` (empty outside a job or on error)."""
    job_id = job_id or os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return {}
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    fields = dict(tok.split("=", 1) for tok in out.stdout.split() if "=" in tok)
    keep = (
        "NodeList",
        "NumNodes",
        "NumCPUs",
        "TRES",
        "OverSubscribe",
        "Partition",
        "TimeLimit",
        "SubmitTime",
        "StartTime",
    )
    granted: dict[str, Any] = {k: fields[k] for k in keep if k in fields}
    if "OverSubscribe" in fields:
        granted["exclusive"] = fields["OverSubscribe"] == "NO"
    return granted


async def _run_one(spec: RunSpec, env: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    from engine.orchestrate.worker_process import WorkerProcess

    worker = WorkerProcess(spec, env=env)
    await worker.start()
    assert worker.proc is not None
    current["pgid"] = worker.proc.pid  # the worker leads its own process group (session)
    async for _ in worker.events():  # the worker writes its own log; the job only waits for the end
        pass
    outcome = await worker.wait()
    current.pop("pgid", None)
    return {"run_id": outcome.run_id, "status": outcome.status, "exit_code": outcome.exit_code, "error": outcome.error}


def _run_other_node(spec: RunSpec, env: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A node other than the job's first: its worker starts this node's ranks, which meter the node
    and write its node record; the run's log and events are node 0's, so nothing is read here."""
    from engine.orchestrate.worker_process import worker_command

    with subprocess.Popen(
        worker_command(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, start_new_session=True
    ) as proc:
        current["pgid"] = proc.pid
        proc.communicate(json.dumps(spec.to_dict()).encode())
    current.pop("pgid", None)
    status = "complete" if proc.returncode == 0 else "cancelled" if proc.returncode == 130 else "failed"
    return {"run_id": spec.run_id, "status": status, "exit_code": proc.returncode, "error": None}


def run_group(specs: list[dict[str, Any]], requested: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's callable: run each spec of the group through the worker, in order, on this node.
    scancel (or the time limit) sends this process SIGTERM: it is passed on to the running worker's
    process group, which ends its run as cancelled and keeps its log (within Slurm's KillWait),
    and no further run of the group starts. (The worker runs in its own session, so Slurm's signal
    to the job step does not reliably reach it, and submitit itself ignores SIGTERM.)"""
    stopping: list[str] = []
    current: dict[str, Any] = {}

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signal.Signals(signum).name)
        if current.get("pgid"):
            try:
                os.killpg(current["pgid"], signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    signal.signal(signal.SIGTERM, forward)
    context = {"requested": requested, "granted": granted_resources(), "job_started": time.time()}
    print(
        f"joulelab: job {os.environ.get('SLURM_JOB_ID')} on {os.environ.get('SLURMD_NODENAME')}: "
        f"requested {json.dumps(requested)}; granted {json.dumps(context['granted'])}",
        flush=True,
    )
    env = dict(os.environ, **{CONTEXT_ENV: json.dumps(context)})
    results = []
    for data in specs:
        if stopping:
            print(f"joulelab: {stopping[0]}: no further run of this job starts", flush=True)
            break
        spec = spec_from_dict(data)
        if int(os.environ.get("SLURM_NODEID") or 0) > 0:
            result = _run_other_node(spec, env, current)
        else:
            result = asyncio.run(_run_one(spec, env, current))
        print(f"joulelab: run {result['run_id']} {result['status']}", flush=True)
        results.append(result)
        if result["status"] == "cancelled":
            break
    return results


# -- submitting -------------------------------------------------------------------------------
def make_executor(folder: Path, options: SlurmOptions, name: str, nodelist: str | None = None) -> SlurmExecutor:
    import submitit

    executor = submitit.SlurmExecutor(folder=folder)
    # one task per node: each starts its node's ranks (engine.worker.ranks), node 0's leads the run
    params = {"job_name": f"joulelab-{name}", "time": options.time_min, "nodes": options.nodes, "ntasks_per_node": 1}
    if options.partition:
        params["partition"] = options.partition
    if options.exclusive:
        params["exclusive"] = True
    if options.gpus_per_job:
        params["gpus_per_node"] = options.gpus_per_job
    if options.max_parallel:
        params["array_parallelism"] = options.max_parallel
    if nodelist:
        params["nodelist"] = nodelist
    executor.update_parameters(**params)
    return executor


def record_path(logs_dir: Path, batch: str) -> Path:
    return logs_dir / JOBS_DIR / f"{batch}.json"


def _submit_groups(
    executor: SlurmExecutor, groups: list[list[dict[str, Any]]], requested: dict[str, Any]
) -> list[Job[list[dict[str, Any]]]]:
    try:
        with executor.batch():
            return [executor.submit(run_group, specs, requested) for specs in groups]
    except Exception as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        reason = next((ln.strip() for ln in lines if "error" in ln.lower()), lines[-1].strip() if lines else repr(exc))
        raise SlurmError(f"Slurm refused the jobs: {reason}") from None


def _job_entry(
    job: Job[list[dict[str, Any]]], label: str, specs: list[dict[str, Any]], submit_s: float
) -> dict[str, Any]:
    return {
        "job_id": str(job.job_id),
        "label": label,
        "submitted": time.time(),
        "submit_s": submit_s,
        "runs": [{"run_id": s["run_id"], "config": s.get("config")} for s in specs],
        "specs": specs,
        "resubmitted_as": None,
    }


def submit_plan(plan: list[PlannedRun], options: SlurmOptions, logs_dir: Path, preset: str) -> dict[str, Any]:
    """Give every run an id, submit one job per pair group (one job array), record the submission."""
    logs_dir = logs_dir.resolve()
    batch = new_run_id()
    groups, labels = [], []
    for group in pair_groups(plan):
        groups.append(
            [replace(p.spec, batch=batch, run_id=new_run_id(), logs_dir=str(logs_dir)).to_dict() for p in group]
        )
        labels.append(f"{group[0].config.group} #{group[0].trial + 1}")
    record = {
        "batch": batch,
        "preset": preset,
        "logs_dir": str(logs_dir),
        "created": time.time(),
        "options": options.requested(),
        "jobs": [],
    }
    folder = logs_dir / JOBS_DIR / batch
    executor = make_executor(folder, options, preset)
    t0 = time.monotonic()
    jobs = _submit_groups(executor, groups, options.requested())
    submit_s = time.monotonic() - t0
    record["jobs"] = [_job_entry(j, label, specs, submit_s) for j, label, specs in zip(jobs, labels, groups)]
    atomic_write_json(record_path(logs_dir, batch), record)
    return record


def load_records(logs_dir: Path) -> list[dict[str, Any]]:
    folder = logs_dir / JOBS_DIR
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(records, key=lambda r: r.get("created", 0))


def latest_record(logs_dir: Path, preset: str | None = None) -> dict[str, Any] | None:
    records = [r for r in load_records(logs_dir) if preset is None or r.get("preset") == preset]
    return records[-1] if records else None


# -- states -----------------------------------------------------------------------------------
def queue_states() -> dict[str, tuple[str, str]]:
    """job id -> (Slurm state, node list) for this user's jobs in the queue (array tasks one by one)."""
    try:
        out = subprocess.run(
            ["squeue", "--me", "-h", "-r", "-o", "%i|%T|%N"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmError(f"cannot read the Slurm queue (squeue: {exc})") from None
    if out.returncode != 0:  # never read a failed query as "every job has left the queue"
        raise SlurmError(f"cannot read the Slurm queue (squeue: {out.stderr.strip()[:200]})")
    states = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def run_state(logs_dir: Path, run_id: str) -> str:
    """The summary's status (engine.store.run_log.summary_status); without one, started (a log:
    its worker runs, or ran, on a node whose processes this machine cannot see) or not started."""
    path = logs_dir / run_id
    status = summary_status(path)
    if status is not None:
        return status
    return "started" if (path / RUN_JSON).exists() else "not started"


def run_node(logs_dir: Path, run_id: str) -> str | None:
    try:
        manifest = json.loads((logs_dir / run_id / RUN_JSON).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return ((manifest.get("environment") or {}).get("slurm") or {}).get("node")


def job_state(job: dict[str, Any], logs_dir: Path, queue: dict[str, tuple[str, str]]) -> str:
    """queued | running (from squeue), else done | cancelled | failed | lost (from the runs' logs).
    A job whose runs have all completed is done, even while Slurm still tears it down."""
    states = [run_state(logs_dir, r["run_id"]) for r in job["runs"]]
    if all(s == "complete" for s in states):
        return "done"
    if job["job_id"] in queue:
        slurm_state = queue[job["job_id"]][0]
        return "queued" if slurm_state in ("PENDING", "CONFIGURING", "REQUEUED", "SUSPENDED") else "running"
    if "cancelled" in states:
        return "cancelled"
    if any(s in FAILED_STATUSES for s in states):
        return "failed"
    return "lost"  # left the queue with runs that never finished: killed, node failure, time limit


def current_jobs(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs that count: those not replaced by a resubmission."""
    return [j for j in record["jobs"] if not j.get("resubmitted_as")]


def cancel_jobs(record: dict[str, Any], job_ids: list[str]) -> None:
    """scancel through submitit, one job (array task) at a time."""
    import submitit

    folder = Path(record["logs_dir"]) / JOBS_DIR / record["batch"]
    for job_id in job_ids:
        submitit.SlurmJob(folder=folder, job_id=job_id).cancel(check=False)


def resubmit(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Resubmit each current job that failed, was cancelled or lost, with the resources of the
    original submission. Runs that completed are kept; the rest run again under new ids, on the
    node of a completed partner when there is one, so the pair still shares a node. Returns the
    new job entries (the record is updated on disk)."""
    logs_dir = Path(record["logs_dir"])
    options = SlurmOptions.from_requested(record["options"])
    queue = queue_states()
    new_entries = []
    for job in current_jobs(record):
        if job_state(job, logs_dir, queue) not in RESUBMITTABLE:
            continue
        done = [r for r in job["runs"] if run_state(logs_dir, r["run_id"]) == "complete"]
        nodes = {run_node(logs_dir, r["run_id"]) for r in done} - {None}
        specs = [dict(s, run_id=new_run_id()) for s in job["specs"] if run_state(logs_dir, s["run_id"]) != "complete"]
        executor = make_executor(
            logs_dir / JOBS_DIR / record["batch"],
            options,
            record["preset"],
            nodelist=next(iter(nodes)) if len(nodes) == 1 else None,
        )
        t0 = time.monotonic()
        (new_job,) = _submit_groups(executor, [specs], options.requested())
        entry = _job_entry(new_job, job["label"], specs, time.monotonic() - t0)
        entry["kept_runs"] = done
        job["resubmitted_as"] = entry["job_id"]
        new_entries.append(entry)
    record["jobs"].extend(new_entries)
    atomic_write_json(record_path(logs_dir, record["batch"]), record)
    return new_entries


def batch_run_ids(record: dict[str, Any]) -> list[str]:
    """Every run of the batch that counts: current jobs' runs plus the complete runs they kept."""
    ids = []
    for job in current_jobs(record):
        ids += [r["run_id"] for r in job.get("kept_runs", [])] + [r["run_id"] for r in job["runs"]]
    return ids


# -- following --------------------------------------------------------------------------------
@dataclass
class JobView:
    """What a person watching sees of one job: its state, and the run it is on."""

    job_id: str
    label: str
    state: str
    detail: str
    energy: str
    finished: int  # runs of the job that have ended
    total: int

    def line(self) -> str:
        return f"job {self.job_id} {self.label}: {self.detail}  {self.energy}".rstrip()


class Follower:
    """Polls the jobs of a submission: queue state from squeue, live watts and joules of the run
    each job is on from its events.jsonl (the one event fold, as for a local run)."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record, self.logs_dir = record, Path(record["logs_dir"])
        self.tails: dict[str, EventTail] = {}
        self.lives: dict[str, RunFold] = {}

    def poll(self) -> list[JobView]:
        """One look at every current job. Raises SlurmError when the queue cannot be read."""
        queue = queue_states()
        views = []
        for job in current_jobs(self.record):
            state = job_state(job, self.logs_dir, queue)
            detail, energy, finished = state, "", 0
            for run in job["runs"]:
                rid = run["run_id"]
                tail = self.tails.setdefault(rid, EventTail(self.logs_dir / rid / EVENTS))
                live = self.lives.setdefault(rid, RunFold())
                for event in tail.read():
                    live.update(event)
                finished += live.status is not None
                if live.joules_now and live.status is None:
                    node = queue.get(job["job_id"], ("", ""))[1]
                    detail = f"{state} on {node or '?'}: {run['config']}  {live.progress_text()}"
                    energy = live.energy_text()
            if state not in ACTIVE:
                detail = f"{state}: " + ", ".join(
                    f"{_mode(r)} {run_state(self.logs_dir, r['run_id'])}" for r in job["runs"]
                )
            views.append(JobView(job["job_id"], job["label"], state, detail, energy, finished, len(job["runs"])))
        return views


def _mode(run: dict[str, Any]) -> str:
    """The run's mode as its job line names it (its id when the job record has no configuration)."""
    config = run.get("config")
    return ConfigKey.parse(config).mode if config else str(run["run_id"])


def follow(record: dict[str, Any], console: Console | None, poll_s: float = 1.0) -> dict[str, str]:
    """Show queued/running/done per job, with live watts and joules of the run each job is on,
    until no job is queued or running. Returns the final state of each current job.
    KeyboardInterrupt propagates to the caller."""
    from engine.orchestrate.plan_runner import run_progress

    follower = Follower(record)
    progress, tasks = None, {}
    if console is not None:
        progress = run_progress(console, counts=False)
    try:
        while True:
            try:
                views = follower.poll()
            except SlurmError:  # a slurmctld that does not answer for a moment: ask again
                time.sleep(poll_s)
                continue
            if progress is not None:
                for v in views:
                    if v.job_id not in tasks:
                        tasks[v.job_id] = progress.add_task(
                            f"job {v.job_id} {v.label}", total=v.total, detail="", energy=""
                        )
                    progress.update(tasks[v.job_id], completed=v.finished, detail=v.detail, energy=v.energy)
            if not any(v.state in ACTIVE for v in views):
                return {v.job_id: v.state for v in views}
            time.sleep(poll_s)
    finally:
        if progress is not None:
            progress.stop()


def interrupt_choice(interactive: bool, ask: Callable[[str], bool] | None = None) -> tuple[bool, str]:
    """Ctrl-C while following: (cancel?, what to say). With a terminal the user is asked; without
    one (a script, CI, nohup) the jobs are cancelled, so nothing keeps running unseen."""
    if not interactive or ask is None:
        return True, "no terminal to ask: cancelling the submitted jobs (scancel)"
    if ask("Cancel the submitted Slurm jobs? (no: leave them running)"):
        return True, "cancelling the submitted jobs (scancel)"
    return False, "left the jobs running; follow them with `joulelab jobs`, resume with `joulelab run --resume`"
