"""`joulelab meters`: what this machine can measure, what it cannot and why, and a short reading.

`probe()` opens the meters a run would use (engine.worker.meters.discover), reads them through the real
sampler for `seconds`, and returns a JSON-serialisable dict; `render_probe()` turns it into a rich
renderable and `probe_lines()` into plain text lines.

The model meter is pointed at this process, which sleeps while probing: it burns nothing, so its
watts are this idle process's own estimate, not the machine's. A run models its worker's tree.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from engine.worker.meters import discover, meter_name
from engine.worker.meters.base import Meter, MeterError
from engine.worker.meters.model import cpu_model_name
from engine.worker.meters.sampler import Sampler

if TYPE_CHECKING:
    from rich.console import Group

    from engine.worker.meters.nvml import NvmlLibrary

READ_COST_READS = 20


class ProbeDomain(TypedDict):
    domain: str
    kind: str
    source: str
    method: str
    joules: float | None  # None where it is unknown: a gap, or not finite (null in JSON)
    watts: float | None
    gap: NotRequired[str]  # why the domain's energy over the probe is unknown


class ProbeMeter(TypedDict):
    meter: str
    read_us: float | None  # median time of one read(); None where reading failed
    domains: list[ProbeDomain]
    manifest: dict[str, Any]  # the meter's own (Meter.manifest)
    note: NotRequired[str]


class ProbeReport(TypedDict):
    """What `joulelab meters` reports (also as JSON)."""

    seconds: float
    hz: float
    cpu_model: str
    meters: list[ProbeMeter]
    missing: list[dict[str, str]]  # Missing.as_dict(): meter, reason


def _read_cost_us(meter: Meter) -> float | None:
    """Median microseconds of one read() of the meter (None if it fails)."""
    times = []
    for _ in range(READ_COST_READS):
        t0 = time.perf_counter()
        try:
            meter.read()
        except MeterError:
            return None
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e6


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def probe(
    seconds: float = 1.0,
    tdp_w: float | None = None,
    *,
    hz: float = 10.0,
    powercap_root: str | os.PathLike[str] | None = None,
    pynvml_module: NvmlLibrary | None = None,
) -> ProbeReport:
    """Open every meter, read it for `seconds` at `hz`, and report watts per domain."""
    if not seconds > 0:
        raise ValueError(f"probe time must be positive, not {seconds}")
    meters, missing = discover(os.getpid(), tdp_w, powercap_root=powercap_root, pynvml_module=pynvml_module)
    costs = [_read_cost_us(m) for m in meters]
    gaps: dict[str, str] = {}

    def note_gap(domain: str, reason: str) -> None:
        gaps.setdefault(domain, reason)  # the first reason per domain

    sampler = Sampler(meters, hz, on_gap=note_gap)
    try:
        start = sampler.snapshot()
        sampler.start()
        time.sleep(seconds)
        end = sampler.snapshot()
    finally:
        sampler.stop()
    elapsed = end.t - start.t

    report_meters: list[ProbeMeter] = []
    for meter, cost in zip(meters, costs, strict=True):
        name = meter_name(meter)
        domains: list[ProbeDomain] = []
        for d in meter.domains:
            # A gap's energy is unknown: the sampler keeps the last value read, so the
            # difference would be a made-up number (often 0.0 W), never a measurement.
            gap = gaps.get(d.name)
            joules = None if gap is not None else _finite(end.joules[d.name] - start.joules[d.name])
            entry: ProbeDomain = {
                "domain": d.name,
                "kind": d.kind,
                "source": d.source,
                "method": d.method,
                "joules": joules,
                "watts": _finite(joules / elapsed) if joules is not None and elapsed > 0 else None,
            }
            if gap is not None:
                entry["gap"] = gap
            domains.append(entry)
        item: ProbeMeter = {
            "meter": name,
            "read_us": _finite(cost),
            "domains": domains,
            "manifest": meter.manifest(),
        }
        if name == "model":
            item["note"] = (
                "estimate for this probe's own process, idle while probing; a run estimates its worker's process tree"
            )
        report_meters.append(item)

    return {
        "seconds": elapsed,
        "hz": hz,
        "cpu_model": cpu_model_name(),
        "meters": report_meters,
        "missing": [m.as_dict() for m in missing],
    }


def _reason(miss: dict[str, str]) -> str:
    """The reason without a repeat of the meter's name ("rapl: RAPL: ..." reads badly)."""
    reason, prefix = miss["reason"], miss["meter"].upper() + ": "
    return reason[len(prefix) :] if reason.startswith(prefix) else reason


def _fmt_w(w: float | None) -> str:
    return "unknown" if w is None else f"{w:.2f} W"


def _fmt_us(us: float | None) -> str:
    return "-" if us is None else f"{us:.0f} µs"


def probe_lines(report: ProbeReport) -> list[str]:
    """The report as plain text lines (for logs, pipes and --plain)."""
    lines = [
        f"Meters on this machine ({report['cpu_model']}), read for {report['seconds']:.2f} s at {report['hz']:g} Hz:"
    ]
    for m in report["meters"]:
        lines.append(f"  {m['meter']} (one read: {_fmt_us(m['read_us'])})")
        for d in m["domains"]:
            gap = f"  GAP: {d['gap']}" if "gap" in d else ""
            lines.append(
                f"    {d['domain']:<14} {d['kind']:<8} {_fmt_w(d['watts']):>10}  {d['source']:<8} {d['method']}{gap}"
            )
        if m.get("note"):
            lines.append(f"    note: {m['note']}")
        for note in m["manifest"].get("notes", []) or []:
            lines.append(f"    note: {note}")
    if report["missing"]:
        lines.append("Not used:")
        for miss in report["missing"]:
            lines.append(f"  {miss['meter']}: {_reason(miss)}")
    return lines


def render_probe(report: ProbeReport) -> Group:
    """The report as a rich renderable: a table of domains, then what is missing and why."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=f"Meters: {report['cpu_model']}, {report['seconds']:.2f} s at {report['hz']:g} Hz", title_justify="left"
    )
    table.add_column("meter")
    table.add_column("domain")
    table.add_column("kind")
    table.add_column("power", justify="right")
    table.add_column("source")
    table.add_column("method")
    table.add_column("read", justify="right")
    notes = []
    for m in report["meters"]:
        for i, d in enumerate(m["domains"]):
            source = Text(d["source"], style="yellow" if d["source"] == "modelled" else "green")
            power = Text(_fmt_w(d["watts"]) + (" (gap)" if "gap" in d else ""))
            table.add_row(
                m["meter"] if i == 0 else "",
                d["domain"],
                d["kind"],
                power,
                source,
                d["method"],
                _fmt_us(m["read_us"]) if i == 0 else "",
            )
        if m.get("note"):
            notes.append(f"{m['meter']}: {m['note']}")
        notes.extend(f"{m['meter']}: {n}" for n in m["manifest"].get("notes", []) or [])
        notes.extend(f"{d['domain']}: {d['gap']}" for d in m["domains"] if "gap" in d)
    parts: list[Any] = [table]
    for n in notes:
        parts.append(Text(f"note  {n}", style="dim"))
    if report["missing"]:
        parts.append(Text("Not used:", style="bold"))
        for miss in report["missing"]:
            parts.append(Text(f"  {miss['meter']}: {_reason(miss)}"))
    return Group(*parts)
