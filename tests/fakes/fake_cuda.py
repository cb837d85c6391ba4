"""A stand-in for a CUDA GPU in a real worker subprocess, for machines without one.

`install(sync_log, uuid)` replaces engine.worker.device.resolve_device with one that returns a Device
which claims to be CUDA (so the worker takes every GPU path: NVML metering of that UUID, the
thermal guard, GPU contention) while its tensors stay on the CPU, and whose `sync()` appends
`<monotonic time> <calling function>` to `sync_log`, so a test can check that the worker
synchronised at every phase edge, epoch point and test timer, in order with its events.
"""

from __future__ import annotations

import sys
import time

import engine.worker.device
from engine.worker.device import Device


class RecordingDevice(Device):
    def __init__(self, sync_log: str, uuid: str | None, cuda: bool) -> None:
        info = {"type": "cuda", "name": "Fake GPU", "uuid": uuid} if cuda else {"type": "cpu"}
        super().__init__("cuda" if cuda else "cpu", "cpu", info)
        self._log = sync_log
        self._cuda = cuda

    @property
    def is_cuda(self) -> bool:
        return self._cuda

    def sync(self) -> None:
        caller = sys._getframe(1).f_code.co_name
        with open(self._log, "a") as f:
            f.write(f"{time.monotonic()!r} {caller}\n")


def install(sync_log: str, uuid: str | None = None, cuda: bool = False) -> None:
    engine.worker.device.resolve_device = lambda requested: RecordingDevice(sync_log, uuid, cuda)
