"""The worker: one process runs one spec, meters it, streams events and writes the run log.

    python -m engine.worker [--spec FILE]      (without --spec, the spec is JSON on stdin)

The event stream is a duplicate of the original stdout; fd 1 itself is pointed at stderr, so a
stray print from any library lands in stderr.log instead of corrupting the stream. Every event is
written to events.jsonl first (flushed per line) and then to the stream; if the reader vanishes
(broken pipe: the SSH session dropped), the worker stops writing to it and finishes the run.

Exit codes: 0 complete, 1 failed, 2 bad input (spec, data, logs directory), 3 the run log could
not be written (disk full, quota or file-size limit: the cause goes to the stream), 130 cancelled.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, ParamSpec, TextIO

import msgspec

from engine.core.energy import per_unit_energy
from engine.core.errors import EXIT_USAGE, JouleLabError
from engine.core.events import FinalStatus, encode, make_event
from engine.core.process import process_started
from engine.core.records import (
    CurvePoint,
    MeterDomain,
    Metrics,
    MissingMeter,
    NodeEnergy,
    NodeRecord,
    PhaseRecord,
    PretrainRecord,
    Pruning,
    RunManifest,
    RunSummary,
    to_json_object,
)
from engine.core.run_files import EVENTS, NODES, SUMMARY, StoreError, atomic_write_json, check_writable
from engine.core.spec import RunSpec, SpecError, new_run_id, spec_from_dict
from engine.core.timestamps import now_stamp
from engine.worker import pretraining
from engine.worker.device import Device, DeviceError
from engine.worker.event_log import (
    DISK_FULL_ERRNOS,
    EXIT_LOG_UNWRITABLE,
    EventWriter,
    LogWriteError,
    disk_message,
    to_stderr,
)
from engine.worker.manifest import announce_meters, environment_manifest, write_manifest
from engine.worker.pretraining import SourceNetwork
from engine.worker.ranks import RANK_FLAG, Ranks, die_with_launcher, group_timeout_s, rank_exits
from engine.worker.slurm_job import rendezvous

if TYPE_CHECKING:
    import torch

    from engine.worker.data import PreparedData, Split
    from engine.worker.models import Network
    from engine.worker.phase_meter import PhaseMeter
    from engine.worker.power_limit import HeldLimit
    from engine.worker.thermal import RunThermal
    from engine.worker.train import Precision, Progress

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130
# how long a rank whose run fails waits to learn from its launcher which other rank died, if one did:
# after a collective failed (the launcher may not have seen the death yet), and after a SIGTERM
PEER_EXIT_WAIT_S = 2.0
PEER_EXIT_SIGNALLED_WAIT_S = 0.1


class Cancelled(Exception):
    """SIGTERM or SIGINT arrived: stop, keep what was measured, label it partial."""


class _Signals:
    """SIGTERM/SIGINT become Cancelled in the main thread, but never half-way through writing an
    event line: inside `critical()` the signal is held and raised as soon as the line is whole.

    Only the first signal cancels. Cancels often come in twos (Slurm's scancel signals every
    process of the job, and the job passes it on; a user presses Ctrl-C twice); a second Cancelled
    raised while the first is being handled would escape the handler and lose the summary."""

    in_critical = False
    pending: str | None = None
    cancelled = False
    received: str | None = None  # a cancel arrived (an import it interrupted may re-raise it as ImportError)
    received_at: float | None = None  # when (time.time()): a rank's death before it is no cancel

    @classmethod
    def handler(cls, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if cls.received is None:
            cls.received_at = time.time()
        cls.received = name
        if cls.cancelled:
            return
        if cls.in_critical:
            cls.pending = name
            return
        cls.cancelled = True
        raise Cancelled(name)

    @classmethod
    def enter(cls) -> bool:
        if threading.current_thread() is not threading.main_thread() or cls.in_critical:
            return False
        cls.in_critical = True
        return True

    @classmethod
    def leave(cls) -> None:
        cls.in_critical = False
        if cls.pending is not None and not cls.cancelled:
            name, cls.pending = cls.pending, None
            cls.cancelled = True
            raise Cancelled(name)


@dataclass
class Task:
    """The target task's data on the run's device, and the source task's (transfer) on the host."""

    target: Split
    x_val: torch.Tensor
    y_val: torch.Tensor
    source: Split
    gap: int  # windows left out between training and validation, so no window straddles both


@dataclass
class Networks:
    """What the run trains: a network built here (scratch) or the source network (transfer, finetune)."""

    lr: float
    net: Network | None = None
    source: SourceNetwork | None = None


class Run:
    """One run of one spec, from the idle baseline to the summary; `execute` reads top to bottom."""

    def __init__(self, spec: RunSpec, run_path: Path, writer: EventWriter, ranks: Ranks | None = None) -> None:
        self.spec = spec
        self.path = run_path
        self.w = writer
        self.ranks = ranks or Ranks()  # a data-parallel run's ranks (engine.worker.ranks); one by default
        self.manifest = RunManifest(  # run.json, written as the run learns more
            run_id=spec.run_id,
            spec=spec.to_dict(),
            pid=os.getpid(),
            started=now_stamp(),
        )
        self.meter: PhaseMeter | None = None  # opened by open_meters(), before any phase
        self.thermal: RunThermal | None = None  # the GPU's thermal guard (a metered GPU only)
        self.curve: list[CurvePoint] = []
        self.metrics = Metrics()
        self.pretrain: PretrainRecord | None = None  # the source network's pretraining: measured here or cached
        self._device: Device | None = None  # resolved at the start of execute()
        self.precision: Precision | None = None  # for the amp mechanism; None is fp32
        self.power_limit: HeldLimit | None = None  # for the power-limit mechanism: put back at the end
        self.started = time.monotonic()
        self.node_record_written = False  # a multi-node run: this node's record is on disk
        # a multi-node run, on the leader: the run's phases, each node's energy and the note on them
        self.nodes: tuple[dict[str, PhaseRecord], list[NodeEnergy], str | None] | None = None

    @property
    def device(self) -> Device:
        """The run's device: execute() resolves it before anything uses it."""
        if self._device is None:
            raise RuntimeError("the run's device is used before execute() resolved it")
        return self._device

    @property
    def metering(self) -> PhaseMeter:
        """The run's meters: open_meters() opens them before any phase."""
        if self.meter is None:
            raise RuntimeError("the meters are read before open_meters() opened them")
        return self.meter

    @property
    def last_phase(self) -> str | None:
        return self.meter.last_window if self.meter is not None else None

    # -- the run --------------------------------------------------------------------------
    def execute(self) -> None:
        self.prepare_device()
        self.hold_power_limit()
        self.open_meters()
        data = self.prepare_data()
        self.check_network(data)
        self.measure_idle()
        task = self.load_data(data)
        networks = self.build_networks(task)
        self.warm_up(task, networks)
        net = self.target_network(task, networks)
        train_samples = self.train(net, task, networks.lr)
        if self.spec.prune > 0:
            train_samples += self.prune(net, task, networks.lr)
        self.test(net, task, train_samples)
        self.gather_nodes()
        self.report_result()

    def prepare_device(self) -> None:
        """Resolve the device and its numerics (precision, threads, denormals)."""
        import torch

        from engine.worker.device import resolve_device
        from engine.worker.train import Precision

        spec, ranks = self.spec, self.ranks
        self._device = resolve_device(spec.device)
        if ranks.parallel and self.device.is_cuda:
            self._device = resolve_device(f"cuda:{ranks.local_rank}")  # one GPU per rank
        ranks.join(torch.device(self.device.name), group_timeout_s(spec))
        if spec.amp:
            if not self.device.is_cuda:
                raise DeviceError(
                    f"amp: mixed precision is not applicable on the CPU (device {spec.device!r} "
                    f'resolved to cpu); run it with device = "cuda" on a machine with a GPU'
                )
            self.precision = Precision.for_cuda()
        if self.asks_power_limit and not self.device.is_cuda:
            raise DeviceError(
                f"power-limit: a GPU power limit is not applicable on the CPU (device {spec.device!r} "
                f'resolved to cpu); run it with device = "cuda" on a machine with a GPU'
            )
        self.manifest.precision = self.precision.name if self.precision else "float32"
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.manifest.flush_denormal = torch.set_flush_denormal(spec.flush_denormal) and spec.flush_denormal

    @property
    def asks_power_limit(self) -> bool:
        return self.spec.power_limit_w is not None or self.spec.power_limit_fraction is not None

    def hold_power_limit(self) -> None:
        """On a GPU: report the power limits earlier runs left set; for the power-limit mechanism,
        set this run's limit (refused in one line outside the GPU's range or without permission,
        and while an earlier run's limit on this GPU is still to be put back)."""
        if not self.device.is_cuda:
            return
        from engine.worker import power_limit

        leftovers, problems = power_limit.read_leftovers()
        self.manifest.power_limit_leftover = [power_limit.leftover_line(r) for r in leftovers] + problems
        for line in self.manifest.power_limit_leftover:
            to_stderr(f"joulelab worker: {line}")
        if not self.asks_power_limit:
            self.write_manifest()
            return
        uuid = self.device.info.get("uuid")
        if not uuid:
            raise power_limit.PowerLimitError(
                f"power-limit: torch gives no UUID for {self.device.name}, so NVML cannot tell which GPU to limit"
            )
        mine = [r for r in leftovers if r.uuid.upper() == uuid.upper()]
        if mine:
            then = "; wait for it to end" if mine[0].held_by_a_live_run() else ", then start this run again"
            raise power_limit.PowerLimitError(power_limit.leftover_line(mine[0]) + then)
        # A cancel that arrives while the limit is set waits until it is held here, to be put back.
        guarded = _Signals.enter()
        try:
            self.power_limit = power_limit.HeldLimit.hold(
                uuid,
                watts=self.spec.power_limit_w,
                fraction=self.spec.power_limit_fraction,
                run_id=self.w.run_id,
            )
            self.manifest.power_limit = dict(self.power_limit.record)
        finally:
            if guarded:
                _Signals.leave()
        self.write_manifest()

    def restore_power_limit(self) -> None:
        """Put back the limit the run set (after success, failure or cancel), and say so."""
        if self.power_limit is None:
            return
        self.power_limit.restore()
        record = self.power_limit.record
        self.manifest.power_limit = dict(record)
        if record["restore_error"]:
            to_stderr(f"joulelab worker: {record['restore_error']}")
        try:
            self.write_manifest()
        except OSError:
            pass  # the summary keeps it too

    def open_meters(self) -> None:
        """Open the meters, record them, say hello, and start sampling."""
        from engine.worker.phase_meter import BACKGROUND_EVENTS, PhaseMeter

        def on_event(event_type: str, /, **fields: Any) -> None:
            if event_type in BACKGROUND_EVENTS:
                # a failed write has already stopped the main thread; the sampler just goes on
                _quietly(self.w.emit, event_type, **fields)
            else:
                self.w.emit(event_type, **fields)

        dev, spec, ranks = self.device, self.spec, self.ranks
        if not ranks.meters:
            # another rank on this node meters it; this one only keeps the phase edges with it
            self.meter = PhaseMeter([], sample_hz=spec.sample_hz, sync=dev.sync, edge=ranks.barrier)
        else:
            self.meter = PhaseMeter.discover(
                sample_hz=spec.sample_hz,
                # the tree of every rank of this node, under the process that started them
                pid=ranks.launcher_pid or os.getpid(),
                tdp_w=spec.tdp_w,
                gpu_uuids=self.gpus_metered(),
                sync=dev.sync,
                edge=ranks.barrier,
                on_event=on_event,
            )
        meter = self.meter
        if ranks.parallel:
            self.manifest.data_parallel = data_parallel_record(ranks, dev, meter)
        if ranks.leads:
            announce_meters(self.path, self.manifest, meter, dev, spec=spec.to_dict(), emit=self.w.emit)
        meter.start()

    def gpus_metered(self) -> list[str] | None:
        """The GPUs NVML meters ([]: none; None: every visible one): the run's, or with
        data-parallel ranks every GPU of this node's ranks."""
        from engine.worker.device import cuda_info

        dev = self.device
        if not dev.is_cuda:
            return []
        infos = [cuda_info(i) for i in range(self.ranks.local_world_size)] if self.ranks.parallel else [dev.info]
        uuids = [str(i["uuid"]) for i in infos if i.get("uuid")]
        return uuids if len(uuids) == len(infos) else None

    def measure_idle(self) -> None:
        """The idle baseline (the machine's draw with this process doing nothing), between the
        thermal guard's cool-down and its keeping of this run's idle state."""
        from engine.worker.thermal import RunThermal

        meter = self.metering
        guard = RunThermal.for_run(meter.nvml, self.device.is_cuda, self.w.run_id)
        if guard is not None:
            guard.cool_down(self.spec.cooldown_s)
            self.thermal = guard
            self.manifest.thermal = guard.record
            self.write_manifest()
        meter.measure_idle(self.spec.idle_s)
        if self.thermal is not None:
            self.thermal.keep_idle_baseline(meter.idle_watts)

    def prepare_data(self) -> PreparedData:
        """The data, read and split before any metered phase (a data problem costs no idle baseline)."""
        from engine.worker.data.prepare import prepare

        return prepare(self.spec)

    def check_network(self, data: PreparedData) -> None:
        """A user's network is built once on the data's shape before any metered phase, so a
        factory that cannot be imported, raises, returns no module or has no head stops the run
        here with its one line (exit 2), not after the idle baseline."""
        if self.spec.model is None:
            return
        from engine.worker.networks import make_network

        for split in (data.target, data.source):
            make_network(self.spec, split.input_shape, split.n_classes)

    def load_data(self, data: PreparedData) -> Task:
        """The data, split for validation, recorded, and copied to the device once for the run."""
        from engine.worker.data.prepare import holdout
        from engine.worker.train import set_seed

        spec = self.spec
        if data.holdout_gap is not None:
            gap = data.holdout_gap
        else:
            gap = -(-spec.window // spec.stride) if data.kind == "windows" else 0
        target, x_val_host, y_val_host = holdout(data.target, spec.val_fraction, gap)
        set_seed(spec.seed)
        self.manifest.dataset = {
            "name": data.name,
            "label": data.label,
            "synthetic": data.synthetic,
            "kind": data.kind,
            "target_classes": target.n_classes,
            "train_samples": len(target.x_train),
            "val_samples": len(x_val_host),
            "test_samples": len(target.x_test),
            **data.info,
        }
        # The data lives on the device for the whole run: copied once here, never per batch.
        dev = self.device
        return Task(dev.place_split(target), dev.tensor(x_val_host), dev.tensor(y_val_host), data.source, gap)

    def build_networks(self, task: Task) -> Networks:
        """Scratch: a new network. Transfer: the source network, from the cache (its pretraining
        energy comes with it, labelled cached) or new, to be pretrained."""
        from engine.worker.networks import make_network

        spec = self.spec
        if spec.mode not in ("transfer", "finetune"):
            target = task.target
            net = make_network(spec, target.input_shape, target.n_classes)
            return Networks(lr=spec.lr, net=net.to(self.device.name))
        source = pretraining.open_source(spec, self.device, task.source, task.gap)
        if self.ranks.sum(source.cached is not None) not in (0, self.ranks.world_size):
            raise RuntimeError("the source-network cache changed while the ranks started; run again")
        if source.cached is not None and self.ranks.leads:
            self.pretrain = pretraining.cached_pretraining(source, self.metering, self.metrics)
        lr = spec.lr if spec.mode == "transfer" else spec.lr * spec.finetune_lr_factor
        return Networks(lr=lr, source=source)

    def warm_up(self, task: Task, networks: Networks) -> None:
        """Unmetered warm-up of every network this process will train, before the first metered
        phase, so that no phase pays the process's one-off start-up costs (see train.warm_up)."""
        import torch

        from engine.worker.train import warm_up

        spec, target, source = self.spec, task.target, networks.source
        with torch.random.fork_rng(devices=[]):
            jobs = []
            if source is not None:
                if source.cached is None:
                    jobs.append((source.net, source.split.x_train, source.split.y_train, spec.lr))
                copied = self.adapt(copy.deepcopy(source.net), target.n_classes)
                jobs.append((copied, target.x_train, target.y_train, networks.lr))
            else:
                assert networks.net is not None
                jobs.append((networks.net, target.x_train, target.y_train, networks.lr))
            self.metering.begin_window("warmup")
            steps = sum(
                warm_up(n, x, y, batch_size=spec.batch_size, lr=lr, augment=spec.augment, precision=self.precision)
                for n, x, y, lr in jobs
            )
            self.metering.end_window("warmup", steps=steps, networks=len(jobs))

    def target_network(self, task: Task, networks: Networks) -> Network:
        """The network to train: scratch's, or the source network (pretrained here unless cached)
        adapted to the target task; recorded in run.json."""
        from engine.worker.models import count_parameters, flops_not_counted, flops_per_sample

        source = networks.source
        if source is not None:
            if source.cached is None:
                self.pretrain = pretraining.pretrain_source(
                    source,
                    self.spec,
                    self.metering,
                    self.metrics,
                    run_id=self.w.run_id,
                    precision=self.precision,
                    on_progress=self.progress,
                    on_epoch=self.epoch_point,
                    ranks=self.ranks,
                )
            net = self.adapt(source.net, task.target.n_classes)
        else:
            assert networks.net is not None
            net = networks.net
        self.manifest.network = {
            "size": self.spec.size,
            "width": self.spec.width,
            "parameters": count_parameters(net),
            "trainable_parameters": count_parameters(net, trainable_only=True),
            "flops_per_sample": flops_per_sample(net, task.target.input_shape),
            "architecture": str(net),
        }
        if self.spec.model is not None:
            self.manifest.network["model"] = self.spec.model
            self.manifest.network["model_dir"] = self.spec.model_dir
            uncounted = flops_not_counted(net)
            if uncounted:  # the estimate counts Conv1d and Linear only: say what it left out
                self.manifest.network["flops_not_counted"] = uncounted
        self.write_manifest()
        return net

    def train(self, net: Network, task: Task, lr: float) -> int:
        """The metered train phase; returns the samples trained on."""
        from engine.worker.train import fit

        spec, target = self.spec, task.target
        self.metering.begin_window("train")
        result = fit(
            net,
            target.x_train,
            target.y_train,
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            lr=lr,
            seed=spec.seed + 1,
            augment=spec.augment,
            x_val=task.x_val,
            y_val=task.y_val,
            on_progress=self.progress if self.ranks.leads else None,
            on_epoch=(lambda ep, acc: self.epoch_point("train", ep, acc)) if self.ranks.leads else None,
            precision=self.precision,
            ranks=self.ranks,
        )
        self.metering.end_window("train")
        return result.samples_seen

    def prune(self, net: Network, task: Task, lr: float) -> int:
        """The metered prune phase (pruning, then fine-tuning); returns the samples trained on."""
        from engine.worker.train import evaluate, finish_pruning, fit, prune_global, sparsity_report

        spec, target, precision, leads = self.spec, task.target, self.precision, self.ranks.leads
        # not metered; evaluated by the leader alone, as every accuracy of a data-parallel run
        before = 0.0
        if leads:
            before = evaluate(net, target.x_test, target.y_test, target.n_classes, precision=precision)["accuracy"]
        self.metering.begin_window("prune")
        prune_global(net, spec.prune)
        samples = 0
        if spec.prune_epochs:
            tuned = fit(
                net,
                target.x_train,
                target.y_train,
                epochs=spec.prune_epochs,
                batch_size=spec.batch_size,
                lr=lr,
                seed=spec.seed + 2,
                augment=spec.augment,
                phase="prune",
                x_val=task.x_val,
                y_val=task.y_val,
                on_progress=self.progress if leads else None,
                on_epoch=(lambda ep, acc: self.epoch_point("prune", ep, acc)) if leads else None,
                precision=precision,
                ranks=self.ranks,
            )
            samples = tuned.samples_seen
        finish_pruning(net)
        self.metrics.pruning = Pruning(
            **sparsity_report(net),
            accuracy_before_pruning_frac=before,
            note="unstructured sparsity: dense kernels still multiply every zero, so FLOPs and "
            "inference energy are not expected to fall; see test-phase energy",
        )
        self.metering.end_window("prune")
        return samples

    def test(self, net: Network, task: Task, train_samples: int) -> None:
        """The metered test phase (scoring and timed inference), the GPU's idle drift after it,
        and the result: accuracy and the per-unit joules."""
        from engine.worker.train import evaluate, timed_inference

        target, precision, meter = task.target, self.precision, self.metering
        if not self.ranks.leads:
            # the leader evaluates once, on the whole test set; this rank waits for the phase's end
            meter.begin_window("test")
            meter.end_window("test")
            return
        meter.begin_window("test")
        scores = evaluate(net, target.x_test, target.y_test, target.n_classes, precision=precision)
        passes, inferences = timed_inference(
            net, target.x_test, self.spec.test_min_s, sync=self.device.sync, precision=precision
        )
        # The scoring pass is inference too, metered in the same phase: count it.
        passes, inferences = passes + 1, inferences + len(target.x_test)
        meter.end_window("test")
        if self.thermal is not None:
            self.thermal.read_idle_after()
            self.write_manifest()

        m = self.metrics
        m.accuracy_frac, m.f1_macro_frac = scores["accuracy"], scores["f1_macro"]
        m.train_samples_seen, m.test_samples = train_samples, len(target.x_test)
        m.test_passes, m.inferences = passes, inferences

    def gather_nodes(self) -> None:
        """A run over several nodes: every node's metering process writes its node's record, all
        wait for each other, and the leader reads them all (the run's phases are their sum)."""
        if self.ranks.nodes < 2:
            return
        self.write_node_record()
        self.ranks.barrier()
        if self.ranks.leads:
            self.read_node_records()

    def report_result(self) -> None:
        """The leader's result: accuracy, and the joules per unit over the run's phases (every node's)."""
        if not self.ranks.leads:
            return
        m = self.metrics
        m.j_per_train_sample, m.j_per_inference = per_unit_energy(self.run_phases(), m.train_samples_seen, m.inferences)
        self.w.emit("result", metrics=to_json_object(m), curve=[to_json_object(p) for p in self.curve])

    # -- helpers of the steps -------------------------------------------------------------
    def progress(self, p: Progress) -> None:
        self.w.emit("progress", **p)

    def epoch_point(self, phase: str, epoch: int, accuracy: float) -> None:
        """One point of the energy-to-accuracy curve: the phase's joules so far at an epoch's end."""
        assert self.metering.open_window == phase  # the fit's phase is the window it runs in
        self.curve.append(self.metering.curve_point(epoch, accuracy))

    def adapt(self, net: Network, n_classes: int) -> Network:
        """The source network made into the target network: a new head (replaced, or new layers
        on top of the old head), and for transfer a frozen body."""
        if self.spec.transfer_head == "extend":
            net.extend_head(n_classes)
        else:
            net.replace_head(n_classes)
        if self.spec.mode == "transfer":
            net.freeze_body()
        return net.to(self.device.name)  # the new head was built on the host

    # -- the record -----------------------------------------------------------------------
    def write_node_record(self) -> None:
        """This node's record (<run>/nodes/<node_rank>.json), by its metering process: its phases,
        meters and idle baseline. Written once; on a failure, with the phases measured so far."""
        ranks, meter = self.ranks, self.meter
        if ranks.nodes < 2 or not ranks.meters or meter is None or self.node_record_written:
            return
        record = NodeRecord(
            node_rank=ranks.node_rank,
            host=socket.gethostname(),
            rank=ranks.rank,
            phases=dict(meter.records),
            meters=[MeterDomain(**d.as_dict()) for d in meter.domains.values()],
            missing_meters=[MissingMeter(**x.as_dict()) for x in meter.missing],
            idle_watts=meter.idle_power(),
        )
        atomic_write_json(self.path / NODES / f"{ranks.node_rank}.json", to_json_object(record))
        self.node_record_written = True

    def read_node_records(self) -> None:
        """The leader: every node record written so far, summed into the run's phases."""
        from engine.core.energy import gather_nodes

        records = []
        for path in sorted((self.path / NODES).glob("*.json")):
            try:
                records.append(msgspec.json.decode(path.read_bytes(), type=NodeRecord))
            except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                to_stderr(f"joulelab worker: node record {path} unreadable ({exc}); that node counts as not reported")
        self.nodes = gather_nodes(records, self.ranks.nodes)

    def peer_death(self, wait_s: float = PEER_EXIT_WAIT_S) -> str | None:
        """A data-parallel run that fails here because another rank died: which rank and how, in
        one line, from what its launcher saw (RANK_EXITS). A rank that ended with the cancel's exit
        code went with a cancel; one killed or failing before this rank was signalled died (the
        agent stops the survivors of a death with SIGTERM). Python runs a signal's handler only
        between bytecodes, so "signalled" may be late, never early: a cancel is not read as a death."""
        ranks = self.ranks
        if not ranks.leads or not ranks.parallel or ranks.exits_file is None:
            return None  # only the leader's error is the run's (and two ranks would wait for each other)
        dp = self.manifest.data_parallel or {}
        rank_of = {r["pid"]: r["rank"] for r in dp.get("ranks", []) if r.get("host") == socket.gethostname()}
        others = {pid for pid, rank in rank_of.items() if rank != ranks.rank}
        deadline = time.monotonic() + wait_s
        while True:
            exits = sorted((e for e in rank_exits(ranks.exits_file) if e.pid != os.getpid()), key=lambda e: e.at)
            signalled = _Signals.received_at
            for e in exits:
                before = signalled is None or e.at < signalled
                if (e.seen and e.code != EXIT_CANCELLED and before) or (not e.seen and signalled is None):
                    who = f"rank {rank_of[e.pid]}" if e.pid in rank_of else "a rank"
                    return f"{who} (pid {e.pid}) died: {e.how}"
            if (others and others <= {e.pid for e in exits}) or time.monotonic() > deadline:
                return None  # every other rank went with the cancel (or none was seen going)
            time.sleep(0.05)

    def run_phases(self) -> dict[str, PhaseRecord]:
        """The run's phases: this node's, or over several nodes their sum (read_node_records)."""
        if self.nodes is not None:
            return self.nodes[0]
        return self.meter.records if self.meter is not None else {}

    def write_manifest(self) -> None:
        if self.ranks.leads:  # one run log, whatever the number of ranks
            write_manifest(self.path, self.manifest)

    def stop_meters(self) -> None:
        """A phase still open (a cancel, a failure) is closed as partial; then sampling stops."""
        if self.meter is not None:
            _quietly(self.meter.end_open_window)
            self.meter.stop()

    def summary(self, status: FinalStatus, error: str | None = None) -> RunSummary:
        m, meter, thermal = self.manifest, self.meter, self.thermal
        if self.ranks.nodes > 1 and self.nodes is None:
            self.read_node_records()  # a run that ended early: the nodes that wrote their record by now
        phases = self.run_phases()
        pretrain = self.pretrain
        if self.nodes is not None and pretrain is not None and not pretrain.cached and pretraining.PRETRAIN in phases:
            whole = phases[pretraining.PRETRAIN]  # pretrained here, on every node: their sum
            pretrain = msgspec.structs.replace(pretrain, total=whole.total, energy=whole.energy)
        return RunSummary(
            run_id=self.w.run_id,
            status=status,
            error=error,
            spec=self.spec.to_dict(),
            config=self.spec.config or self.spec.describe(),
            preset=self.spec.preset,
            host=socket.gethostname(),
            dataset=m.dataset.get("name", self.spec.dataset),
            synthetic=m.dataset.get("synthetic", self.spec.dataset == "synthetic"),
            started=m.started,
            ended=now_stamp(),
            duration_s=time.monotonic() - self.started,
            last_phase=self.last_phase,
            phases=phases,
            pretrain=pretrain,
            idle_watts=meter.idle_power() if meter is not None else {},
            metrics=self.metrics,
            curve=self.curve,
            meters=m.meters,
            missing_meters=m.missing_meters,
            meter_gaps=meter.gaps() if meter is not None else [],
            contended_phases=[p for p, r in phases.items() if r.contended],
            gpu_contended_phases=[p for p, r in phases.items() if r.gpu_contended],
            device=m.device,
            precision=m.precision,
            thermal=thermal.record if thermal is not None else None,
            started_warm=thermal.started_warm if thermal is not None else None,
            power_limit=dict(self.power_limit.record) if self.power_limit is not None else None,
            power_limit_leftover=m.power_limit_leftover,
            network={k: v for k, v in m.network.items() if k != "architecture"},
            events=self.w.count + 1,  # and the done event that follows
            reader_lost=self.w.reader_lost_at is not None,
            slurm=m.environment.get("slurm"),  # the node (or node set) pairs runs in stats
            nodes=self.nodes[1] if self.nodes is not None else [],
            nodes_note=self.nodes[2] if self.nodes is not None else None,
        )


def data_parallel_record(ranks: Ranks, device: Device, meter: PhaseMeter) -> dict[str, Any]:
    """run.json's account of a data-parallel run: every rank (gathered from all of them) and
    which one metered each node, over which process tree and with which meters."""
    mine = {
        "rank": ranks.rank,
        "local_rank": ranks.local_rank,
        "node_rank": ranks.node_rank,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "device": device.name,
    }
    if ranks.meters:
        mine["meters_node"] = {"process_tree_of": meter.pid, "domains": sorted(meter.domains)}
    every = ranks.gather(mine)
    metering = [
        {"node_rank": r["node_rank"], "host": r["host"], "rank": r["rank"], **r["meters_node"]}
        for r in every
        if "meters_node" in r
    ]
    return {
        **ranks.record("nccl" if device.is_cuda else "gloo", metering),
        "ranks": [{k: v for k, v in r.items() if k != "meters_node"} for r in every],
    }


def read_spec(argv: list[str]) -> RunSpec:
    parser = argparse.ArgumentParser(prog="python -m engine.worker")
    parser.add_argument("--spec", help="spec JSON file (default: read JSON from stdin)")
    parser.add_argument(RANK_FLAG, action="store_true", help="run as a rank of a data-parallel run (its launcher's)")
    args = parser.parse_args(argv)
    where = args.spec or "spec on stdin"
    try:
        text = Path(args.spec).read_text() if args.spec else sys.stdin.read()
    except OSError as exc:
        raise SpecError(f"{where}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return spec_from_dict(data, where)


# OpenMP threads that wait for work by spinning burn CPU time that the energy model counts, and on
# a busy machine they fight the other processes for cores: one training step took 420 ms instead
# of 9 ms with one core taken by another process. Passive waiting makes a measurement hold still
# (quick's scratch training: 6.1 J quiet, 5.7 J beside a busy core; libgomp's default spin: 5.0 J
# and 11 J), at a price on a quiet machine: for tiny networks, waking sleeping threads for each
# parallel region adds about 20 % of CPU time and doubles the wall time. Stability wins for a
# measuring tool; a user on a dedicated machine can set OMP_WAIT_POLICY, which is kept. It must be
# set before torch (and its OpenMP runtime) is loaded; run.json records which applied.
THREAD_ENV_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def main(argv: list[str] | None = None) -> int:
    for name, value in THREAD_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # Keep the event stream safe: events go to a private duplicate of stdout, and fd 1 now points
    # at stderr for anything else that prints.
    stream_fd = os.dup(1)
    os.dup2(2, 1)
    stream = os.fdopen(stream_fd, "w", encoding="utf-8", buffering=1)
    signal.signal(signal.SIGTERM, _Signals.handler)
    signal.signal(signal.SIGINT, _Signals.handler)
    # The session may lose its terminal (SSH drop); a hang-up must not end the run.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    args = sys.argv[1:] if argv is None else argv
    try:
        spec = read_spec(args)
        if not spec.run_id:
            spec = RunSpec(**{**spec.__dict__, "run_id": new_run_id()})
        # stored absolute: a log read from elsewhere still says where it was written
        spec = RunSpec(**{**spec.__dict__, "logs_dir": os.path.abspath(spec.logs_dir)})
        logs_dir = Path(spec.logs_dir)
        check_writable(logs_dir)
        run_path = logs_dir / spec.run_id
        run_path.mkdir(parents=True, exist_ok=True)
    except (SpecError, StoreError) as exc:
        _stream_error(stream, str(exc))
        print(f"joulelab worker: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    if RANK_FLAG not in args and (spec.procs_per_node > 1 or rendezvous().nodes > 1):
        return launch_ranks(spec, run_path, stream)
    spec_file = args[args.index("--spec") + 1] if "--spec" in args[:-1] else None
    ranks = Ranks.from_env(spec_file=spec_file) if RANK_FLAG in args else Ranks()
    if ranks.launcher_pid is not None:
        die_with_launcher(ranks.launcher_pid)
    if ranks.leads:
        writer = EventWriter(spec.run_id, run_path / EVENTS, stream, guard=_Signals)
    else:  # one run log, the leader's: this rank's events go nowhere
        writer = EventWriter(spec.run_id, Path(os.devnull), None, guard=_Signals)
        stream.close()
    run = Run(spec, run_path, writer, ranks)
    status: FinalStatus = "complete"
    error: str | None = None
    code = EXIT_OK
    try:
        # with the pid, it tells this worker from a later process that reuses the pid (the lab
        # signals a run it did not start only if both match)
        run.manifest.pid_started = process_started(os.getpid())
        run.write_manifest()  # before the heavy imports: a cancel during start-up finds the run recorded
        run.manifest.environment = environment_manifest()
        run.write_manifest()
        run.execute()
    except Cancelled as exc:
        status, error, code = "cancelled", f"cancelled by {exc}", EXIT_CANCELLED
        # the agent stops the others when a rank dies: a failure, not a cancel (the launcher saw the
        # death before the agent did, so it is on file already)
        if death := run.peer_death(wait_s=PEER_EXIT_SIGNALLED_WAIT_S):
            status, error, code = "failed", f"{death}; the launcher then stopped the other ranks ({exc})", EXIT_FAILED
            _quietly(writer.emit, "error", message=error, where=run.last_phase)
    except LogWriteError:
        pass  # reported below: writer.log_error says why
    except Exception as exc:
        if _Signals.received and run.last_phase is None:  # a cancel that an import turned into its own error
            status, error, code = "cancelled", f"cancelled by {_Signals.received} during start-up", EXIT_CANCELLED
        else:
            _Signals.cancelled = True  # the run has failed: a signal from here on must not make it a cancel
            # input the user can fix (a spec, data, device or logs problem): its one line, no traceback
            bad_input = isinstance(exc, JouleLabError) and exc.exit_code == EXIT_USAGE
            status, error = "failed", str(exc) if bad_input else f"{type(exc).__name__}: {exc}"
            code = EXIT_BAD_INPUT if bad_input else EXIT_FAILED
            if not bad_input and (death := run.peer_death()):  # gloo says only "Connection reset by peer"
                error = f"{death}; {error}"
            if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:  # run.json, a cache file...
                error, code = disk_message(exc, Path(exc.filename or run_path)), EXIT_LOG_UNWRITABLE
            elif not bad_input:
                to_stderr(traceback.format_exc())
            try:
                writer.emit("error", message=error, where=run.last_phase)
            except (Cancelled, LogWriteError):
                pass  # a cancel or a full disk while reporting the failure: the failure is the story
    finally:
        # Ignore further signals while the record is closed: a second Ctrl-C must not lose it.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _Signals.pending = None
    try:
        run.restore_power_limit()  # first: the GPU's limit matters more than anything below
        run.stop_meters()
        _quietly_io(run.write_node_record)  # a run that ended early: this node's phases so far
        if not ranks.leads:
            return code  # the leader closes the run's record
        if writer.log_error is not None:
            status, error, code = "failed", writer.log_error, EXIT_LOG_UNWRITABLE
            _quietly(writer.emit, "error", message=error, where=run.last_phase)  # reaches the stream
        try:
            atomic_write_json(run_path / SUMMARY, to_json_object(run.summary(status, error)))
        except OSError as exc:
            if code != EXIT_LOG_UNWRITABLE:
                status, error, code = "failed", disk_message(exc, run_path / SUMMARY), EXIT_LOG_UNWRITABLE
            to_stderr(f"joulelab worker: summary not written: {disk_message(exc, run_path / SUMMARY)}")
            _quietly(writer.emit, "error", message=error, where=run.last_phase)
        _quietly(writer.emit, "done", status=status, exit_code=code)
    finally:
        writer.close()
        ranks.leave()
    return code


def launch_ranks(spec: RunSpec, run_path: Path, stream: TextIO) -> int:
    """The launcher of a data-parallel run: start its ranks on this node (engine.worker.ranks)
    and wait. The leader writes the run log and its events reach the stream; if it died before
    closing the record, this process says so on the log and the stream."""
    from engine.worker.ranks import launch

    failures: dict[int, int] = {}
    cancelled: str | None = None
    meeting = rendezvous()
    try:
        from torch.distributed.elastic.multiprocessing.api import SignalException

        try:
            failures = launch(spec, meeting, stream.fileno())
        except SignalException as exc:  # the agent has already stopped the ranks with it
            cancelled = exc.sigval.name
    except Cancelled as exc:  # before the agent took the signals over
        cancelled = str(exc)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if meeting.node_rank > 0:  # another node's launcher: node 0's leader keeps the run's log
        return EXIT_CANCELLED if cancelled else (EXIT_FAILED if failures else EXIT_OK)
    leader = failures.get(0, EXIT_OK)
    if (run_path / SUMMARY).exists():  # the leader closed the record: its exit code is the run's
        if cancelled:
            return EXIT_CANCELLED
        return leader if leader > 0 else (EXIT_FAILED if failures else EXIT_OK)
    how = f"killed by {signal.Signals(-leader).name}" if leader < 0 else f"exit code {leader}"
    status: FinalStatus = "cancelled" if cancelled else "failed"
    error = (
        f"cancelled by {cancelled}"
        if cancelled
        else f"rank 0 (the run's metering process) ended without closing the run's record ({how}); "
        "the phases its events recorded are kept"
    )
    code = EXIT_CANCELLED if cancelled else EXIT_FAILED
    writer = EventWriter(spec.run_id, run_path / EVENTS, stream)
    try:
        _quietly(writer.emit, "error", message=error, where=None)
        _quietly(writer.emit, "done", status=status, exit_code=code)
    finally:
        writer.close()
    return code


_P = ParamSpec("_P")


def _quietly(fn: Callable[_P, object], *args: _P.args, **kwargs: _P.kwargs) -> None:
    """Close the record even when the log can no longer be written (the stream still hears it)."""
    try:
        fn(*args, **kwargs)
    except LogWriteError:
        pass


def _quietly_io(fn: Callable[[], object]) -> None:
    """A node record that cannot be written on the way out: the leader counts the node as not reported."""
    try:
        fn()
    except OSError as exc:
        to_stderr(f"joulelab worker: node record not written ({exc})")


def _stream_error(stream: TextIO, message: str) -> None:
    try:
        stream.write(encode(make_event("error", "", message=message, where="spec")))
        stream.write(encode(make_event("done", "", status="failed", exit_code=EXIT_BAD_INPUT)))
        stream.flush()
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
