"""The worker's run.json: a typed RunManifest (engine.core.records), what it records of the
environment and of the device, and how it is written.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from engine import __version__
from engine.core.events import SCHEMA_VERSION
from engine.core.records import SCHEMA_KEY, MeterDomain, MissingMeter, RunManifest, to_json_object
from engine.core.run_files import RUN_JSON, atomic_write_json

if TYPE_CHECKING:
    from engine.worker.device import Device
    from engine.worker.meters.nvml import NvmlMeter
    from engine.worker.phase_meter import PhaseMeter


def environment_manifest() -> dict[str, Any]:
    import numpy
    import psutil
    import torch

    from engine.worker.meters.model import cpu_model_name
    from engine.worker.slurm_job import job_manifest

    sockets = _count_sockets()
    return {
        "joulelab": __version__,
        "event_schema": SCHEMA_VERSION,
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # a str subclass that msgspec does not encode
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": cpu_model_name(),
        "sockets": sockets,
        "logical_cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 2),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "slurm": job_manifest(),  # job id, node, requested and granted resources; None outside Slurm
    }


def _count_sockets() -> int | None:
    try:
        ids = {
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("physical id")
        }
        return len(ids) or 1
    except OSError:
        return None


def device_manifest(device: Device, nvml: NvmlMeter | None) -> dict[str, Any]:
    """The resolved device; on CUDA with NVML's view of it (driver, power limit, clocks)."""
    out = device.manifest()
    if nvml is not None:
        details = nvml.manifest()
        gpu = next((g for g in details["gpus"] if g["uuid"].upper() == str(out.get("uuid")).upper()), None)
        if gpu is not None:
            out.update(
                driver=details["driver_version"],
                power_limit_w=gpu["power_limit_w"],
                clocks=gpu["clocks"],
                nvml_domain=gpu["domain"],
                nvml_index=gpu["nvml_index"],
            )
        out["unused_gpus"] = details["unused"]
    elif device.is_cuda:
        out["not_metered"] = "NVML is not available: this GPU's energy is not measured (see missing_meters)"
    return out


def _defaults(kind: type[msgspec.Struct]) -> dict[str, Any]:
    return {
        f.name: f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
        for f in msgspec.structs.fields(kind)
    }


_UNSET = _defaults(RunManifest)


def manifest_json(manifest: RunManifest) -> dict[str, Any]:
    """run.json as JSON: what the run has learnt so far. A field still at its default (the dataset
    before the data is read, the thermal record of a CPU run) is left out, as the worker wrote it
    before the record was typed; the log schema is always written, first."""
    out = to_json_object(manifest)
    return {SCHEMA_KEY: out.pop(SCHEMA_KEY)} | {k: v for k, v in out.items() if getattr(manifest, k) != _UNSET[k]}


def write_manifest(run_path: Path, manifest: RunManifest) -> None:
    atomic_write_json(run_path / RUN_JSON, manifest_json(manifest))


def announce_meters(
    run_path: Path,
    manifest: RunManifest,
    meter: PhaseMeter,
    device: Device,
    *,
    spec: dict[str, Any],
    emit: Callable[..., object],
) -> None:
    """Record the run's meters and device in run.json, then say hello on the event log: the
    worker's runs and the Python API's say the same of them."""
    manifest.meters = [MeterDomain(**d.as_dict()) for d in meter.domains.values()]
    manifest.missing_meters = [MissingMeter(**x.as_dict()) for x in meter.missing]
    manifest.meter_details = [x.manifest() for x in meter.meters]
    manifest.sample_hz = meter.sample_hz
    manifest.device = device_manifest(device, meter.nvml)
    write_manifest(run_path, manifest)
    emit(
        "hello",
        versions=manifest.environment,
        pid=os.getpid(),
        wall_time=time.time(),
        spec=spec,
        meters=[d.as_dict() for d in meter.domains.values()],
        missing=[x.as_dict() for x in meter.missing],
        device=manifest.device,
    )
