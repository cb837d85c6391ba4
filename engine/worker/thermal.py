"""Thermal drift guard: a GPU that is still warm from the previous run draws more power at idle
and may clock differently, so paired runs would not start from the same state.

Each run keeps its GPU's idle power and temperature (read at the end of its idle baseline) in the
user cache, per GPU UUID. The next run compares its own start with it: `started_warm` when the
GPU is outside the band, and with `cooldown_s` > 0 it first waits (up to that long) until the GPU
is back inside. Only a run that started inside the band (or the first one) replaces the stored
baseline, so a warm run never becomes the reference.

`RunThermal` is a run's use of it: before the idle baseline, after it, and after the last phase.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

from engine.core.settings import settings
from engine.worker.meters.nvml import GpuState

if TYPE_CHECKING:
    from engine.worker.meters.nvml import NvmlMeter

# Inside the band: temperature at most this many degrees above the baseline, and idle power at most
# this fraction (or, for near-zero idle draw, this many watts) above it. A GPU's idle temperature
# settles within a couple of degrees of its steady state; its idle power varies a few percent.
BAND_TEMP_C = 3.0
BAND_POWER_REL = 0.10
BAND_POWER_W = 3.0
POLL_S = 1.0  # NVML's power reading is a 1 s average on recent GPUs: no point reading faster


class Baseline(TypedDict, total=False):
    """A GPU's stored idle baseline (the cache file, as the run that set it wrote it)."""

    power_w: float | None
    temp_c: float | None
    run_id: str
    wall_time: float


class Band(TypedDict):
    temp_c: float
    power_rel: float
    power_w: float


class CoolDown(TypedDict, total=False):
    """What run.json keeps of the cool-down: `why_warm` only when the run starts warm."""

    baseline: Baseline | None
    at_start: GpuState
    at_idle: GpuState
    cooldown_s: float
    waited_s: float
    started_warm: bool
    why_warm: list[str]
    band: Band


def baseline_path(uuid: str, root: Path | None = None) -> Path:
    return (root or settings().cache_root()) / "gpu-idle" / f"{uuid}.json"


def load_baseline(uuid: str, root: Path | None = None) -> Baseline | None:
    try:
        data = json.loads(baseline_path(uuid, root).read_text())
    except (OSError, ValueError):
        return None
    # The file this module writes, read as written (not validated: outside_band skips a reading
    # it lacks, and the numbers keep their JSON type in the messages).
    return cast(Baseline, data) if isinstance(data, dict) else None


def save_baseline(uuid: str, state: GpuState, run_id: str, root: Path | None = None) -> str | None:
    """Store `state` (power_w, temp_c) as this GPU's idle baseline; returns a problem or None."""
    path = baseline_path(uuid, root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        baseline: Baseline = {
            "power_w": state.get("power_w"),
            "temp_c": state.get("temp_c"),
            "run_id": run_id,
            "wall_time": time.time(),
        }
        tmp.write_text(json.dumps(baseline))
        tmp.replace(path)
    except OSError as exc:
        return f"could not save the GPU idle baseline to {path}: {exc.strerror}"
    return None


def outside_band(state: GpuState, baseline: Baseline) -> list[str]:
    """What is above the band (empty: inside it). Missing readings are not held against the GPU."""
    out: list[str] = []
    temp, base_temp = state.get("temp_c"), baseline.get("temp_c")
    if temp is not None and base_temp is not None and temp > base_temp + BAND_TEMP_C:
        out.append(f"temperature {temp} C > {base_temp} + {BAND_TEMP_C:g} C")
    power, base_power = state.get("power_w"), baseline.get("power_w")
    if power is not None and base_power is not None:
        limit = base_power + max(BAND_POWER_W, BAND_POWER_REL * base_power)
        if power > limit:
            out.append(f"idle power {power:.1f} W > {limit:.1f} W")
    return out


def cool_down(
    read: Callable[[], GpuState],
    baseline: Baseline | None,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> CoolDown:
    """Wait until `read()` (one GPU's state) is inside the band of `baseline`, or `timeout_s`.

    Returns the record run.json keeps: the baseline, the state at the start, how long it
    waited, and whether the run starts warm (outside the band when the wait ended).
    """
    start = clock()
    state = read()
    first = state.copy()
    why = outside_band(state, baseline) if baseline else []
    while baseline and why and clock() - start < timeout_s:
        sleep(min(POLL_S, max(0.0, timeout_s - (clock() - start))))
        state = read()
        why = outside_band(state, baseline)
    record: CoolDown = {
        "baseline": baseline,
        "at_start": first,
        "at_idle": state.copy(),
        "cooldown_s": timeout_s,
        "waited_s": round(clock() - start, 3),
        "started_warm": bool(why),
    }
    if why:
        record["why_warm"] = why
    record["band"] = {"temp_c": BAND_TEMP_C, "power_rel": BAND_POWER_REL, "power_w": BAND_POWER_W}
    return record


class RunThermal:
    """The guard for the metered GPU one run trains on. `record` is run.json's thermal record
    (CoolDown, then idle_before, baseline_problem, idle_after), filled in as the run goes."""

    def __init__(self, nvml: NvmlMeter, domain: str, uuid: str, run_id: str) -> None:
        self.nvml = nvml
        self.domain = domain
        self.uuid = uuid
        self.run_id = run_id
        self.record: dict[str, Any] = {"gpu": domain, "uuid": uuid}

    @classmethod
    def for_run(cls, nvml: NvmlMeter | None, on_cuda: bool, run_id: str) -> RunThermal | None:
        """The guard for the run's GPU; None for a CPU run, or without NVML or the GPU's UUID."""
        if nvml is None or not on_cuda:
            return None
        domain = next((d.name for d in nvml.domains if d.kind == "gpu"), None)
        uuid = nvml.uuid_of(domain) if domain else None
        return cls(nvml, domain, uuid, run_id) if domain and uuid else None

    def _state(self) -> GpuState:
        return self.nvml.now().get(self.domain, {})

    def cool_down(self, cooldown_s: float) -> None:
        """Before the idle baseline: compare the GPU with the previous run's idle state, and with
        cooldown_s > 0 wait until it is back in the band. A warm start is recorded, not hidden."""
        self.record.update(cool_down(self._state, load_baseline(self.uuid), cooldown_s))

    @property
    def started_warm(self) -> bool:
        return bool(self.record.get("started_warm"))

    def keep_idle_baseline(self, idle_watts: dict[str, float]) -> None:
        """After the idle phase: this run's idle state; it becomes the reference unless warm."""
        state = self._state()
        watts = idle_watts.get(self.domain)
        idle: GpuState = {
            "power_w": watts if watts is not None else state.get("power_w"),
            "temp_c": state.get("temp_c"),
        }
        self.record["idle_before"] = idle
        if not self.record["started_warm"]:
            problem = save_baseline(self.uuid, idle, self.run_id)
            if problem:
                self.record["baseline_problem"] = problem

    def read_idle_after(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """After the last phase: the GPU's idle power and temperature again (drift over the run),
        after one power-averaging window so the reading is not the test phase's tail."""
        sleep(POLL_S)
        self.record["idle_after"] = self._state()
