"""A fake `pynvml` module: NVML's real function names, units and error codes, with no GPU.

Units as NVML returns them: nvmlDeviceGetTotalEnergyConsumption in millijoules (an int, Volta and
newer), nvmlDeviceGetPowerUsage and the power-limit calls (nvmlDeviceGetPowerManagementLimit,
...DefaultLimit, ...LimitConstraints as [min, max], nvmlDeviceSetPowerManagementLimit) in milliwatts,
nvmlDeviceGetTemperature in degrees C, nvmlDeviceGetClockInfo in MHz, clock-event (throttle)
reasons as nvidia-ml-py's bit mask, nvmlDeviceGetComputeRunningProcesses as objects with `pid` and
`usedGpuMemory` (bytes). Errors are
`NVMLError(code)`, which, as in nvidia-ml-py, constructs the matching subclass
(NVMLError_NotSupported, ...) and carries the code in `.value`. Codes are nvml.h's (and
nvidia-ml-py's): checked against the installed module by the tests.

A power limit is the GPU's state, not the process's: with `FakeNvml.limits_file` set, the limits
are read from that JSON file ({uuid: mW}) when the module is made and written at every set, so a
worker subprocess killed with its limit set leaves the GPU capped for the next process.
"""

from __future__ import annotations

import json
import os
import types
from dataclasses import dataclass, field

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2

_STRINGS = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}

# nvidia-ml-py's subclass names (NVMLError_<name>)
_CLASS_NAMES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "InvalidArgument",
    NVML_ERROR_NOT_SUPPORTED: "NotSupported",
    NVML_ERROR_NO_PERMISSION: "NoPermission",
    NVML_ERROR_NOT_FOUND: "NotFound",
    NVML_ERROR_DRIVER_NOT_LOADED: "DriverNotLoaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "LibraryNotFound",
    NVML_ERROR_FUNCTION_NOT_FOUND: "FunctionNotFound",
    NVML_ERROR_GPU_IS_LOST: "GpuIsLost",
    NVML_ERROR_UNKNOWN: "Unknown",
}

CODES = {name: value for name, value in globals().items() if name.startswith("NVML_")}

# Clock-event ("throttle") reason bits, as nvidia-ml-py names them (nvml.h's
# nvmlClocksEventReason*; the older nvmlClocksThrottleReason* names have the same values).
REASONS = {
    "nvmlClocksEventReasonGpuIdle": 0x1,
    "nvmlClocksEventReasonApplicationsClocksSetting": 0x2,
    "nvmlClocksEventReasonSwPowerCap": 0x4,
    "nvmlClocksEventReasonHwSlowdown": 0x8,
    "nvmlClocksEventReasonSyncBoost": 0x10,
    "nvmlClocksEventReasonSwThermalSlowdown": 0x20,
    "nvmlClocksEventReasonHwThermalSlowdown": 0x40,
    "nvmlClocksEventReasonHwPowerBrakeSlowdown": 0x80,
    "nvmlClocksEventReasonNone": 0x0,
}


@dataclass
class FakeProcess:
    """One entry of nvmlDeviceGetComputeRunningProcesses (c_nvmlProcessInfo_t's fields)."""

    pid: int
    usedGpuMemory: int | None = 1 << 30  # bytes; None where the driver cannot say (WDDM)
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


@dataclass
class FakeGpu:
    name: str = "NVIDIA A100-SXM4-40GB"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    energy_mj: int | None = 1_000_000  # None: no energy counter (pre-Volta)
    power_mw: int | None = 60_000  # None: no power reading either
    power_limit_mw: int | None = 400_000  # None: no power management (NOT_SUPPORTED)
    default_power_limit_mw: int = 400_000
    power_limit_range_mw: tuple[int, int] = (100_000, 400_000)  # nvmlDeviceGetPowerManagementLimitConstraints
    set_limit_error: int | None = None  # nvmlDeviceSetPowerManagementLimit raises NVMLError(this)
    temperature_c: int | None = 35
    sm_clock_mhz: int | None = 1410
    max_sm_clock_mhz: int | None = 1410
    mem_clock_mhz: int | None = 1215
    clocks_event_reasons: int | None = 0x1  # GpuIdle
    processes: list[FakeProcess] = field(default_factory=list)
    old_driver: bool = False  # before 535: no nvmlDeviceGetCurrentClocksEventReasons symbol
    fail_with: int | None = None  # every call on this GPU raises NVMLError(fail_with)


@dataclass
class FakeNvml:
    """State behind the fake module; tests change it between reads."""

    gpus: list[FakeGpu] = field(default_factory=lambda: [FakeGpu()])
    init_error: int | None = None
    driver_version: str = "550.54.15"
    nvml_version: str = "12.550.54.15"
    initialized: int = 0
    calls: list[str] = field(default_factory=list)
    limits_file: str | None = None  # where the GPUs' power limits outlive the process (see above)
    limit_sets: list[tuple[int, int]] = field(default_factory=list)  # (handle, mW) per successful set


def make_fake_pynvml(state: FakeNvml | None = None) -> types.ModuleType:
    """A module object that behaves like `import pynvml` on a machine described by `state`."""
    state = state or FakeNvml()
    if state.limits_file is not None:
        load_limits(state)
    mod = types.ModuleType("pynvml")
    mod.__dict__.update(CODES)
    mod.__dict__.update(REASONS)
    mod.state = state

    class NVMLError(Exception):
        _valClassMapping: dict[int, type] = {}

        def __new__(cls, value):
            if cls is NVMLError:
                cls = NVMLError._valClassMapping.get(value, cls)
            obj = Exception.__new__(cls)
            obj.value = value
            return obj

        def __init__(self, value):
            super().__init__()

        def __str__(self):
            return _STRINGS.get(self.value, f"NVML Error with code {self.value}")

        def __eq__(self, other):
            return isinstance(other, NVMLError) and self.value == other.value

        __hash__ = Exception.__hash__

    mod.NVMLError = NVMLError
    for code, suffix in _CLASS_NAMES.items():
        sub = type("NVMLError_" + suffix, (NVMLError,), {})
        NVMLError._valClassMapping[code] = sub
        setattr(mod, sub.__name__, sub)

    def need_init():
        if state.initialized <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def gpu(handle) -> FakeGpu:
        need_init()
        g = state.gpus[handle]
        if g.fail_with is not None:
            raise NVMLError(g.fail_with)
        return g

    def nvmlInit():
        state.calls.append("nvmlInit")
        if state.init_error is not None:
            raise NVMLError(state.init_error)
        state.initialized += 1

    def nvmlShutdown():
        state.calls.append("nvmlShutdown")
        need_init()
        state.initialized -= 1

    def nvmlSystemGetDriverVersion():
        need_init()
        return state.driver_version

    def nvmlSystemGetNVMLVersion():
        need_init()
        return state.nvml_version

    def nvmlDeviceGetCount():
        need_init()
        return len(state.gpus)

    def nvmlDeviceGetHandleByIndex(index):
        need_init()
        if not 0 <= index < len(state.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return index

    def nvmlDeviceGetHandleByUUID(uuid):
        need_init()
        for i, g in enumerate(state.gpus):
            if g.uuid == uuid:
                return i
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetName(handle):
        return gpu(handle).name

    def nvmlDeviceGetUUID(handle):
        return gpu(handle).uuid

    def nvmlDeviceGetTotalEnergyConsumption(handle):
        g = gpu(handle)
        if g.energy_mj is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(g.energy_mj)

    def nvmlDeviceGetPowerUsage(handle):
        g = gpu(handle)
        if g.power_mw is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(g.power_mw)

    def nvmlDeviceGetPowerManagementLimit(handle):
        g = gpu(handle)
        if g.power_limit_mw is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(g.power_limit_mw)

    def nvmlDeviceGetPowerManagementDefaultLimit(handle):
        g = gpu(handle)
        if g.power_limit_mw is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(g.default_power_limit_mw)

    def nvmlDeviceGetPowerManagementLimitConstraints(handle):
        g = gpu(handle)
        if g.power_limit_mw is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return [int(g.power_limit_range_mw[0]), int(g.power_limit_range_mw[1])]

    def nvmlDeviceSetPowerManagementLimit(handle, limit):
        g = gpu(handle)
        if g.power_limit_mw is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if g.set_limit_error is not None:  # NO_PERMISSION without root, as on a real machine
            raise NVMLError(g.set_limit_error)
        if not isinstance(limit, int):  # nvidia-ml-py passes it as c_uint
            raise TypeError(f"limit must be an int of milliwatts, not {limit!r}")
        low, high = g.power_limit_range_mw
        if not low <= limit <= high:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        g.power_limit_mw = limit
        state.limit_sets.append((handle, limit))
        if state.limits_file is not None:
            save_limits(state)

    def nvmlDeviceGetTemperature(handle, sensor):
        g = gpu(handle)
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if g.temperature_c is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(g.temperature_c)

    def _clock(g: FakeGpu, clock_type: int, maximum: bool) -> int:
        values = {
            NVML_CLOCK_SM: g.max_sm_clock_mhz if maximum else g.sm_clock_mhz,
            NVML_CLOCK_GRAPHICS: g.max_sm_clock_mhz if maximum else g.sm_clock_mhz,
            NVML_CLOCK_MEM: g.mem_clock_mhz,
        }
        if clock_type not in values:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if values[clock_type] is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(values[clock_type])

    def nvmlDeviceGetClockInfo(handle, type):
        return _clock(gpu(handle), type, False)

    def nvmlDeviceGetMaxClockInfo(handle, type):
        return _clock(gpu(handle), type, True)

    def nvmlDeviceGetCurrentClocksEventReasons(handle):
        g = gpu(handle)
        if g.old_driver:
            # nvidia-ml-py raises this when the library lacks the symbol
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        if g.clocks_event_reasons is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(g.clocks_event_reasons)

    def nvmlDeviceGetCurrentClocksThrottleReasons(handle):
        g = gpu(handle)
        if g.clocks_event_reasons is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(g.clocks_event_reasons)

    def nvmlDeviceGetComputeRunningProcesses(handle):
        return [types.SimpleNamespace(**vars(p)) for p in gpu(handle).processes]

    for fn in (
        nvmlDeviceGetTemperature,
        nvmlDeviceGetClockInfo,
        nvmlDeviceGetMaxClockInfo,
        nvmlDeviceGetCurrentClocksEventReasons,
        nvmlDeviceGetCurrentClocksThrottleReasons,
        nvmlDeviceGetComputeRunningProcesses,
    ):
        setattr(mod, fn.__name__, fn)
    for fn in (
        nvmlInit,
        nvmlShutdown,
        nvmlSystemGetDriverVersion,
        nvmlSystemGetNVMLVersion,
        nvmlDeviceGetCount,
        nvmlDeviceGetHandleByIndex,
        nvmlDeviceGetHandleByUUID,
        nvmlDeviceGetName,
        nvmlDeviceGetUUID,
        nvmlDeviceGetTotalEnergyConsumption,
        nvmlDeviceGetPowerUsage,
        nvmlDeviceGetPowerManagementLimit,
        nvmlDeviceGetPowerManagementDefaultLimit,
        nvmlDeviceGetPowerManagementLimitConstraints,
        nvmlDeviceSetPowerManagementLimit,
    ):
        setattr(mod, fn.__name__, fn)
    return mod


def load_limits(state: FakeNvml) -> None:
    """The GPUs' power limits as the limits file holds them (a file not yet written: as they are)."""
    assert state.limits_file is not None
    if os.path.exists(state.limits_file):
        with open(state.limits_file) as f:
            limits = json.load(f)
        for g in state.gpus:
            if g.uuid in limits:
                g.power_limit_mw = limits[g.uuid]


def save_limits(state: FakeNvml) -> None:
    assert state.limits_file is not None
    tmp = state.limits_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({g.uuid: g.power_limit_mw for g in state.gpus}, f)
    os.replace(tmp, state.limits_file)
