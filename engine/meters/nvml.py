"""NVML: NVIDIA GPU energy through nvidia-ml-py (imported as `pynvml`).

Per visible GPU, the best source it has:
- `counter`: nvmlDeviceGetTotalEnergyConsumption, the board's energy in millijoules since the
  driver was loaded (Volta and newer). A 64-bit counter: no wraparound. Exact to the millijoule.
- `polled`: otherwise nvmlDeviceGetPowerUsage (milliwatts) integrated with the trapezoid rule
  over this meter's reads. Its accuracy depends on the read rate, and on Ampere and newer
  (except GA100) the reading is itself a one-second average, so short phases are smoothed.

Which GPUs: those the run can use, from CUDA_VISIBLE_DEVICES as CUDA reads it: unset means all;
empty means none; a comma list of indices or (prefixes of) UUIDs `GPU-...`; CUDA stops at the
first entry it cannot use, and so do we. Indices are NVML's (PCI bus order), which is CUDA's
order when CUDA_DEVICE_ORDER=PCI_BUS_ID; with CUDA's default order and different GPU models
they may differ, and the manifest says so. Domains are named by position among the visible GPUs
(`gpu0`, `gpu1`, ...), which is the index torch uses.

Both sources measure the whole GPU: every process on it, not only this run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from engine.meters.base import Domain, Meter, MeterError, MeterUnavailable

# NVML return codes (nvml.h); read from the module when it has them.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12


def _code(nvml: Any, name: str, default: int) -> int:
    return getattr(nvml, name, default)


def _text(value: Any) -> str:
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
                notes.append(f"CUDA_VISIBLE_DEVICES entry {tok!r}: no GPU {i} (found {count}); "
                             "CUDA ignores it and every later entry")
                break
        elif tok.upper().startswith("GPU-"):
            matches = [j for j, u in enumerate(uuids) if u.upper().startswith(tok.upper())]
            if len(matches) != 1:
                why = "matches no GPU" if not matches else "matches several GPUs"
                notes.append(f"CUDA_VISIBLE_DEVICES entry {tok!r} {why}; CUDA ignores it and every later entry")
                break
            i = matches[0]
        elif tok.upper().startswith("MIG-"):
            notes.append(f"CUDA_VISIBLE_DEVICES entry {tok!r} is a MIG instance: NVML energy is per "
                         "physical GPU, so MIG instances are not metered")
            break
        else:
            notes.append(f"CUDA_VISIBLE_DEVICES entry {tok!r} is not an index or GPU UUID; "
                         "CUDA ignores it and every later entry")
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
    handle: Any
    name: str
    uuid: str
    power_limit_w: float | None
    counter: bool
    last_mj: int = 0
    total_mj: int = 0
    last_mw: float = 0.0
    last_t: float = 0.0
    energy_j: float = 0.0


class NvmlMeter(Meter):
    """Cumulative joules of every visible NVIDIA GPU since the meter was opened."""

    def __init__(self, pynvml_module: ModuleType | None = None, visible: str | None = None,
                 clock: Callable[[], float] = time.monotonic, *, use_env: bool = True) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        nvml = pynvml_module if pynvml_module is not None else _import_pynvml()
        self._nvml = nvml
        if visible is None and use_env:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.visible_spec = visible
        _init(nvml)
        try:
            self._open(visible)
        except MeterUnavailable:
            self._shutdown()
            raise
        except Exception as exc:  # any NVML or binding failure while enumerating: not fatal
            self._shutdown()
            raise MeterUnavailable(f"NVML: {_describe(exc)}") from None

    def _open(self, visible: str | None) -> None:
        nvml = self._nvml
        self.driver_version = _optional(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
        self.nvml_version = _optional(lambda: _text(nvml.nvmlSystemGetNVMLVersion()))
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in handles]
        indices, self.notes = parse_visible(visible, uuids)
        if count == 0:
            raise MeterUnavailable("NVML: no NVIDIA GPU found")
        if not indices:
            why = f"; {self.notes[0]}" if self.notes and visible and visible.strip() else ""
            raise MeterUnavailable(f"NVML: no GPU visible to this run (CUDA_VISIBLE_DEVICES={visible!r}){why}")
        not_supported = _code(nvml, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED)
        self._gpus: list[_Gpu] = []
        self.unmetered: list[dict] = []
        names = []
        for nvml_index in indices:
            h = handles[nvml_index]
            name = _text(nvml.nvmlDeviceGetName(h))
            names.append(name)
            limit = _optional(lambda h=h: nvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0)
            dname = f"gpu{len(self._gpus)}"
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
                    self.unmetered.append({"nvml_index": nvml_index, "name": name, "uuid": uuids[nvml_index],
                                           "why": f"neither energy counter nor power reading: {exc2}"})
                    continue
            if counter:
                domain = Domain(dname, "counter", f"nvml:{dname}:energy-counter", "gpu")
            else:
                domain = Domain(dname, "polled", f"nvml:{dname}:power-integrated", "gpu")
            self._gpus.append(_Gpu(domain, nvml_index, h, name, uuids[nvml_index], limit, counter,
                                   last_mj=last_mj, last_mw=last_mw, last_t=t))
        if not self._gpus:
            raise MeterUnavailable("NVML: no visible GPU reports energy or power "
                                   f"({'; '.join(u['name'] + ': ' + u['why'] for u in self.unmetered)})")
        order = os.environ.get("CUDA_DEVICE_ORDER")
        if len(set(names)) > 1 and order != "PCI_BUS_ID" and visible is not None:
            self.notes.append("CUDA_VISIBLE_DEVICES indices are read in NVML (PCI bus) order; set "
                              "CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA uses the same order for these mixed GPUs")
        self.cuda_device_order = order
        self.domains = tuple(g.domain for g in self._gpus)

    def read(self) -> dict[str, float]:
        nvml = self._nvml
        with self._lock:
            if self._closed:
                raise MeterError("NVML: meter already closed")
            values: list[float] = []
            for g in self._gpus:
                try:
                    if g.counter:
                        values.append(int(nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle)))
                    else:
                        values.append(float(nvml.nvmlDeviceGetPowerUsage(g.handle)))
                except Exception as exc:
                    raise MeterError(f"NVML: {g.domain.name} ({g.name}): {_describe(exc)}") from None
            t = self._clock()
            out = {}
            restarted = []
            for g, v in zip(self._gpus, values, strict=True):
                if g.counter:
                    mj = int(v)
                    if mj < g.last_mj:
                        restarted.append(g)
                    else:
                        g.total_mj += mj - g.last_mj
                    g.last_mj = mj
                    out[g.domain.name] = g.total_mj / 1000.0
                else:
                    dt = max(0.0, t - g.last_t)
                    g.energy_j += (g.last_mw + v) / 2.0 / 1000.0 * dt
                    g.last_mw, g.last_t = v, t
                    out[g.domain.name] = g.energy_j
            if restarted:
                g = restarted[0]
                raise MeterError(f"NVML: {g.domain.name} ({g.name}) energy counter went backwards "
                                 "(driver reloaded?); the energy since the previous read is lost")
            return out

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

    def manifest(self) -> dict:
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
                    "source": g.domain.source,
                    "method": g.domain.method,
                    **({} if g.counter else {"note": "nvmlDeviceGetPowerUsage integrated over reads; "
                                                     "a 1 s average on Ampere and newer (except GA100)"}),
                }
                for g in self._gpus
            ],
            "unmetered": list(self.unmetered),
            "notes": list(self.notes),
        }


def _import_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise MeterUnavailable("NVML: the nvidia-ml-py package is not installed "
                               "(`pip install nvidia-ml-py`)") from None
    return pynvml


def _init(nvml: Any) -> None:
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
            reason = f"nvmlInit failed: {_describe(exc)}"
        raise MeterUnavailable(f"NVML: {reason}") from None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    code = getattr(exc, "value", None)
    return f"{text} (NVML error {code})" if isinstance(code, int) else text


def _optional(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


def open_nvml(pynvml_module: ModuleType | None = None, visible: str | None = None,
              clock: Callable[[], float] = time.monotonic) -> NvmlMeter:
    """Open the NVML meter, or raise MeterUnavailable with the one-line reason (never other errors)."""
    try:
        return NvmlMeter(pynvml_module, visible=visible, clock=clock)
    except MeterUnavailable:
        raise
    except Exception as exc:
        raise MeterUnavailable(f"NVML: {_describe(exc)}") from None
