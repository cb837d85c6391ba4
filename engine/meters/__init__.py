"""Meters: find what this machine can measure, and say why the rest is missing.

`discover()` is the one place that decides which meters a run uses:
- RAPL (CPU packages and DRAM) where the powercap counters are readable; otherwise the model;
- NVML for the GPUs the run may use;
- every meter not used is returned as a Missing with the reason.
"""

from __future__ import annotations

from engine.meters.base import Domain, Meter, MeterError, MeterUnavailable, Missing
from engine.meters.model import ModelMeter

__all__ = ["Domain", "Meter", "MeterError", "MeterUnavailable", "Missing", "ModelMeter", "discover"]


def discover(pid: int, tdp_w: float | None = None) -> tuple[list[Meter], list[Missing]]:
    meters: list[Meter] = []
    missing: list[Missing] = []
    missing.append(Missing("rapl", "RAPL meter not built yet"))
    meters.append(ModelMeter(pid=pid, tdp_w=tdp_w))
    missing.append(Missing("nvml", "NVML meter not built yet"))
    return meters, missing
