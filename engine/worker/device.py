"""Where a run trains: the device setting resolved, the one place that synchronises it, and what
the manifest records about it.

    device = "auto" | "cpu" | "cuda" | "cuda:N"

`auto` is the first visible GPU when torch sees one (torch.cuda.is_available()), else the CPU.
CUDA work is asynchronous: a kernel launched in one phase may still run when the host reads the
meters at the phase's end. `Device.sync()` waits for every queued kernel, so each phase's energy
covers exactly its own work; the worker calls it at every phase edge, epoch point and test timer.
On the CPU it does nothing (CPU ops have finished when they return).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: reading a spec need not load it
    import numpy.typing as npt
    import torch

    from engine.worker.data import Split

from engine.core.errors import JouleLabError
from engine.core.spec import DEVICE_PATTERN


class DeviceError(JouleLabError):
    """A device setting this machine cannot honour; the message is one line."""


@dataclass
class Device:
    """The resolved device. `torch_device` is what tensors and the network are moved to."""

    requested: str
    name: str  # "cpu" or "cuda:N"
    info: dict[str, Any] = field(default_factory=dict)  # the manifest's description (see cuda_info)

    @property
    def is_cuda(self) -> bool:
        return self.name.startswith("cuda")

    @property
    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.name)

    @property
    def index(self) -> int | None:
        return int(self.name.split(":")[1]) if self.is_cuda else None

    def sync(self) -> None:
        """Wait until every kernel queued on the device has finished (a no-op on the CPU)."""
        if self.is_cuda:
            import torch

            torch.cuda.synchronize(self.name)

    def tensor(self, array: npt.ArrayLike) -> torch.Tensor:
        """A host array as a tensor on this device, copied once (not per batch)."""
        import torch

        return torch.as_tensor(array).to(self.name)

    def place_split(self, split: Split) -> Split:
        """A data split with its arrays as tensors on this device (one copy, for the whole run)."""
        import dataclasses

        t = self.tensor
        # Split declares NumPy arrays; here they become tensors, which engine.worker.train takes as well (its Array)
        return dataclasses.replace(
            split,
            x_train=t(split.x_train),  # type: ignore[arg-type]
            y_train=t(split.y_train),  # type: ignore[arg-type]
            x_test=t(split.x_test),  # type: ignore[arg-type]
            y_test=t(split.y_test),  # type: ignore[arg-type]
        )

    def manifest(self) -> dict[str, Any]:
        return {"requested": self.requested, "resolved": self.name, **self.info}


def resolve_device(requested: str) -> Device:
    """The device for `requested`, or DeviceError saying in one line why it cannot be used."""
    import torch

    if not DEVICE_PATTERN.match(requested):
        raise DeviceError(f"device: {requested!r} is not one of auto, cpu, cuda, cuda:N")
    available = torch.cuda.is_available()
    count = torch.cuda.device_count() if available else 0
    if requested == "cpu" or (requested == "auto" and not available):
        why = "asked for" if requested == "cpu" else "auto: torch sees no CUDA GPU"
        return Device(requested, "cpu", {"type": "cpu", "why": why, "torch_cuda_build": torch.version.cuda})
    if not available:
        build = (
            f"this torch ({torch.__version__}) is a CPU build"
            if torch.version.cuda is None
            else "torch sees no CUDA GPU (driver, CUDA_VISIBLE_DEVICES?)"
        )
        raise DeviceError(f'device: {requested!r} needs a CUDA GPU, but {build}; use device = "auto" or "cpu"')
    index = 0 if requested in ("auto", "cuda") else int(requested.split(":")[1])
    if index >= count:
        raise DeviceError(
            f"device: {requested!r}: torch sees {count} CUDA GPU(s) (cuda:0"
            f"{f'..cuda:{count - 1}' if count > 1 else ''})"
        )
    name = f"cuda:{index}"
    return Device(requested, name, cuda_info(index))


def cuda_info(index: int) -> dict[str, Any]:
    """What torch knows of CUDA GPU `index`: name, UUID, versions, memory, capability (free-form:
    run.json keeps the device as described)."""
    import torch

    props = torch.cuda.get_device_properties(index)
    uuid = getattr(props, "uuid", None)
    info = {
        "type": "cuda",
        "index": index,
        "name": props.name,
        # torch's UUID has no "GPU-" prefix; NVML's has
        "uuid": f"GPU-{uuid}" if uuid is not None else None,
        "capability": f"{props.major}.{props.minor}",
        "memory_gb": round(props.total_memory / 1e9, 2),
        "cuda": torch.version.cuda,
        "cudnn": _cudnn_version(),
        "bf16": bool(torch.cuda.is_bf16_supported()),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    return info


def _cudnn_version() -> int | None:
    """cuDNN's version, or None where this torch has no cuDNN."""
    import torch

    # torch leaves both functions unannotated; these are their documented types
    available: Callable[[], bool] = torch.backends.cudnn.is_available
    version: Callable[[], int | None] = torch.backends.cudnn.version
    return version() if available() else None
