"""The run summary (summary.json) and run manifest (run.json) as typed records.

msgspec Structs: one declaration gives typed attribute access (mypy checks every reader), and
decoding validates the JSON against it in the same fast step. Unknown keys are ignored, so a
record keeps reading logs that carry more than it names. Energies are joules (`_j`), powers
watts (`_w`), durations seconds (`_s`), accuracies fractions of 1 (`_frac`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.core.events import PHASES
from engine.core.records.config_key import ConfigKey

# summary.json and run.json carry `"log_schema": LOG_SCHEMA`; logs without the key are version 1.
LOG_SCHEMA = 2
SCHEMA_KEY = "log_schema"

# Phases whose energy is a figure (idle is the baseline, warmup the unmetered start-up costs).
BASELINE_PHASES = ("idle", "warmup")
METERED_PHASES = tuple(p for p in PHASES if p not in BASELINE_PHASES)
# Phases that train the target network (pruning's fine-tuning continues the training).
TRAINING_PHASES = ("train", "prune")


class EnergyValue(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One domain's energy in one phase: gross, the idle share over the same time, and net = gross - idle."""

    gross_j: float
    idle_j: float
    net_j: float
    source: str  # counter | polled | modelled (engine.core.events.SOURCES)
    method: str  # e.g. "rapl:package-0", "model:tdp-cpu-time"
    kind: str | None = None  # cpu | dram | gpu | platform | cross-check
    error_rel: float | None = None  # the meter's relative error here (logs before it: None)
    gap: bool = False  # the meter failed, reset or lost wraps in the phase: not a measurement
    short: bool = False  # shorter than ten of the meter's update periods
    basis: dict[str, float] | None = None  # modelled: what one joule was modelled from
    remodelled_from: dict[str, float] | None = None  # the basis a cached record was re-modelled from


class PhaseTotal(msgspec.Struct, kw_only=True):
    """A phase's domains summed (platform and cross-check domains left out: they would count twice).
    Every field is always written: a phase with no counted domain still reads 0 J, source null."""

    gross_j: float = 0.0
    idle_j: float = 0.0
    net_j: float = 0.0
    source: str | None = None  # the weakest of the parts; None when no domain was metered
    methods: list[str] = []
    error_rel: float | None = None  # the least precise part's error bounds the sum's
    short: bool = False
    gap: list[str] = []  # domains whose energy in the phase is incomplete

    @property
    def known(self) -> bool:
        """A measured total: some meter answered and none had a gap."""
        return self.source is not None and not self.gap


class CpuContention(msgspec.Struct, kw_only=True):
    """Other processes' share of the machine's CPU during a phase (engine.worker.meters.contention)."""

    others_cpu_share: float | None = None
    steal_share: float = 0.0
    own_cpu_share: float = 0.0
    cpus: int = 0
    contended: bool = False
    threshold: float = 0.0


class GpuContention(msgspec.Struct, kw_only=True):
    other_processes: list[dict[str, Any]] = []  # as NVML reports them: pid, name, memory
    contended: bool = False


class NvmlAgreement(msgspec.Struct, kw_only=True):
    """A GPU's energy counter beside its integrated polled power over the same phase."""

    counter_j: float
    polled_j: float
    diff_j: float
    diff_rel: float | None
    short: bool = False


class PhaseRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    duration_s: float
    energy: dict[str, EnergyValue] = {}
    total: PhaseTotal = msgspec.field(default_factory=PhaseTotal)
    contention: CpuContention | None = None
    gpu_contention: dict[str, GpuContention] = {}
    nvml_agreement: dict[str, NvmlAgreement] = {}
    partial: bool = False  # closed early (cancel, failure, stall): what was measured until then
    steps: int | None = None  # warmup: training steps run to warm up
    networks: int | None = None  # warmup: networks warmed up

    @property
    def contended(self) -> bool:
        return self.contention is not None and self.contention.contended

    @property
    def gpu_contended(self) -> bool:
        return any(g.contended for g in self.gpu_contention.values())


class PretrainRecord(msgspec.Struct, kw_only=True):
    """The source network's pretraining: measured in this run, or cached from the run that did."""

    run_id: str | None = None  # the run that measured it
    duration_s: float | None = None
    total: PhaseTotal | None = None
    energy: dict[str, EnergyValue] = {}
    source_accuracy_frac: float | None = None
    source_classes: list[Any] = []
    cached: bool = False
    key: str | None = None  # the source cache's key
    cache_problem: str | None = None  # why it could not be saved
    cache_discarded: str | None = None  # why a cached network was not used (this run pretrained it again)
    incomparable: str | None = None  # measured by another kind of meter than this run's
    remodelled: bool = False  # modelled joules re-derived under this run's basis
    basis_unknown: str | None = None


class PerUnitEnergy(msgspec.Struct, kw_only=True):
    """Net joules per sample or per inference, and where they came from."""

    value: float | None  # joules
    source: str | None
    basis: str = "net"


class Pruning(msgspec.Struct, kw_only=True):
    weights: int
    zero_weights: int
    sparsity: float  # fraction of weights that are zero
    accuracy_before_pruning_frac: float | None = None
    note: str = ""


class Metrics(msgspec.Struct, kw_only=True, omit_defaults=True):
    accuracy_frac: float | None = None  # test accuracy, a fraction of 1 (tables show percent)
    f1_macro_frac: float | None = None
    train_samples_seen: int | None = None  # samples trained on over all epochs (train + prune)
    test_samples: int | None = None  # the test split's size
    test_passes: int | None = None
    inferences: int | None = None
    j_per_train_sample: PerUnitEnergy | None = None
    j_per_inference: PerUnitEnergy | None = None
    source_accuracy_frac: float | None = None  # transfer: the source network's test accuracy
    pruning: Pruning | None = None


class CurvePoint(msgspec.Struct, kw_only=True):
    """One epoch of the energy-to-accuracy curve."""

    phase: str
    epoch: int
    val_accuracy_frac: float
    cumulative_j: float  # total joules of the phase so far
    source: str | None = None


class IdlePower(msgspec.Struct, kw_only=True):
    """A domain's mean power in the idle baseline, which later phases subtract."""

    w: float
    source: str | None = None  # logs before version 2 may lack the provenance
    method: str | None = None


class MeterDomain(msgspec.Struct, kw_only=True):
    name: str
    source: str
    method: str
    kind: str


class MissingMeter(msgspec.Struct, kw_only=True):
    meter: str
    reason: str


class NodeRecord(msgspec.Struct, kw_only=True):
    """<run>/nodes/<node_rank>.json: what one node of a multi-node run measured, written by the
    node's metering process (its local rank zero) at the run's end; the leader gathers them."""

    node_rank: int
    host: str
    rank: int  # the process that metered the node
    phases: dict[str, PhaseRecord] = {}
    meters: list[MeterDomain] = []
    missing_meters: list[MissingMeter] = []
    idle_watts: dict[str, IdlePower] = {}


class NodeEnergy(msgspec.Struct, kw_only=True):
    """One node's part of a multi-node run's summary: its phases' totals and their provenance."""

    node_rank: int
    host: str | None = None
    rank: int | None = None  # the process that metered it
    reported: bool = True  # False: its record never arrived (the node's phases are gaps in the total)
    source: str | None = None  # the weakest source of its phases (modelled: no counter on that node)
    meters: list[str] = []  # its meters' methods, e.g. "rapl:package-0", "model:tdp-cpu-time"
    phases: dict[str, PhaseTotal] = {}


class RunSummary(msgspec.Struct, kw_only=True):
    """summary.json: what a run measured, written once at its end (engine.worker.main.Run.summary)."""

    run_id: str
    status: str  # an engine.core.events.FinalStatus; read through engine.store.run_log.final_status
    error: str | None = None
    spec: dict[str, Any] = {}  # the RunSpec as run (engine.core.spec.RunSpec.to_dict)
    config: str | None = None  # the configuration key, "dataset/size/mode/mechanism"
    preset: str | None = None
    host: str | None = None
    dataset: str | None = None  # the dataset's name; `synthetic` says whether it is generated
    synthetic: bool = False
    started: str | None = None  # ISO 8601 local time with offset
    ended: str | None = None
    duration_s: float = 0.0
    last_phase: str | None = None
    phases: dict[str, PhaseRecord] = {}
    pretrain: PretrainRecord | None = None
    idle_watts: dict[str, IdlePower] = {}
    metrics: Metrics = msgspec.field(default_factory=Metrics)
    curve: list[CurvePoint] = []
    meters: list[MeterDomain] = []
    missing_meters: list[MissingMeter] = []
    meter_gaps: list[str] = []
    contended_phases: list[str] = []
    gpu_contended_phases: list[str] = []
    device: dict[str, Any] | None = None  # the resolved device (engine.worker.device.Device.manifest)
    precision: str | None = None
    thermal: dict[str, Any] | None = None  # GPU temperature and idle drift (engine.worker.thermal)
    started_warm: bool | None = None
    # the GPU power limit the run set and whether it was put back (engine.worker.power_limit)
    power_limit: dict[str, Any] | None = None
    power_limit_leftover: list[str] = []  # limits earlier runs left set, one line each
    network: dict[str, Any] = {}  # size, width, parameters, flops_per_sample
    events: int = 0  # events in events.jsonl
    reader_lost: bool = False  # the event stream's reader went away during the run
    slurm: dict[str, Any] | None = None  # job, node, resources; None outside Slurm
    # a run over several nodes: each node's energy (the phases above are their sum), and what the
    # total mixes (a node metered by counters beside one modelled)
    nodes: list[NodeEnergy] = []
    nodes_note: str | None = None
    written_by: str | None = None  # set when not the worker (the runner, for a stalled run)
    log_schema: int = LOG_SCHEMA

    # -- what readers ask of a summary ---------------------------------------------------
    @property
    def key(self) -> ConfigKey:
        """The configuration key (older logs without one: built from the spec)."""
        if self.config:
            return ConfigKey.parse(self.config)
        spec = self.spec
        return ConfigKey(str(spec.get("dataset")), str(spec.get("size")), str(spec.get("mode")))

    @property
    def seed(self) -> int:
        return int(self.spec.get("seed", 0))

    @property
    def node(self) -> str | None:
        """The Slurm node it ran on (None for a local run)."""
        node = (self.slurm or {}).get("node")
        return str(node) if node is not None else None

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def phase(self, name: str) -> PhaseRecord | None:
        return self.phases.get(name)

    def total(self, phase: str) -> PhaseTotal | None:
        record = self.phases.get(phase)
        return record.total if record is not None else None

    def phase_net(self, phase: str) -> tuple[float, str] | None:
        """A phase's net joules and their source, or None when unknown (absent, unmetered, a gap)."""
        total = self.total(phase)
        if total is None or not total.known or total.source is None:
            return None
        return total.net_j, total.source

    @property
    def has_gap(self) -> bool:
        """Some metered phase's energy is unknown (left out of energy figures)."""
        return any(r.total.gap for name, r in self.phases.items() if name not in BASELINE_PHASES)

    @property
    def pretrain_total(self) -> PhaseTotal | None:
        """The source network's pretraining total: measured here, or cached from another run."""
        if self.pretrain is not None and self.pretrain.total is not None:
            return self.pretrain.total
        return self.total("pretrain")


class RunManifest(msgspec.Struct, kw_only=True):
    """run.json: the spec and the environment, written at the start and updated as the run learns more.

    Only what readers use is typed; the rest (environment, meter details) is kept as written."""

    run_id: str | None = None
    spec: dict[str, Any] = {}
    pid: int | None = None
    pid_started: float | None = None  # the process's start time: tells it from a reused pid
    started: str | None = None
    environment: dict[str, Any] = {}
    meters: list[MeterDomain] = []
    missing_meters: list[MissingMeter] = []
    meter_details: list[dict[str, Any]] = []
    sample_hz: float | None = None
    device: dict[str, Any] | None = None
    precision: str | None = None
    flush_denormal: bool | None = None
    dataset: dict[str, Any] = {}  # name, synthetic, kind, split sizes (train_samples: the split's size)
    network: dict[str, Any] = {}
    thermal: dict[str, Any] | None = None
    power_limit: dict[str, Any] | None = None  # the GPU power limit set (engine.worker.power_limit)
    power_limit_leftover: list[str] = []  # limits earlier runs left set, one line each
    # a data-parallel run (procs_per_node > 1): its ranks, and which one metered each node
    data_parallel: dict[str, Any] | None = None
    log_schema: int = LOG_SCHEMA
