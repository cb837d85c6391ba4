"""Data-parallel runs: the ranks of one run, how the worker starts them, and what each one does.

A spec with `procs_per_node = N > 1` makes the worker a launcher: it starts N ranks with PyTorch's
own elastic agent (as `torchrun` does), each `python -m engine.worker --spec FILE --rank`, and
waits. Every rank runs the same steps on its share of the training data (DistributedDataParallel,
gloo on the CPU, NCCL on GPUs, one GPU per rank); phase edges are barriers across all ranks.

One process per node meters: its local rank zero. RAPL counts whole packages, NVML whole GPUs and
the model counts a process tree, so that one process reads the node's meters over the tree of
every rank the launcher started; a meter in every rank would count the node once per rank. The
run's leader (global rank zero, the metering rank of node 0) writes the run log and evaluates the
network once on the whole test set; the other ranks log nothing.

The ranks inherit the launcher's stdout (the event stream), so the leader's events reach the
reader as a single worker's would. They run in sessions of their own (the agent's choice), so each
rank asks the kernel to kill it if the launcher dies: a killed launcher leaves no orphans.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.core.spec import RunSpec

if TYPE_CHECKING:
    import torch

RANK_FLAG = "--rank"  # the worker's argument that makes it a rank of a launched run
PROCESS_GROUP_TIMEOUT_S = 600  # a rank that never reaches a collective ends the run after this long
RANK_EXITS = "rank-exits.json"  # beside the ranks' spec file: how each rank ended, as its launcher saw it
WATCH_S = 0.02  # how often the launcher looks for a rank's exit
# the agent's check for ended ranks (torch's default is 0.1 s): slower than the launcher's own look,
# so the launcher reads a rank's exit status before the agent reaps it
MONITOR_S = 0.5


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in its run: rank, local rank, and how many there are."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0
    launcher_pid: int | None = None  # the process that started the node's ranks (its tree is metered)
    exits_file: Path | None = None  # where the launcher writes how each rank ended (RANK_EXITS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, spec_file: str | None = None) -> Ranks:
        """The ranks as torch's elastic agent describes them to each process it starts."""
        env = os.environ if environ is None else environ
        return cls(
            exits_file=Path(spec_file).parent / RANK_EXITS if spec_file else None,
            rank=int(env["RANK"]),
            local_rank=int(env["LOCAL_RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            local_world_size=int(env["LOCAL_WORLD_SIZE"]),
            node_rank=int(env.get("GROUP_RANK", "0")),
            launcher_pid=os.getppid(),
        )

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    @property
    def nodes(self) -> int:
        """How many nodes the run spans (each meters itself)."""
        return self.world_size // self.local_world_size

    @property
    def meters(self) -> bool:
        """This process reads its node's meters (the node's local rank zero)."""
        return self.local_rank == 0

    @property
    def leads(self) -> bool:
        """This process writes the run log and evaluates the network (global rank zero)."""
        return self.rank == 0

    def join(self, device: torch.device, timeout_s: float = PROCESS_GROUP_TIMEOUT_S) -> None:
        """Join the run's process group: NCCL for GPU ranks, gloo on the CPU. A GPU rank is bound
        to its own GPU first: without it NCCL's barriers and reductions use cuda:0 in every rank
        (torch warns this may hang)."""
        from datetime import timedelta

        import torch
        import torch.distributed as dist

        if self.parallel:
            cuda = device.type == "cuda"
            if cuda:
                torch.cuda.set_device(device)
            dist.init_process_group(
                "nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s), device_id=device if cuda else None
            )

    def leave(self) -> None:
        # A one-process run imports nothing here: a cancel can land while torch is half imported,
        # and importing it again on the way out raises instead of ending the run cancelled
        dist = sys.modules.get("torch.distributed") if self.parallel else None
        if dist is not None and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        """Every rank reaches this point before any goes on (a phase edge)."""
        if self.parallel:
            import torch.distributed as dist

            dist.barrier()

    def sum(self, value: int) -> int:
        """`value` summed over every rank (samples trained on)."""
        if not self.parallel:
            return value
        import torch
        import torch.distributed as dist

        # gloo reduces CPU tensors; NCCL needs the rank's GPU (the current device, set in join)
        device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor([value], dtype=torch.int64, device=device)
        dist.all_reduce(t)
        return int(t.item())

    def gather(self, value: Any) -> list[Any]:
        """`value` from every rank, in rank order, on every rank (picklable objects)."""
        if not self.parallel:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def record(self, backend: str, metering: list[dict[str, Any]]) -> dict[str, Any]:
        """run.json's data_parallel: how the run was split and which process metered each node."""
        return {
            "procs_per_node": self.local_world_size,
            "threads_per_rank": _threads_now(),
            "nodes": self.nodes,
            "world_size": self.world_size,
            "backend": backend,
            "launcher": "torch.distributed.launcher.api.elastic_launch",
            "metering": metering,
            "note": "one process per node (its local rank zero) reads the node's meters over the process "
            "tree of all its ranks; phase edges are barriers across every rank",
        }


def _threads_now() -> int:
    import torch

    return int(torch.get_num_threads())


@dataclass(frozen=True)
class RankExit:
    pid: int
    how: str  # "killed by SIGKILL", "exit code 1", or "ended (exit status not seen)"
    code: int | None  # the exit code; None when killed by a signal or not seen
    at: float  # time.time() when the launcher saw it
    seen: bool = True  # False: the agent reaped it before the launcher could read how it ended


class ExitWatch(threading.Thread):
    """In the launcher: each rank's exit as the kernel reports it, seen before the agent reaps the
    rank (waitid with WNOWAIT leaves it waitable), written to RANK_EXITS for the leader, which
    would otherwise know only gloo's "Connection reset by peer" and not which rank went, or how."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="joulelab-rank-exits", daemon=True)
        self.path = path
        self.done = threading.Event()
        self.exits: dict[int, RankExit] = {}
        self.alive: set[int] = set()

    def run(self) -> None:
        while not self.done.wait(WATCH_S):
            children = _children()
            changed = False
            for pid in children - self.exits.keys():
                self.alive.add(pid)
                try:
                    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:
                    continue
                if info is not None:
                    self.exits[pid] = _rank_exit(pid, info)
                    changed = True
            for pid in self.alive - children - self.exits.keys():  # reaped before it was seen
                self.exits[pid] = RankExit(pid, "ended (exit status not seen)", None, time.time(), seen=False)
                changed = True
            if changed:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps([e.__dict__ for e in self.exits.values()]))
                os.replace(tmp, self.path)

    def stop(self) -> None:
        self.done.set()
        self.join()


def _children() -> set[int]:
    found: set[int] = set()
    for task in Path("/proc/self/task").glob("*/children"):
        try:
            found.update(int(p) for p in task.read_text().split())
        except OSError:
            pass
    return found


def _rank_exit(pid: int, info: os.waitid_result) -> RankExit:
    if info.si_code == os.CLD_EXITED:
        return RankExit(pid, f"exit code {info.si_status}", info.si_status, time.time())
    try:
        name = signal.Signals(info.si_status).name
    except ValueError:
        name = f"signal {info.si_status}"
    return RankExit(pid, f"killed by {name}", None, time.time())


def rank_exits(path: Path | None) -> list[RankExit]:
    """The ranks' exits the launcher has seen so far (none outside a data-parallel run)."""
    if path is None:
        return []
    try:
        return [RankExit(**e) for e in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []


def die_with_launcher(launcher_pid: int) -> None:
    """Ask the kernel to SIGKILL this rank when its launcher dies (Linux); if the launcher is
    already gone, go now. The agent starts ranks in sessions of their own, so nothing else would."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != launcher_pid:
        os._exit(1)


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks of a run find each other: on one node, a free local port; over several
    nodes, node 0's address and a port every node derives the same way (engine.worker.slurm_job)."""

    nodes: int = 1
    node_rank: int = 0
    endpoint: str = "127.0.0.1:0"

    @property
    def backend(self) -> str:
        # one node: torchrun --standalone's c10d store on a free port; several: every node knows
        # its rank and node 0's address, so the static rendezvous needs no extra store
        return "c10d" if self.nodes == 1 else "static"


def group_timeout_s(spec: RunSpec) -> float:
    """How long a rank waits at a collective: the leader alone cools down, runs timed inference
    and writes the log while the others wait at the next phase edge, so those settings add to it."""
    return PROCESS_GROUP_TIMEOUT_S + spec.cooldown_s + spec.test_min_s


def threads_per_rank(spec: RunSpec, cores: int | None = None) -> int:
    """Intra-op threads of each rank: the spec's, or the node's cores shared out among its ranks,
    so N processes use the cores one process would (not N x 1 thread against all of them)."""
    if spec.threads:
        return spec.threads
    return max(1, (cores or os.cpu_count() or 1) // spec.procs_per_node)


def launch(spec: RunSpec, rendezvous: Rendezvous, stream_fd: int) -> dict[int, int]:
    """Start the spec's ranks on this node and wait for them; returns the exit code of every rank
    that failed (a negative code: killed by that signal), {} when all succeeded.

    The ranks' stdout is `stream_fd` (the event stream), their stderr this process's."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    with tempfile.TemporaryDirectory(prefix="joulelab-ranks-") as scratch:
        spec_file = Path(scratch) / "spec.json"
        spec_file.write_text(json.dumps(spec.to_dict()))
        config = LaunchConfig(
            min_nodes=rendezvous.nodes,
            max_nodes=rendezvous.nodes,
            nproc_per_node=spec.procs_per_node,
            run_id=spec.run_id,
            rdzv_backend=rendezvous.backend,
            rdzv_endpoint=rendezvous.endpoint,
            rdzv_configs={"rank": rendezvous.node_rank} if rendezvous.backend == "static" else {},
            max_restarts=0,  # a failed rank fails the run: a restarted one would meter a different run
            monitor_interval=MONITOR_S,
            logs_specs=DefaultLogsSpecs(log_dir=str(Path(scratch) / "agent")),
            # the worker ignores SIGHUP (a dropped SSH session must not end a run); so do its ranks
            signals_to_handle="SIGTERM,SIGINT",
        )
        # the node's cores shared out among its ranks (torchrun's default of one thread each would
        # compare N threads with all the cores a one-process run gets), unless the user set it
        os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_rank(spec)))
        # the ranks inherit fd 1: point it at the event stream while they are started
        saved = os.dup(1)
        os.dup2(stream_fd, 1)
        watch = ExitWatch(Path(scratch) / RANK_EXITS)
        watch.start()
        try:
            elastic_launch(config, sys.executable)("-m", "engine.worker", "--spec", str(spec_file), RANK_FLAG)
        except ChildFailedError as exc:
            return {rank: failure.exitcode for rank, failure in exc.failures.items()}
        finally:
            watch.stop()
            os.dup2(saved, 1)
            os.close(saved)
    return {}
