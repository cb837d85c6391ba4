"""The event schema: the one definition of what flows from a worker to its readers.

Every event is a small JSON object on its own line:

    {"v": 1, "type": "sample", "run": "<run id>", "t": <monotonic seconds>, ...fields}

`t` is `time.monotonic()` in the worker, so intervals between events are exact; `hello` also
carries the wall-clock time once, to anchor the stream. The same lines go to the run's
`events.jsonl` and to the worker's stdout, so a log and a live stream read identically.

Types and their fields (all energies in joules, all powers in watts):

- hello:       versions, pid, wall_time, meters [{domain, source, method}], missing [{meter, reason}],
               device (the resolved device, engine.device)
- phase_start: phase
- phase_end:   phase, duration_s, energy {domain: {gross_j, idle_j, net_j, source, method}}
- sample:      domains {domain: {w, j, source, method}}  (j is cumulative since the meter opened,
               so dropping or merging samples for display never loses energy); optional machine
               (CPU contention) and gpu {domain: {temp_c, sm_mhz, throttle, power_w}} (NVML state)
- progress:    phase, epoch, epochs, step, steps, loss, accuracy, samples_per_s
- epoch:       phase, epoch, val_accuracy, cumulative_j  (one point of the energy-to-accuracy curve)
- result:      the run's metrics (see engine.worker)
- meter_gap:   domain, reason  (a meter stopped answering; the run goes on)
- error:       message, where
- done:        status (complete | cancelled | failed | stalled), exit_code  (stalled: written by
               the runner, which killed a silent worker; exit_code null)
"""

from __future__ import annotations

import json
import time
from typing import Any

from engine.errors import EXIT_RUN_FAILED, JouleLabError

SCHEMA_VERSION = 1

EVENT_TYPES = frozenset(
    {
        "hello",
        "phase_start",
        "phase_end",
        "sample",
        "progress",
        "epoch",
        "result",
        "meter_gap",
        "error",
        "done",
    }
)

# idle: baseline before the run; warmup: unmetered start-up costs, recorded but in no figure;
# pretrain: the source network (transfer/finetune only); train: the target task; prune: pruning's
# fine-tuning (only when pruning); test: inference.
PHASES = ("idle", "warmup", "pretrain", "train", "prune", "test")

# How a joule value was obtained. Every energy value anywhere carries one of these.
SOURCES = ("counter", "polled", "modelled")

FINAL_STATUSES = ("complete", "cancelled", "failed", "stalled")


class ProtocolError(JouleLabError):
    """A line that is not a valid event."""

    exit_code = EXIT_RUN_FAILED  # a damaged log or stream, not the user's input


def make_event(event_type: str, run_id: str, **fields: Any) -> dict[str, Any]:
    if event_type not in EVENT_TYPES:
        raise ProtocolError(f"unknown event type {event_type!r}")
    return {"v": SCHEMA_VERSION, "type": event_type, "run": run_id, "t": time.monotonic(), **fields}


def encode(event: dict[str, Any]) -> str:
    # allow_nan=False: a NaN would make the line unreadable for strict JSON readers.
    return json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n"


def decode(line: str | bytes) -> dict[str, Any]:
    """Parse one line into an event, or raise ProtocolError saying why it is not one."""
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
    version = event.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:  # True == 1 in Python; not here
        raise ProtocolError(f"schema version {version!r}, expected {SCHEMA_VERSION}")
    if not isinstance(event.get("type"), str) or event["type"] not in EVENT_TYPES:
        raise ProtocolError(f"unknown event type {event.get('type')!r}")
    if not isinstance(event.get("run"), str):
        raise ProtocolError("missing run id")
    if not isinstance(event.get("t"), (int, float)) or isinstance(event.get("t"), bool):
        raise ProtocolError("missing timestamp")
    return event
