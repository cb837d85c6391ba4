"""The event schema: the one definition of what flows from a worker to its readers.

Every event is a small JSON object on its own line:

    {"v": 1, "type": "sample", "run": "<run id>", "t": <monotonic seconds>, ...fields}

`t` is `time.monotonic()` in the worker, so intervals between events are exact; `hello` also
carries the wall-clock time once, to anchor the stream. The same lines go to the run's
`events.jsonl` and to the worker's stdout, so a log and a live stream read identically.

Types and their fields (all energies in joules, all powers in watts):

- hello:       versions, pid, wall_time, meters [{domain, source, method}], missing [{meter, reason}],
               device (the resolved device, engine.worker.device)
- phase_start: phase
- phase_end:   phase, duration_s, energy {domain: {gross_j, idle_j, net_j, source, method}}
- sample:      domains {domain: {w, j, source, method}}  (j is cumulative since the meter opened,
               so dropping or merging samples for display never loses energy); optional machine
               (CPU contention) and gpu {domain: {temp_c, sm_mhz, throttle, power_w}} (NVML state)
- progress:    phase, epoch, epochs, step, steps, loss, accuracy, samples_per_s
- epoch:       phase, epoch, val_accuracy, cumulative_j  (one point of the energy-to-accuracy curve)
- result:      metrics (the summary's `metrics` record, engine.core.records.Metrics: log-schema-2 names
               such as accuracy_frac from workers that write log schema 2, schema-1 names such as
               accuracy before; records.metrics_from_json reads either), curve
- meter_gap:   domain, reason  (a meter stopped answering; the run goes on)
- error:       message, where
- done:        status (complete | cancelled | failed | stalled), exit_code  (stalled: written by
               the runner, which killed a silent worker; exit_code null)

Each type is a msgspec Struct below (Hello, PhaseStart, ... Done), a tagged union on "type":
`decode_event` turns a line into one, validated, in one pass; readers `match` on the classes.
The worker writes plain dicts (`make_event`, `encode`); the envelope and every event's own fields
are as they have been since "v": 1. The `result` event's nested metrics follow the log schema.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal, NotRequired, TypedDict, get_args

import msgspec

from engine.core.errors import EXIT_RUN_FAILED, JouleLabError

SCHEMA_VERSION = 1

# idle: baseline before the run; warmup: unmetered start-up costs, recorded but in no figure;
# pretrain: the source network (transfer/finetune only); train: the target task; prune: pruning's
# fine-tuning (only when pruning); test: inference.
PHASES = ("idle", "warmup", "pretrain", "train", "prune", "test")

# How a joule value was obtained. Every energy value anywhere carries one of these.
SOURCES = ("counter", "polled", "modelled")

# The one status type. A run ends complete, cancelled, failed (an error) or stalled (silent,
# killed by the runner): what its `done` event and summary.json say. The store adds its verdicts
# on runs without a summary: running (its worker is alive), crashed (died without one), damaged
# (its files cannot be read).
FinalStatus = Literal["complete", "cancelled", "failed", "stalled"]
RunStatus = Literal[FinalStatus, "crashed", "running", "damaged"]
FINAL_STATUSES: tuple[FinalStatus, ...] = get_args(FinalStatus)
# A run that ended without its result.
FAILED_STATUSES: tuple[RunStatus, ...] = ("failed", "crashed", "stalled")


class ProtocolError(JouleLabError):
    """A line that is not a valid event."""

    exit_code = EXIT_RUN_FAILED  # a damaged log or stream, not the user's input


# -- nested payloads: plain dicts at run time (cheap, and what the log holds), typed for readers --
class MeterInfo(TypedDict):
    name: str
    source: str
    method: str
    kind: NotRequired[str]


class DomainSample(TypedDict):
    w: float | None  # None until the meter has two readings
    j: float  # cumulative since the meter opened
    source: str
    method: str


class MachineLoad(TypedDict):
    others_cpu_share: float
    steal_share: float
    contended: bool


# -- the events ------------------------------------------------------------------------------------
class Event(msgspec.Struct, tag_field="type", kw_only=True, gc=False):
    """Fields every event carries. Subclasses are the types; unknown fields are tolerated (an older
    reader skips what a compatible writer added), a missing required one makes the line invalid."""

    v: int = SCHEMA_VERSION
    run: str
    t: float

    @property
    def type(self) -> str:
        """The wire name of this event's type ("sample", "done", ...)."""
        return str(self.__struct_config__.tag)


class Hello(Event, tag="hello"):
    versions: dict[str, Any] = {}
    pid: int | None = None
    wall_time: float | None = None
    spec: dict[str, Any] = {}
    meters: list[MeterInfo] = []
    missing: list[dict[str, Any]] = []
    device: dict[str, Any] | None = None


class PhaseStart(Event, tag="phase_start"):
    phase: str


class PhaseEnd(Event, tag="phase_end"):
    phase: str
    duration_s: float = 0.0
    energy: dict[str, dict[str, Any]] = {}  # per domain: gross_j, idle_j, net_j, source, method, ...
    total: dict[str, Any] = {}  # the domains summed: gross_j, idle_j, net_j, source, methods, ...
    partial: bool = False


class Sample(Event, tag="sample"):
    domains: dict[str, DomainSample]
    machine: MachineLoad | None = None
    gpu: dict[str, dict[str, Any]] | None = None


class Progress(Event, tag="progress"):
    phase: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    samples_per_s: float | None = None


class Epoch(Event, tag="epoch"):
    epoch: int
    val_accuracy: float
    cumulative_j: float
    phase: str | None = None
    source: str | None = None


class Result(Event, tag="result"):
    metrics: dict[str, Any] = {}
    curve: list[dict[str, Any]] = []


class MeterGap(Event, tag="meter_gap"):
    domain: str
    reason: str = ""


class Error(Event, tag="error"):
    message: str
    where: str | None = None


class Done(Event, tag="done"):
    status: FinalStatus
    exit_code: int | None = None  # None: written by the runner for a worker it killed (stalled)


AnyEvent = Hello | PhaseStart | PhaseEnd | Sample | Progress | Epoch | Result | MeterGap | Error | Done
EVENT_CLASSES: tuple[type[Event], ...] = (
    Hello,
    PhaseStart,
    PhaseEnd,
    Sample,
    Progress,
    Epoch,
    Result,
    MeterGap,
    Error,
    Done,
)
EVENT_TYPES = frozenset(str(cls.__struct_config__.tag) for cls in EVENT_CLASSES)

_decoder = msgspec.json.Decoder(AnyEvent)


def make_event(event_type: str, run_id: str, **fields: Any) -> dict[str, Any]:
    if event_type not in EVENT_TYPES:
        raise ProtocolError(f"unknown event type {event_type!r}")
    return {"v": SCHEMA_VERSION, "type": event_type, "run": run_id, "t": time.monotonic(), **fields}


def encode(event: dict[str, Any]) -> str:
    # allow_nan=False: a NaN would make the line unreadable for strict JSON readers.
    return json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n"


def decode_event(line: str | bytes) -> AnyEvent:
    """One line as a typed event, or ProtocolError saying why it is not one (a line from a newer
    schema says so). A valid line costs one msgspec decode; only a rejected one is parsed again,
    to find the clearest reason."""
    try:
        event: AnyEvent = _decoder.decode(line)
    except msgspec.DecodeError as exc:
        problem = f"not a valid event: {exc}"
    else:
        _check_version(event.v)
        return event
    decode(line)  # the envelope's reason first: not JSON, a newer schema, an unknown type...
    raise ProtocolError(problem)


def _check_version(version: object) -> None:
    if type(version) is int and version > SCHEMA_VERSION:  # bool is not an int here (True == 1)
        raise ProtocolError(
            f"event schema version {version} is newer than this JouleLab understands ({SCHEMA_VERSION}): "
            "update JouleLab to read this log"
        )
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ProtocolError(f"schema version {version!r}, expected {SCHEMA_VERSION}")


def decode(line: str | bytes) -> dict[str, Any]:
    """One line as the raw JSON object of a valid event envelope (version, a known type, run id,
    timestamp), or ProtocolError saying why it is not one. For tools that look at the object as
    data; readers that act on events use decode_event."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"not UTF-8: {exc}") from None
    line = line.strip()
    if not line:
        raise ProtocolError("empty line")
    try:
        event = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise ProtocolError("not a JSON object")
    _check_version(event.get("v"))
    if not isinstance(event.get("type"), str) or event["type"] not in EVENT_TYPES:
        raise ProtocolError(f"unknown event type {event.get('type')!r}")
    if not isinstance(event.get("run"), str):
        raise ProtocolError("missing run id")
    if not isinstance(event.get("t"), (int, float)) or isinstance(event.get("t"), bool):
        raise ProtocolError("missing timestamp")
    return event
