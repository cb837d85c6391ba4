"""Meters: find what this machine can measure, and say why the rest is missing.

`discover()` is the one place that decides which meters a run uses:
- RAPL (CPU packages, DRAM, psys) where the powercap counters are readable; otherwise the model
  (CPU time x TDP, RSS x W/GB), which is an estimate and says so;
- NVML for the GPU the run trains on (matched by UUID among CUDA_VISIBLE_DEVICES); the other
  GPUs are listed as present but unused;
- every meter not used is returned as a Missing with a one-line reason, so the run manifest names
  every meter found and why the others are absent.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from engine.core.energy import Domain
from engine.worker.meters.base import Meter, MeterError, MeterUnavailable, Missing
from engine.worker.meters.model import ModelMeter

if TYPE_CHECKING:
    from engine.worker.meters.nvml import NvmlLibrary

__all__ = ["Domain", "Meter", "MeterError", "MeterUnavailable", "Missing", "ModelMeter", "discover", "meter_name"]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def discover(
    pid: int,
    tdp_w: float | None = None,
    *,
    powercap_root: str | os.PathLike[str] | None = None,
    pynvml_module: NvmlLibrary | None = None,
    gpu_uuids: list[str] | None = None,
) -> tuple[list[Meter], list[Missing]]:
    """The meters for a run whose work happens in process `pid` (and its children).

    `gpu_uuids`: the GPUs the run trains on (none for a CPU run); None meters every visible GPU.
    `tdp_w` only matters to the model meter. `powercap_root` and `pynvml_module` are for tests
    (defaults: the powercap_root setting or /sys/class/powercap, and the real pynvml).
    Never raises for a meter that cannot be opened; each such meter becomes a Missing.
    """
    from engine.worker.meters.nvml import open_nvml
    from engine.worker.meters.rapl import open_rapl

    meters: list[Meter] = []
    missing: list[Missing] = []

    try:
        rapl = open_rapl(powercap_root)
    except Exception as exc:  # MeterUnavailable, or a bug: either way the run goes on, modelled
        reason = str(exc) if isinstance(exc, MeterUnavailable) else f"RAPL: {type(exc).__name__}: {exc}"
        missing.append(Missing("rapl", _one_line(reason)))
        meters.append(ModelMeter(pid=pid, tdp_w=tdp_w))
    else:
        meters.append(rapl)
        kinds = {d.kind for d in rapl.domains}
        note = "" if "dram" in kinds else "; DRAM is not measured (this CPU has no RAPL dram zone)"
        missing.append(Missing("model", f"not used: RAPL counters measure the CPU{note}"))

    try:
        meters.append(open_nvml(pynvml_module, used_uuids=gpu_uuids))
    except MeterUnavailable as exc:
        missing.append(Missing("nvml", _one_line(str(exc))))

    return meters, missing


def meter_name(meter: Meter) -> str:
    """The short name of a meter ("rapl", "nvml", "model"), as used in Missing and manifests."""
    try:
        name = meter.manifest().get("meter")
    except Exception:
        name = None
    return str(name) if name else type(meter).__name__.lower().removesuffix("meter")
