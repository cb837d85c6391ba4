"""PhaseMeter: the energy of named windows of a process tree's work, each returned as a PhaseRecord.

    from engine.worker.phase_meter import PhaseMeter

    meter = PhaseMeter.discover(pid=os.getpid(), sample_hz=10.0, sync=device.sync, on_event=log)
    with meter:                              # starts sampling; on exit ends an open window, stops
        meter.measure_idle(5.0)              # the idle baseline that later windows subtract
        meter.begin_window("train")
        train()
        record = meter.end_window("train")   # PhaseRecord: gross, idle and net joules per domain
        print(record.total.net_j, record.total.source, record.total.error_rel)

Windows have the shape of Zeus's `begin_window(name)` / `end_window(name)`, one open at a time:
- At each edge the GPU is synchronised first (`sync`, e.g. engine.worker.device.Device.sync), so a
  window's joules cover exactly the kernels launched inside it, and every meter is read: for an
  energy counter (RAPL, NVML's) a window's gross joules are exactly the counter difference.
- A window named "idle" is the baseline: its mean power per domain is what every later window
  subtracts (`idle_j` = that power x the window's time, `net_j` = gross - idle). All of the
  idle window's own energy is idle.
- Each domain's value says how it was obtained (`source`: counter, polled or modelled; `method`)
  and how far it can be off (`error_rel`: the meter's documented error plus its two edges; `short`:
  fewer than ten of the meter's update periods). A meter that failed, reset or lost wraps in the
  window makes it a `gap`: the value is a lower bound, not a measurement, and the total lists it.
- Contention is recorded per window: other processes' share of the machine's CPU (`contention`)
  and other processes on a metered GPU (`gpu_contention`); with NVML's energy counter, its
  integrated polled power beside it (`nvml_agreement`).
- Modelled domains keep what one joule was modelled from (`basis`), so a stored value can be
  re-modelled under another TDP (engine.worker.pretraining.reuse_pretrain_record).

Events, for a run log or a live view, go to `on_event(event_type, **fields)`: `phase_start`
(phase) and `phase_end` (phase, duration_s, energy, total, partial) from the caller's thread, where
an exception from the sink propagates; `sample` (domains, machine, gpu) and `meter_gap` (domain,
reason) also from the sampler's thread, where the sink must not raise (it would stop sampling).
The field names are the event schema's (engine.core.events).

Misuse is a WindowError with one line: beginning a window while another is open (windows do not
nest), ending one that is not the open window, reusing a window's name, or metering before
`start()`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.core.energy import (
    Domain,
    PhaseEnergy,
    Snapshot,
    idle_energy,
    idle_watts_from,
    in_totals,
    phase_energy,
    phase_total,
    weakest_source,
)
from engine.core.errors import JouleLabError
from engine.core.records import (
    CpuContention,
    CurvePoint,
    EnergyValue,
    GpuContention,
    IdlePower,
    NvmlAgreement,
    PhaseRecord,
    to_json_object,
)
from engine.worker.meters import discover
from engine.worker.meters.base import Meter, Missing
from engine.worker.meters.contention import ContentionRecord, contention_between, open_contention
from engine.worker.meters.model import ModelMeter, ProcessTreeCpuTime
from engine.worker.meters.nvml import NvmlLibrary, NvmlMeter, OtherProcess, agreement
from engine.worker.meters.sampler import DomainSample, Sampler

IDLE = "idle"  # the window whose mean power every later window subtracts
BACKGROUND_EVENTS = ("sample", "meter_gap")  # may come from the sampler's thread


class EventSink(Protocol):
    """Takes one event: its type and its fields (engine.core.events)."""

    def __call__(self, event_type: str, /, **fields: Any) -> object: ...


def _no_events(event_type: str, /, **fields: Any) -> None:
    pass


def _no_sync() -> None:
    pass


class WindowError(JouleLabError):
    """A window used out of order (nested, not the open one, a name used twice, not started)."""


@dataclass
class _OpenWindow:
    name: str
    start: Snapshot
    gpu_others: dict[str, list[OtherProcess]]


class PhaseMeter:
    """Meters for one run: open them (`discover`, or pass `meters`), `start()`, then windows.

    meters:    the meters to read (engine.worker.meters: RAPL, NVML, the model), their domains named
               uniquely; `missing` says which meters are absent here and why (kept for the manifest)
    sample_hz: how often the sampler's thread reads every meter between the window edges (live
               samples, and RAPL's wraparound tracking, which needs a read per wrap period)
    pid:       the process whose tree is metered: the model meter's CPU time, the CPU contention's
               "own" share, and which processes on a GPU are not the run's (default: this process)
    sync:      waits for the device's queued work; called at every window edge and `energy_so_far`
    edge:      called at every window edge after `sync`, before the meters are read: for a
               data-parallel run a barrier across its ranks (engine.worker.ranks), so a window
               begins when every rank is ready and ends when every rank's work in it is done
               (not at a partial window's end: a failed rank would never arrive)
    on_event:  receives the events (see the module's docstring)
    """

    def __init__(
        self,
        meters: Sequence[Meter],
        *,
        sample_hz: float,
        pid: int | None = None,
        missing: Sequence[Missing] = (),
        sync: Callable[[], None] = _no_sync,
        edge: Callable[[], None] = _no_sync,
        on_event: EventSink = _no_events,
    ) -> None:
        self.pid = pid or os.getpid()
        self.meters = list(meters)
        self.missing = list(missing)
        self.sample_hz = sample_hz
        self._sync = sync
        self._edge = edge
        self._emit = on_event
        # The NVML meter, when a GPU is metered: GPU contention, agreement and the GPU's state.
        self.nvml = next((m for m in self.meters if isinstance(m, NvmlMeter)), None)
        # The run's process tree, found once for all who need it: the model meter's CPU time, the
        # contention probe's own share, and which processes on a GPU are the run's.
        model = next((m for m in self.meters if isinstance(m, ModelMeter) and m.pid == self.pid), None)
        self.tree = model.tree if model is not None else ProcessTreeCpuTime(self.pid)
        self.sampler = Sampler(
            self.meters,
            sample_hz,
            on_sample=self._on_sample,
            on_gap=self._on_gap,
            contention=open_contention(self.pid, self.tree),
        )
        # Per modelled domain, what one joule was modelled from.
        self.basis: dict[str, dict[str, float]] = {name: b for m in self.meters for name, b in m.basis().items()}
        self.idle_watts: dict[str, float] = {}  # the idle window's mean power per domain
        self.records: dict[str, PhaseRecord] = {}  # every window ended, by name, in order
        self.last_window: str | None = None  # the window begun last (open or ended)
        self._open: _OpenWindow | None = None
        self._state = "new"  # new | started | stopped

    @classmethod
    def discover(
        cls,
        *,
        sample_hz: float,
        pid: int | None = None,
        tdp_w: float | None = None,
        gpu_uuids: list[str] | None = None,
        sync: Callable[[], None] = _no_sync,
        edge: Callable[[], None] = _no_sync,
        on_event: EventSink = _no_events,
        powercap_root: str | os.PathLike[str] | None = None,
        pynvml_module: NvmlLibrary | None = None,
    ) -> PhaseMeter:
        """The meters this machine has (engine.worker.meters.discover): RAPL, else the model (with
        `tdp_w`), and NVML for the GPUs in `gpu_uuids` ([]: none; None: every visible GPU)."""
        pid = pid or os.getpid()
        meters, missing = discover(
            pid, tdp_w, powercap_root=powercap_root, pynvml_module=pynvml_module, gpu_uuids=gpu_uuids
        )
        return cls(meters, sample_hz=sample_hz, pid=pid, missing=missing, sync=sync, edge=edge, on_event=on_event)

    # -- what is metered -------------------------------------------------------------------
    @property
    def domains(self) -> dict[str, Domain]:
        return self.sampler.domains

    @property
    def total_source(self) -> str:
        """The weakest source among the domains a total counts (a counter plus a model is modelled)."""
        return weakest_source(d.source for d in self.domains.values() if in_totals(d.kind))

    @property
    def open_window(self) -> str | None:
        return self._open.name if self._open is not None else None

    def idle_power(self) -> dict[str, IdlePower]:
        """The idle baseline per domain, with how it was obtained (empty before the idle window)."""
        domains = self.domains
        return {
            name: IdlePower(w=w, source=domains[name].source, method=domains[name].method)
            for name, w in self.idle_watts.items()
        }

    def gaps(self) -> list[str]:
        """Every domain that had a gap at any time, sorted."""
        return sorted(self.sampler.gaps())

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the sampler's thread (before the first window)."""
        if self._state != "new":
            raise WindowError(f"the meter is already {self._state}; a PhaseMeter starts once")
        self.sampler.start()
        self._state = "started"

    def stop(self) -> None:
        """Stop sampling and close the meters (an open window stays unrecorded: end it first)."""
        self.sampler.stop()
        self._state = "stopped"

    def __enter__(self) -> PhaseMeter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.end_open_window()
        finally:
            self.stop()

    # -- windows ---------------------------------------------------------------------------
    def begin_window(self, name: str) -> None:
        """Open window `name`: wait for the device, read every meter, announce `phase_start`."""
        if self._state != "started":
            raise WindowError(f"cannot begin window {name!r}: the meter is {self._state}; call start() first")
        if self._open is not None:
            raise WindowError(
                f"cannot begin window {name!r}: window {self._open.name!r} is still open "
                "(windows do not nest: end it first)"
            )
        if name in self.records:
            raise WindowError(f"cannot begin window {name!r}: it was already measured; give each window its own name")
        # CUDA is asynchronous: wait for the previous work, so none of it lands in this window
        self._sync()
        self._edge()
        self.tree.rescan_soon()  # the edge counts every descendant alive now
        others = self._gpu_others()
        # Open the window before announcing it: a cancel that lands during the announcement still
        # finds it open, and it is closed as partial.
        self._open = _OpenWindow(name, self.sampler.snapshot(), others)
        self.last_window = name
        self._emit("phase_start", phase=name)

    def end_window(
        self, name: str, *, partial: bool = False, steps: int | None = None, networks: int | None = None
    ) -> PhaseRecord:
        """Close window `name` and return its record (announced as `phase_end`). `partial`: closed
        early (a cancel or failure), so a device that cannot be waited for is not waited for;
        `steps` and `networks` describe a warm-up window."""
        window = self._open
        if window is None:
            raise WindowError(f"cannot end window {name!r}: no window is open")
        if window.name != name:
            raise WindowError(f"cannot end window {name!r}: the open window is {window.name!r}")
        self._open = None
        # ...and for this window's own kernels to finish before its end is read
        try:
            self._sync()
        except Exception:
            if not partial:
                raise
            # closing a failed or cancelled window: a broken device cannot be waited for, and the
            # partial record matters more
        if not partial:
            self._edge()
        self.tree.rescan_soon()  # a descendant started mid-window is in the window's energy
        start, end = window.start, self.sampler.snapshot()
        return self._keep(name, self._record(name, start, end, window.gpu_others, partial, steps, networks), partial)

    def end_open_window(self) -> PhaseRecord | None:
        """Close the open window, if any, as partial (a run that stops early keeps what it measured)."""
        if self._open is None:
            return None
        return self.end_window(self._open.name, partial=True)

    def withdraw_window(self, name: str) -> None:
        """Close window `name` with no record and no event: its time is left to the caller's own
        accounting (`joulelab measure` withdraws a command's provisional phase when the command's
        own run takes over, and that time goes to the remainder)."""
        if self._open is None or self._open.name != name:
            raise WindowError(f"cannot withdraw window {name!r}: it is not the open window")
        self._open = None

    def mark(self) -> Snapshot:
        """Every meter read now: the start of a span that `record_remainder` accounts for."""
        self.tree.rescan_soon()
        return self.sampler.snapshot()

    def record_remainder(self, name: str, since: Snapshot, windows: Sequence[str]) -> PhaseRecord:
        """Record window `name` as the energy from `since` until now that the given `windows` (all
        ended within that span) do not hold, and announce it as `phase_end`: a command's lifetime
        outside the phases its code marked, so that all of it is accounted for. Derived, not read
        at its own edges: per domain, the span's joules minus the windows'; its meter error is
        the span's (its edges are the windows' edges); no contention of its own."""
        if self._open is not None:
            raise WindowError(f"cannot record remainder {name!r}: window {self._open.name!r} is still open")
        if name in self.records:
            raise WindowError(f"cannot record remainder {name!r}: it was already measured")
        self._sync()
        self.tree.rescan_soon()
        end = self.sampler.snapshot()
        inside = [self.records[w] for w in windows]
        duration = max(0.0, end.t - since.t - sum(r.duration_s for r in inside))
        span = phase_energy(since, end, self.domains, self.idle_watts, 1.0 / self.sample_hz)
        energy = {}
        for domain, e in span.items():
            gross = e.gross_j - sum(r.energy[domain].gross_j for r in inside if domain in r.energy)
            energy[domain] = dataclasses.replace(
                e, gross_j=max(0.0, gross), idle_j=idle_energy(self.idle_watts.get(domain, 0.0), duration)
            )
        record = PhaseRecord(
            duration_s=duration,
            energy={domain: self._with_basis(domain, e) for domain, e in energy.items()},
            total=phase_total(energy.values()),
        )
        return self._keep(name, record, partial=False)

    def _keep(self, name: str, record: PhaseRecord, partial: bool) -> PhaseRecord:
        """Keep window `name`'s record and announce it: the one `phase_end` of every window."""
        self.records[name] = record
        self._emit(
            "phase_end",
            phase=name,
            duration_s=record.duration_s,
            energy={domain: to_json_object(e) for domain, e in record.energy.items()},
            total=to_json_object(record.total),
            partial=partial,
        )
        return record

    def measure_idle(self, seconds: float, sleep: Callable[[float], None] = time.sleep) -> PhaseRecord:
        """The idle baseline: the window "idle" over `seconds` of this process doing nothing."""
        self.begin_window(IDLE)
        sleep(seconds)
        return self.end_window(IDLE)

    def energy_so_far(self) -> float:
        """The open window's total joules so far (after waiting for the device): an epoch's point
        on the energy-to-accuracy curve."""
        if self._open is None:
            raise WindowError("no window is open to read the energy so far of")
        self._sync()  # the joules cover every kernel queued so far
        start, now = self._open.start, self.sampler.snapshot()
        return sum(now.joules[n] - start.joules[n] for n, d in self.domains.items() if in_totals(d.kind))

    def curve_point(self, epoch: int, val_accuracy: float) -> CurvePoint:
        """A point of the energy-to-accuracy curve at an epoch's end in the open window: its joules
        so far (after the device's queued work) and their source, announced as an `epoch` event."""
        phase = self.open_window
        if phase is None:
            raise WindowError("no window is open to put a curve point in")
        point = CurvePoint(
            phase=phase,
            epoch=epoch,
            val_accuracy_frac=val_accuracy,
            cumulative_j=self.energy_so_far(),
            source=self.total_source,
        )
        # the epoch event keeps its own (event schema) field names
        self._emit(
            "epoch",
            phase=phase,
            epoch=epoch,
            val_accuracy=val_accuracy,
            cumulative_j=point.cumulative_j,
            source=point.source,
        )
        return point

    # -- the record ------------------------------------------------------------------------
    def _record(
        self,
        name: str,
        start: Snapshot,
        end: Snapshot,
        gpu_others_at_start: dict[str, list[OtherProcess]],
        partial: bool,
        steps: int | None,
        networks: int | None,
    ) -> PhaseRecord:
        domains = self.domains
        duration = end.t - start.t
        if name == IDLE and duration > 0:
            # The baseline itself: its mean power is what later windows subtract, so all of its
            # energy is idle and none of it net.
            self.idle_watts = idle_watts_from({n: end.joules[n] - start.joules[n] for n in domains}, duration)
        energy = phase_energy(start, end, domains, self.idle_watts, 1.0 / self.sample_hz)
        if name == IDLE:
            for e in energy.values():
                e.idle_j = e.gross_j  # exactly, not watts x duration with its rounding
        record = PhaseRecord(
            duration_s=duration,
            energy={domain: self._with_basis(domain, e) for domain, e in energy.items()},
            total=phase_total(energy.values()),
            partial=partial,
            steps=steps,
            networks=networks,
        )
        probe = self.sampler.contention
        if start.cpu is not None and end.cpu is not None and probe is not None:
            contention = contention_between(start.cpu, end.cpu, probe.cpus)
            if contention is not None:
                record.contention = CpuContention(**contention)
        if self.nvml is not None:
            record.gpu_contention = gpu_contention(gpu_others_at_start, self._gpu_others())
            record.nvml_agreement = {domain: NvmlAgreement(**a) for domain, a in agreement(energy).items()}
        return record

    def _with_basis(self, domain: str, energy: PhaseEnergy) -> EnergyValue:
        """A modelled domain's record keeps what it was modelled from, so it can be re-modelled."""
        value = energy.as_value()
        basis = self.basis.get(domain)
        if basis:
            value.basis = dict(basis)
        return value

    def _own_pids(self) -> set[int]:
        return self.tree.pids()

    def _gpu_others(self) -> dict[str, list[OtherProcess]]:
        return self.nvml.other_processes(self._own_pids()) if self.nvml is not None else {}

    def _on_gap(self, domain: str, reason: str) -> None:
        self._emit("meter_gap", domain=domain, reason=reason)

    def _on_sample(self, domains: dict[str, DomainSample], machine: ContentionRecord | None) -> None:
        fields: dict[str, Any] = {"domains": domains}
        if machine is not None:
            fields["machine"] = {k: machine[k] for k in ("others_cpu_share", "steal_share", "contended")}
        if self.nvml is not None and self.nvml.state:
            # temperature, SM clock, clock-event (throttle) reasons, power: per metered GPU
            fields["gpu"] = {k: dict(v) for k, v in self.nvml.state.items()}
        self._emit("sample", **fields)


def gpu_contention(
    at_start: dict[str, list[OtherProcess]], at_end: dict[str, list[OtherProcess]]
) -> dict[str, GpuContention]:
    """Other processes seen on each metered GPU at the window's start or end. Their work is inside
    the GPU's joules and NVML cannot apportion it, so a window with any is flagged `contended`."""
    out = {}
    for domain in sorted(set(at_start) | set(at_end)):
        procs = {p["pid"]: p for p in at_start.get(domain, []) + at_end.get(domain, [])}
        out[domain] = GpuContention(
            # copied as plain JSON objects, the record's type for them
            other_processes=[dict[str, Any](p) for p in sorted(procs.values(), key=lambda p: p["pid"])],
            contended=bool(procs),
        )
    return out
