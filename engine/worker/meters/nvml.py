"""NVML: NVIDIA GPU energy through nvidia-ml-py (imported as `pynvml`).

Per GPU the run uses, the best source it has:
- `counter`: nvmlDeviceGetTotalEnergyConsumption, the board's energy in millijoules since the
  driver was loaded (Volta and newer). A 64-bit counter: no wraparound. Exact to the millijoule.
- `polled`: otherwise nvmlDeviceGetPowerUsage (milliwatts) integrated with the trapezoid rule
  over this meter's reads. Its accuracy depends on the read rate, and on Ampere and newer
  (except GA100) the reading is itself a one-second average, so short phases are smoothed.
Where the counter exists, polled power is integrated too, as a second domain `gpuN-polled` of
kind "cross-check": never added to totals (that would count the GPU twice), kept so every phase
says how far the two methods are apart (`agreement`).

Each read also keeps the GPU's state (temperature, SM clock, clock-event "throttle" reasons,
power) for the live samples, and `other_processes` lists the compute processes on the metered
GPUs that are not ours (GPU contention).

Which GPUs: those the run can use, from CUDA_VISIBLE_DEVICES as CUDA reads it: unset means all;
empty means none; a comma list of indices or (prefixes of) UUIDs `GPU-...`; CUDA stops at the
first entry it cannot use, and so do we. Indices are NVML's (PCI bus order), which is CUDA's
order when CUDA_DEVICE_ORDER=PCI_BUS_ID; with CUDA's default order and different GPU models
they may differ, and the manifest says so. Domains are named by position among the visible GPUs
(`gpu0`, `gpu1`, ...), which is the index torch uses.

Both sources measure the whole GPU: every process on it, not only this run. MIG instances
are not metered (NVML's energy is per physical GPU).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypedDict, TypeVar

from engine.core.energy import CROSS_CHECK, Domain, PhaseEnergy
from engine.worker.meters.base import Meter, MeterError, MeterUnavailable

# NVML return codes (nvml.h); read from the module when it has them.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_TEMPERATURE_GPU = 0
_CLOCK_SM = 1
_CLOCK_MEM = 2


class NvmlProcess(Protocol):
    """One entry of nvmlDeviceGetComputeRunningProcesses."""

    pid: int
    usedGpuMemory: int | None  # bytes; None where the driver does not say


class NvmlLibrary(Protocol):
    """The part of pynvml (nvidia-ml-py, untyped) this meter calls; tests pass a fake module that
    follows it (tests/fakes/fake_pynvml.py). A device handle is opaque: whatever
    nvmlDeviceGetHandleByIndex returns is passed back. Strings are bytes in older bindings."""

    NVMLError: type[Exception]  # carries the NVML return code as `.value`

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str | bytes: ...
    def nvmlSystemGetNVMLVersion(self) -> str | bytes: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> object: ...
    def nvmlDeviceGetName(self, handle: object) -> str | bytes: ...
    def nvmlDeviceGetUUID(self, handle: object) -> str | bytes: ...
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int: ...  # mJ
    def nvmlDeviceGetPowerUsage(self, handle: object) -> int: ...  # mW
    def nvmlDeviceGetPowerManagementLimit(self, handle: object) -> int: ...  # mW
    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: object) -> int: ...  # mW
    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: object) -> Sequence[int]: ...  # [min, max] mW
    def nvmlDeviceSetPowerManagementLimit(self, handle: object, limit: int) -> None: ...  # mW; root only
    def nvmlDeviceGetTemperature(self, handle: object, sensor: int) -> int: ...  # C
    def nvmlDeviceGetClockInfo(self, handle: object, clock_type: int) -> int: ...  # MHz
    def nvmlDeviceGetMaxClockInfo(self, handle: object, clock_type: int) -> int: ...  # MHz
    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: object) -> int: ...  # drivers >= 535
    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: object) -> int: ...  # older name
    def nvmlDeviceGetComputeRunningProcesses(self, handle: object) -> Sequence[NvmlProcess]: ...


class GpuState(TypedDict, total=False):
    """A metered GPU's state at one read (None where the GPU cannot say): context for the energy,
    never energy itself. Every key is present when NVML read it; a reader may hold an empty one
    for a GPU it has no reading of."""

    temp_c: int | None
    sm_mhz: int | None
    throttle: int | None  # NVML's clock-event reasons bit mask
    power_w: float | None


class OtherProcess(TypedDict):
    """A compute process on a metered GPU that is not the run's (GPU contention)."""

    pid: int
    used_gpu_memory_mb: float | None


class UnusedGpu(TypedDict):
    """A visible GPU the run does not train on: present, not metered."""

    domain: str
    nvml_index: int
    name: str
    uuid: str
    why: str


class UnmeteredGpu(TypedDict):
    """A GPU the run uses that reports neither energy nor power."""

    nvml_index: int
    name: str
    uuid: str
    why: str


class Agreement(TypedDict):
    """A GPU's energy counter beside its integrated polled power over the same phase."""

    counter_j: float
    polled_j: float
    diff_j: float
    diff_rel: float | None
    short: bool


def _code(nvml: NvmlLibrary, name: str, default: int) -> int:
    return getattr(nvml, name, default)


def nvml_text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_visible(spec: str | None, uuids: list[str]) -> tuple[list[int], list[str]]:
    """NVML indices of the GPUs CUDA_VISIBLE_DEVICES=spec lets a process use, and notes.

    `uuids` lists every GPU's UUID in NVML index order.
    """
    count = len(uuids)
    if spec is None:
        return list(range(count)), []
    spec = spec.strip()
    if not spec:
        return [], ["CUDA_VISIBLE_DEVICES is empty: no GPU is visible"]
    chosen: list[int] = []
    notes: list[str] = []
    for raw in spec.split(","):
        tok = raw.strip()
        if tok.isdigit():
            i = int(tok)
            if i >= count:
                notes.append(
                    f"CUDA_VISIBLE_DEVICES entry {tok!r}: no GPU {i} (found {count}); "
                    "CUDA ignores it and every later entry"
                )
                break
        elif tok.upper().startswith("GPU-"):
            matches = [j for j, u in enumerate(uuids) if u.upper().startswith(tok.upper())]
            if len(matches) != 1:
                why = "matches no GPU" if not matches else "matches several GPUs"
                notes.append(f"CUDA_VISIBLE_DEVICES entry {tok!r} {why}; CUDA ignores it and every later entry")
                break
            i = matches[0]
        elif tok.upper().startswith("MIG-"):
            notes.append(
                f"CUDA_VISIBLE_DEVICES entry {tok!r} is a MIG instance: NVML energy is per "
                "physical GPU, so MIG instances are not metered"
            )
            break
        else:
            notes.append(
                f"CUDA_VISIBLE_DEVICES entry {tok!r} is not an index or GPU UUID; CUDA ignores it and every later entry"
            )
            break
        if i in chosen:
            notes.append(f"CUDA_VISIBLE_DEVICES names GPU {i} twice; metered once")
            continue
        chosen.append(i)
    return chosen, notes


@dataclass
class _Gpu:
    domain: Domain
    nvml_index: int
    handle: object
    name: str
    uuid: str
    power_limit_w: float | None
    counter: bool
    last_mj: int = 0
    total_mj: int = 0
    last_mw: float = 0.0
    last_t: float = 0.0
    energy_j: float = 0.0  # integrated polled power (the source, or the counter's cross-check)
    polled: Domain | None = None  # the cross-check domain beside a counter
    clocks: dict[str, int | None] | None = None


def _integrate(g: _Gpu, mw: float, t: float) -> None:
    """Trapezoid rule over this meter's power reads."""
    dt = max(0.0, t - g.last_t)
    g.energy_j += (g.last_mw + mw) / 2.0 / 1000.0 * dt
    g.last_mw, g.last_t = mw, t


class NvmlMeter(Meter):
    """Cumulative joules of every visible NVIDIA GPU since the meter was opened."""

    def __init__(
        self,
        pynvml_module: NvmlLibrary | None = None,
        visible: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        use_env: bool = True,
        used_uuids: list[str] | None = None,
    ) -> None:
        """`used_uuids`: the GPUs this run trains on (None: every visible GPU, as `joulelab
        meters` shows them). The other visible GPUs are listed as present but unused."""
        self._clock = clock
        self._used_uuids = used_uuids
        self.state: dict[str, GpuState] = {}
        self._lock = threading.Lock()
        self._closed = False
        nvml: NvmlLibrary = pynvml_module if pynvml_module is not None else import_pynvml()
        self._nvml = nvml
        if visible is None and use_env:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.visible_spec = visible
        init_nvml(nvml)
        try:
            self._open(visible)
        except MeterUnavailable:
            self._shutdown()
            raise
        except Exception as exc:  # any NVML or binding failure while enumerating: not fatal
            self._shutdown()
            raise MeterUnavailable(f"NVML: {describe_nvml_error(exc)}") from None

    def _open(self, visible: str | None) -> None:
        nvml = self._nvml
        self.driver_version = _optional(lambda: nvml_text(nvml.nvmlSystemGetDriverVersion()))
        self.nvml_version = _optional(lambda: nvml_text(nvml.nvmlSystemGetNVMLVersion()))
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [nvml_text(nvml.nvmlDeviceGetUUID(h)) for h in handles]
        indices, self.notes = parse_visible(visible, uuids)
        if count == 0:
            raise MeterUnavailable("NVML: no NVIDIA GPU found")
        if not indices:
            why = f"; {self.notes[0]}" if self.notes and visible and visible.strip() else ""
            raise MeterUnavailable(f"NVML: no GPU visible to this run (CUDA_VISIBLE_DEVICES={visible!r}){why}")
        not_supported = _code(nvml, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED)
        self._gpus: list[_Gpu] = []
        self.unmetered: list[UnmeteredGpu] = []
        self.unused: list[UnusedGpu] = []
        names = []
        for position, nvml_index in enumerate(indices):
            h = handles[nvml_index]
            name = nvml_text(nvml.nvmlDeviceGetName(h))
            names.append(name)
            # named by CUDA's index (position among the visible GPUs): gpu1 is cuda:1
            dname = f"gpu{position}"
            if self._used_uuids is not None and uuids[nvml_index].upper() not in {u.upper() for u in self._used_uuids}:
                self.unused.append(
                    {
                        "domain": dname,
                        "nvml_index": nvml_index,
                        "name": name,
                        "uuid": uuids[nvml_index],
                        "why": "present but not used by this run",
                    }
                )
                continue
            limit_mw = _optional(nvml.nvmlDeviceGetPowerManagementLimit, h)
            limit = limit_mw / 1000.0 if limit_mw is not None else None
            counter = True
            t = self._clock()
            try:
                last_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(h))
                last_mw = 0.0
            except nvml.NVMLError as exc:
                if getattr(exc, "value", None) != not_supported:
                    raise
                counter = False
                last_mj = 0
                try:
                    last_mw = float(nvml.nvmlDeviceGetPowerUsage(h))
                except nvml.NVMLError as exc2:
                    self.unmetered.append(
                        {
                            "nvml_index": nvml_index,
                            "name": name,
                            "uuid": uuids[nvml_index],
                            "why": f"neither energy counter nor power reading: {exc2}",
                        }
                    )
                    continue
            polled = None
            if counter:
                domain = Domain(dname, "counter", f"nvml:{dname}:energy-counter", "gpu")
                power_mw = _optional(nvml.nvmlDeviceGetPowerUsage, h)
                if power_mw is not None:
                    polled = Domain(f"{dname}-polled", "polled", f"nvml:{dname}:power-integrated", CROSS_CHECK)
                last_mw = float(power_mw or 0)
            else:
                domain = Domain(dname, "polled", f"nvml:{dname}:power-integrated", "gpu")
            clocks = {
                "sm_mhz": _optional(nvml.nvmlDeviceGetClockInfo, h, _CLOCK_SM),
                "sm_max_mhz": _optional(nvml.nvmlDeviceGetMaxClockInfo, h, _CLOCK_SM),
                "mem_mhz": _optional(nvml.nvmlDeviceGetClockInfo, h, _CLOCK_MEM),
                "mem_max_mhz": _optional(nvml.nvmlDeviceGetMaxClockInfo, h, _CLOCK_MEM),
            }
            self._gpus.append(
                _Gpu(
                    domain,
                    nvml_index,
                    h,
                    name,
                    uuids[nvml_index],
                    limit,
                    counter,
                    last_mj=last_mj,
                    last_mw=last_mw,
                    last_t=t,
                    polled=polled,
                    clocks=clocks,
                )
            )
        if not self._gpus and self.unused:
            present = ", ".join(f"{u['domain']} {u['name']} {u['uuid']}" for u in self.unused)
            if self._used_uuids:
                raise MeterUnavailable(
                    f"NVML: no visible GPU has the run's UUID {', '.join(self._used_uuids)} (present: {present})"
                )
            raise MeterUnavailable(f"NVML: not used: this run does not train on a GPU (present: {present})")
        if not self._gpus:
            raise MeterUnavailable(
                "NVML: no visible GPU reports energy or power "
                f"({'; '.join(u['name'] + ': ' + u['why'] for u in self.unmetered)})"
            )
        order = os.environ.get("CUDA_DEVICE_ORDER")
        if len(set(names)) > 1 and order != "PCI_BUS_ID" and visible is not None:
            self.notes.append(
                "CUDA_VISIBLE_DEVICES indices are read in NVML (PCI bus) order; set "
                "CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA uses the same order for these mixed GPUs"
            )
        self.cuda_device_order = order
        self.domains = tuple(d for g in self._gpus for d in (g.domain, g.polled) if d is not None)

    def read(self) -> dict[str, float]:
        nvml = self._nvml
        with self._lock:
            if self._closed:
                raise MeterError("NVML: meter already closed")
            values: list[tuple[int | None, float | None]] = []
            for g in self._gpus:
                try:
                    mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle)) if g.counter else None
                    mw = float(nvml.nvmlDeviceGetPowerUsage(g.handle)) if (g.polled or not g.counter) else None
                except Exception as exc:
                    raise MeterError(f"NVML: {g.domain.name} ({g.name}): {describe_nvml_error(exc)}") from None
                values.append((mj, mw))
            t = self._clock()
            out: dict[str, float] = {}
            restarted: list[_Gpu] = []
            for g, (mj, mw) in zip(self._gpus, values, strict=True):
                if mw is not None:
                    _integrate(g, mw, t)
                if mj is not None:  # read exactly when the GPU has a counter
                    if mj < g.last_mj:
                        restarted.append(g)
                    else:
                        g.total_mj += mj - g.last_mj
                    g.last_mj = mj
                    out[g.domain.name] = g.total_mj / 1000.0
                    if g.polled is not None:
                        out[g.polled.name] = g.energy_j
                else:
                    out[g.domain.name] = g.energy_j
                self.state[g.domain.name] = self._gpu_state(g, mw)
            if restarted:
                g = restarted[0]
                raise MeterError(
                    f"NVML: {g.domain.name} ({g.name}) energy counter went backwards "
                    "(driver reloaded?); the energy since the previous read is lost"
                )
            return out

    def _gpu_state(self, g: _Gpu, mw: float | None) -> GpuState:
        """Temperature (C), SM clock (MHz), clock-event reasons (NVML's bit mask) and power (W)
        now; None where this GPU cannot say. Context for the energy, never energy itself."""
        nvml = self._nvml
        reasons = _optional(lambda: int(nvml.nvmlDeviceGetCurrentClocksEventReasons(g.handle)))
        if reasons is None:  # drivers before 535 have only the older name
            reasons = _optional(lambda: int(nvml.nvmlDeviceGetCurrentClocksThrottleReasons(g.handle)))
        return {
            "temp_c": _optional(lambda: int(nvml.nvmlDeviceGetTemperature(g.handle, _TEMPERATURE_GPU))),
            "sm_mhz": _optional(lambda: int(nvml.nvmlDeviceGetClockInfo(g.handle, _CLOCK_SM))),
            "throttle": reasons,
            "power_w": mw / 1000.0 if mw is not None else None,
        }

    def now(self) -> dict[str, GpuState]:
        """Each metered GPU's state read now (power, temperature...): for the idle and cool-down checks."""
        nvml = self._nvml
        with self._lock:
            if self._closed:
                return {}
            out: dict[str, GpuState] = {}
            for g in self._gpus:
                mw = _optional(nvml.nvmlDeviceGetPowerUsage, g.handle)
                out[g.domain.name] = self._gpu_state(g, mw)
            return out

    def other_processes(self, own_pids: set[int]) -> dict[str, list[OtherProcess]]:
        """Compute processes on each metered GPU that are not in `own_pids` (GPU contention):
        their energy is inside the GPU's joules, and NVML cannot say how much of it is theirs."""
        nvml = self._nvml
        out: dict[str, list[OtherProcess]] = {}
        with self._lock:
            if self._closed:
                return {}
            for g in self._gpus:
                procs = _optional(nvml.nvmlDeviceGetComputeRunningProcesses, g.handle)
                if procs is None:
                    continue
                out[g.domain.name] = [
                    {
                        "pid": int(p.pid),
                        "used_gpu_memory_mb": (
                            round(p.usedGpuMemory / 2**20, 1) if p.usedGpuMemory is not None else None
                        ),
                    }
                    for p in procs
                    if int(p.pid) not in own_pids
                ]
        return out

    def uuid_of(self, domain: str) -> str | None:
        return next((g.uuid for g in self._gpus if g.domain.name == domain), None)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._shutdown()

    def _shutdown(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass

    def manifest(self) -> dict[str, Any]:
        return {
            "meter": "nvml",
            "scope": "whole GPUs (every process on them)",
            "driver_version": self.driver_version,
            "nvml_version": self.nvml_version,
            "cuda_visible_devices": self.visible_spec,
            "cuda_device_order": self.cuda_device_order,
            "gpus": [
                {
                    "domain": g.domain.name,
                    "nvml_index": g.nvml_index,
                    "name": g.name,
                    "uuid": g.uuid,
                    "power_limit_w": g.power_limit_w,
                    "clocks": g.clocks,
                    "source": g.domain.source,
                    "method": g.domain.method,
                    **({"cross_check": g.polled.method} if g.polled else {}),
                    **(
                        {}
                        if g.counter
                        else {
                            "note": "nvmlDeviceGetPowerUsage integrated over reads; "
                            "a 1 s average on Ampere and newer (except GA100)"
                        }
                    ),
                }
                for g in self._gpus
            ],
            "unmetered": list(self.unmetered),
            "unused": list(self.unused),
            "notes": list(self.notes),
        }


def import_pynvml() -> NvmlLibrary:
    try:
        import pynvml
    except ImportError:
        raise MeterUnavailable("NVML: the nvidia-ml-py package is not installed (`pip install nvidia-ml-py`)") from None
    library: NvmlLibrary = pynvml  # untyped module, used through the calls NvmlLibrary names
    return library


def init_nvml(nvml: NvmlLibrary) -> None:
    try:
        nvml.nvmlInit()
    except Exception as exc:
        code = getattr(exc, "value", None)
        if code == _code(nvml, "NVML_ERROR_LIBRARY_NOT_FOUND", _LIBRARY_NOT_FOUND):
            reason = "libnvidia-ml.so not found (no NVIDIA driver on this machine)"
        elif code == _code(nvml, "NVML_ERROR_DRIVER_NOT_LOADED", _DRIVER_NOT_LOADED):
            reason = "the NVIDIA driver is not loaded (no GPU, or its kernel module is not running)"
        elif code == _code(nvml, "NVML_ERROR_NO_PERMISSION", _NO_PERMISSION):
            reason = "no permission to use the NVIDIA driver (check access to /dev/nvidia*)"
        else:
            reason = f"nvmlInit failed: {describe_nvml_error(exc)}"
        raise MeterUnavailable(f"NVML: {reason}") from None


def describe_nvml_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    code = getattr(exc, "value", None)
    return f"{text} (NVML error {code})" if isinstance(code, int) else text


T = TypeVar("T")
P = ParamSpec("P")


def _optional(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """fn(*args), or None where NVML cannot say (not supported, no permission, a driver error)."""
    try:
        return fn(*args, **kwargs)
    except Exception:
        return None


def agreement(energy: Mapping[str, PhaseEnergy]) -> dict[str, Agreement]:
    """Per metered GPU with both methods: the counter's and the integrated polled joules over the
    same phase, and how far apart they are (relative to the counter). `energy` maps domain names
    to PhaseEnergy. `short` says the phase is shorter than ten power-averaging windows, where the
    polled value is expected to disagree."""
    out: dict[str, Agreement] = {}
    for name, polled in energy.items():
        if polled.domain.kind != CROSS_CHECK:
            continue
        counter = energy.get(name.removesuffix("-polled"))
        if counter is None:
            continue
        diff = polled.gross_j - counter.gross_j
        out[counter.domain.name] = {
            "counter_j": counter.gross_j,
            "polled_j": polled.gross_j,
            "diff_j": diff,
            "diff_rel": diff / counter.gross_j if counter.gross_j > 0 else None,
            "short": polled.short or counter.short,
        }
    return out


def open_nvml(
    pynvml_module: NvmlLibrary | None = None,
    visible: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    used_uuids: list[str] | None = None,
) -> NvmlMeter:
    """Open the NVML meter, or raise MeterUnavailable with the one-line reason (never other errors)."""
    try:
        return NvmlMeter(pynvml_module, visible=visible, clock=clock, used_uuids=used_uuids)
    except MeterUnavailable:
        raise
    except Exception as exc:
        raise MeterUnavailable(f"NVML: {describe_nvml_error(exc)}") from None
