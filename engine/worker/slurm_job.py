"""The worker's view of the Slurm job it runs in: job, node and what was requested and granted,
for its environment manifest. The executor (engine.orchestrate.slurm) passes the requested and
granted resources in the environment (the `slurm` setting); this side only reads them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from engine.core.settings import Settings
from engine.worker.ranks import Rendezvous

RENDEZVOUS_PORT_BASE = 29500  # torchrun's default port; a job's own port is this plus its id's tail
RENDEZVOUS_PORTS = 20000


def job_manifest(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The Slurm part of a worker's environment manifest; None outside a Slurm job."""
    env = os.environ if environ is None else environ
    context_json = Settings.from_env(env).slurm
    if not env.get("SLURM_JOB_ID"):
        return None
    context = json.loads(context_json or "{}")
    array_job, index = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    requested, granted = context.get("requested") or {}, context.get("granted") or {}
    if requested.get("exclusive") and granted.get("exclusive"):
        note = "exclusive node requested and granted: no other job shared the metered package/GPU"
    elif granted.get("exclusive"):
        note = "exclusive node granted (not requested)"
    else:
        note = (
            "node NOT exclusive: other jobs may have shared the package/GPU, and their draw is in the "
            "RAPL/NVML readings (the model meter counts only this run's processes)"
        )
    return {
        "job_id": f"{array_job}_{index}" if array_job and index is not None else env["SLURM_JOB_ID"],
        "slurm_job_id": env["SLURM_JOB_ID"],
        "array_job_id": array_job,
        "array_index": int(index) if index is not None else None,
        # a job over several nodes is paired by its node set, a job on one node by its node
        "node": env.get("SLURM_JOB_NODELIST") if job_nodes(env) > 1 else env.get("SLURMD_NODENAME"),
        "nodes": job_nodes(env),
        "partition": env.get("SLURM_JOB_PARTITION"),
        "cpus_on_node": int(env["SLURM_CPUS_ON_NODE"]) if env.get("SLURM_CPUS_ON_NODE") else None,
        "job_gpus": env.get("SLURM_JOB_GPUS"),
        "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"),
        "requested": requested,
        "granted": granted,
        "exclusive": bool(granted.get("exclusive")),
        "note": note,
        "job_started": context.get("job_started"),
    }


def rendezvous(environ: Mapping[str, str] | None = None) -> Rendezvous:
    """Where a data-parallel run's ranks meet: inside a Slurm job of several nodes, node 0 of the
    job's node list on a port derived from the job id (every node derives the same), each node's
    rank its SLURM_NODEID; anywhere else, this node alone."""
    env = os.environ if environ is None else environ
    nodes = job_nodes(env)
    if nodes < 2:
        return Rendezvous()
    port = RENDEZVOUS_PORT_BASE + int(env["SLURM_JOB_ID"]) % RENDEZVOUS_PORTS
    master = first_node(env["SLURM_JOB_NODELIST"])
    return Rendezvous(nodes=nodes, node_rank=int(env.get("SLURM_NODEID", "0")), endpoint=f"{master}:{port}")


def job_nodes(env: Mapping[str, str]) -> int:
    """How many nodes the Slurm job has (1 outside a job)."""
    if not env.get("SLURM_JOB_ID"):
        return 1
    return int(env.get("SLURM_NNODES") or env.get("SLURM_JOB_NUM_NODES") or 1)


def first_node(nodelist: str) -> str:
    """The first host of a Slurm node list ("gpu[03-05,07],cpu1" -> "gpu03"), as
    `scontrol show hostnames` would print it first."""
    head = nodelist.split(",")[0] if "[" not in nodelist.split(",")[0] else nodelist[: nodelist.index("]") + 1]
    if "[" not in head:
        return head
    prefix, ranges = head[: head.index("[")], head[head.index("[") + 1 : head.index("]")]
    return prefix + ranges.split(",")[0].split("-")[0]
