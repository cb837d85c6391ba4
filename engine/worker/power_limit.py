"""The GPU's power limit as a mechanism: set through NVML for one run, put back afterwards, and a
record of every limit set and not yet put back.

    held = HeldLimit.hold(uuid, watts=None, fraction=0.8, run_id=...)  # before the idle baseline
    ...                                                                # the run's phases
    held.restore()                                                     # after success, failure or cancel

NVML speaks milliwatts: nvmlDeviceGetPowerManagementLimit (the limit now), ...DefaultLimit (the
board's default), ...LimitConstraints ([min, max] the board allows) and
nvmlDeviceSetPowerManagementLimit, which needs root on most machines (NVML_ERROR_NO_PERMISSION
otherwise) and power management on the board (NVML_ERROR_NOT_SUPPORTED otherwise). A limit
outside the range, without permission or not supported is refused in one line (exit 2), before
any metered phase and with the GPU's limit as it was.

Before it sets a limit, a run writes a record (the GPU's NVML index and UUID, the limit it sets,
the previous one, its run id and pid) to <state root>/power-limits/<uuid>.json, and removes it
once the previous limit is back. A run killed with SIGKILL cannot restore: its record stays, the
next run and `joulelab meters` report it in one line, and `joulelab meters --restore-power-limit`
puts each previous limit back (`restore_leftovers`). A record whose run is still alive on this host
(its pid, started when the record says) is a limit held, not left over: it is reported as held, a
second power-limit run on that GPU is refused until it ends, and the restore leaves it alone.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TypedDict

import msgspec
import psutil

from engine.core.errors import JouleLabError
from engine.core.run_files import atomic_write_json
from engine.core.settings import env_var, settings
from engine.core.timestamps import now_stamp
from engine.worker.meters.base import MeterUnavailable
from engine.worker.meters.nvml import NvmlLibrary, describe_nvml_error, import_pynvml, init_nvml, nvml_text

RESTORE_COMMAND = "joulelab meters --restore-power-limit"
_NOT_SUPPORTED = 3  # NVML return codes (nvml.h); read from the module when it has them
_NO_PERMISSION = 4


class PowerLimitError(JouleLabError):
    """A power limit that cannot be set (or put back) here; the message is one line (exit 2)."""


class PowerLimitRecord(TypedDict):
    """What run.json and summary.json keep of the limit a run set."""

    nvml_index: int
    uuid: str
    name: str
    asked: str  # as the spec asked it: "250 W" or "0.8 x default"
    asked_w: float
    set_w: float | None  # read back after setting it (None: the GPU did not say)
    previous_w: float
    default_w: float
    range_w: list[float]  # [min, max] the GPU allows
    restored: bool | None  # None until the run ends; then whether the previous limit is back
    restored_w: float | None  # read back after restoring
    restore_error: str | None


class Leftover(msgspec.Struct, kw_only=True):
    """The state file of a limit set and not yet put back (one per GPU, by UUID)."""

    nvml_index: int
    uuid: str
    name: str
    limit_w: float  # the limit the run set
    previous_w: float  # the limit to put back
    run_id: str
    pid: int
    set_at: str
    # where and when the setting process started, to tell a run still holding the limit from one
    # killed before it could put it back (a pid alone may be reused); empty in older records
    host: str = ""
    pid_started: float | None = None

    def held_by_a_live_run(self) -> bool:
        """Whether the run that set the limit is still running on this host (then it is not left over)."""
        if self.host != socket.gethostname() or self.pid_started is None:
            return False
        try:
            started: float = psutil.Process(self.pid).create_time()
            return abs(started - self.pid_started) < 1.0
        except psutil.Error:  # gone, or not ours to see
            return False


def records_dir() -> Path:
    return settings().state_root() / "power-limits"


def _record_path(uuid: str) -> Path:
    return records_dir() / f"{uuid}.json"


def read_leftovers() -> tuple[list[Leftover], list[str]]:
    """Every record of a limit set and not put back, and one line for each record file that
    cannot be read (never an exception)."""
    folder = records_dir()
    found: list[Leftover] = []
    problems: list[str] = []
    try:
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    except OSError as exc:
        return [], [f"power-limit records in {folder} cannot be listed ({exc.strerror}); check that folder"]
    for path in paths:
        try:
            found.append(msgspec.json.decode(path.read_bytes(), type=Leftover))
        except OSError as exc:
            problems.append(f"power-limit record {path} cannot be read ({exc.strerror}); check its permissions")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            problems.append(
                f"power-limit record {path} is damaged ({exc}); check the GPU's limit with "
                "`nvidia-smi -q -d POWER`, set it back if needed, and delete the file"
            )
    return found, problems


def leftover_line(record: Leftover) -> str:
    """One line: which GPU, the limit left on it, the limit to put back, who set it, how to restore
    (or, while the run that set it is still running, that it holds it and will put it back)."""
    if record.held_by_a_live_run():
        return (
            f"GPU {record.nvml_index} ({record.name}, {record.uuid}) is at the power limit of {record.limit_w:g} W "
            f"that run {record.run_id} (pid {record.pid}, still running) set at {record.set_at}; it puts "
            f"{record.previous_w:g} W back when it ends"
        )
    return (
        f"GPU {record.nvml_index} ({record.name}, {record.uuid}) may still be at the power limit of "
        f"{record.limit_w:g} W that run {record.run_id} (pid {record.pid}) set at {record.set_at} and did not "
        f"put back to {record.previous_w:g} W; restore it with `{RESTORE_COMMAND}`"
    )


def leftover_lines() -> list[str]:
    """What `joulelab meters` and a GPU run report: a line per limit left set, and per damaged record."""
    found, problems = read_leftovers()
    return [leftover_line(r) for r in found] + problems


def _watts(mw: int) -> float:
    return int(mw) / 1000.0


def _code(nvml: NvmlLibrary, name: str, default: int) -> int:
    return getattr(nvml, name, default)


def _open_nvml(pynvml_module: NvmlLibrary | None) -> NvmlLibrary:
    """NVML, initialised (the caller shuts it down), or PowerLimitError with the reason."""
    try:
        nvml = pynvml_module if pynvml_module is not None else import_pynvml()
        init_nvml(nvml)
    except MeterUnavailable as exc:
        raise PowerLimitError(f"power-limit: {exc}") from None
    return nvml


def _find(nvml: NvmlLibrary, uuid: str) -> tuple[int, object, str]:
    """NVML's index, handle and name of the GPU with this UUID."""
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        if nvml_text(nvml.nvmlDeviceGetUUID(handle)).upper() == uuid.upper():
            return index, handle, nvml_text(nvml.nvmlDeviceGetName(handle))
    raise PowerLimitError(f"power-limit: NVML finds no GPU with the run's UUID {uuid}")


class HeldLimit:
    """A power limit set on one GPU for this run; `restore()` puts the previous one back."""

    def __init__(self, nvml: NvmlLibrary, handle: object, record: PowerLimitRecord) -> None:
        self._nvml = nvml
        self._handle = handle
        self.record = record

    @classmethod
    def hold(
        cls,
        uuid: str,
        *,
        watts: float | None,
        fraction: float | None,
        run_id: str,
        pynvml_module: NvmlLibrary | None = None,
    ) -> HeldLimit:
        """Set the GPU's limit to `watts`, or `fraction` of its default, after writing the record
        that says how to put it back. PowerLimitError (one line) leaves the limit as it was."""
        nvml = _open_nvml(pynvml_module)
        try:
            return cls._hold(nvml, uuid, watts, fraction, run_id)
        except BaseException:
            _shutdown(nvml)
            raise

    @classmethod
    def _hold(cls, nvml: NvmlLibrary, uuid: str, watts: float | None, fraction: float | None, run_id: str) -> HeldLimit:
        not_supported = _code(nvml, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED)
        no_permission = _code(nvml, "NVML_ERROR_NO_PERMISSION", _NO_PERMISSION)
        index, handle, name = _find(nvml, uuid)
        gpu = f"GPU {index} ({name})"
        try:
            previous = int(nvml.nvmlDeviceGetPowerManagementLimit(handle))
            default = int(nvml.nvmlDeviceGetPowerManagementDefaultLimit(handle))
            low, high = (int(v) for v in nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle))
        except nvml.NVMLError as exc:
            why = "has no power limit NVML can read" if getattr(exc, "value", None) == not_supported else "says"
            raise PowerLimitError(f"power-limit: {gpu} {why} ({describe_nvml_error(exc)})") from None
        if watts is not None:
            target, asked = round(watts * 1000), f"{watts:g} W"
        else:
            assert fraction is not None
            target, asked = round(fraction * default), f"{fraction:g} x default"
        if not low <= target <= high:
            raise PowerLimitError(
                f"power-limit: {asked} ({target / 1000:g} W) is outside the range {gpu} allows, "
                f"{_watts(low):g}-{_watts(high):g} W (default {_watts(default):g} W); choose a limit inside it"
            )
        path = _record_path(uuid)
        leftover = Leftover(
            nvml_index=index,
            uuid=uuid,
            name=name,
            limit_w=target / 1000,
            previous_w=_watts(previous),
            run_id=run_id,
            pid=os.getpid(),
            set_at=now_stamp(),
            host=socket.gethostname(),
            pid_started=psutil.Process().create_time(),
        )
        try:
            atomic_write_json(path, msgspec.to_builtins(leftover))
        except OSError as exc:
            raise PowerLimitError(
                f"power-limit: cannot write the record of the limit to restore, {path} ({exc.strerror}); "
                f"nothing was set: check that folder, or set {env_var('state')} elsewhere"
            ) from None
        try:
            nvml.nvmlDeviceSetPowerManagementLimit(handle, target)
        except nvml.NVMLError as exc:
            _remove(path)
            code = getattr(exc, "value", None)
            if code == no_permission:
                why = "no permission to set its power limit (it needs root, or a GPU administrator)"
            elif code == not_supported:
                why = "does not support setting its power limit"
            else:
                why = "did not take the limit"
            raise PowerLimitError(
                f"power-limit: {gpu}: {why} ({describe_nvml_error(exc)}); the run was not started"
            ) from None
        except BaseException:
            _remove(path)  # e.g. the binding refused the value: nothing was set
            raise
        set_w = _read_limit_w(nvml, handle)
        record: PowerLimitRecord = {
            "nvml_index": index,
            "uuid": uuid,
            "name": name,
            "asked": asked,
            "asked_w": target / 1000,
            "set_w": set_w,
            "previous_w": _watts(previous),
            "default_w": _watts(default),
            "range_w": [_watts(low), _watts(high)],
            "restored": None,
            "restored_w": None,
            "restore_error": None,
        }
        return cls(nvml, handle, record)

    def restore(self) -> None:
        """Put the previous limit back and read it back; the record file goes once it is back.
        Never raises: a failure is kept in the record (restored false, restore_error) and the
        record file stays for `joulelab meters --restore-power-limit`."""
        record, nvml = self.record, self._nvml
        if record["restored"] is not None:
            return
        try:
            nvml.nvmlDeviceSetPowerManagementLimit(self._handle, round(record["previous_w"] * 1000))
            record["restored_w"] = _read_limit_w(nvml, self._handle)
            record["restored"] = True
            _remove(_record_path(record["uuid"]))
        except Exception as exc:
            record["restored"] = False
            record["restore_error"] = (
                f"power-limit: GPU {record['nvml_index']} ({record['name']}) could not be put back to "
                f"{record['previous_w']:g} W ({describe_nvml_error(exc)}); restore it with `{RESTORE_COMMAND}`"
            )
        finally:
            _shutdown(nvml)


def restore_leftovers(pynvml_module: NvmlLibrary | None = None) -> tuple[list[str], bool]:
    """Put back every limit a run left set: (a line per record, whether all were restored)."""
    found, problems = read_leftovers()
    held = [r for r in found if r.held_by_a_live_run()]
    found = [r for r in found if r not in held]
    lines = [leftover_line(r) + "; not touched" for r in held]
    if not found:
        return lines + (problems or ["no GPU power limit was left set by a JouleLab run"]), not problems
    nvml = _open_nvml(pynvml_module)
    ok = True
    try:
        for leftover in found:
            try:
                index, handle, name = _find(nvml, leftover.uuid)
                was = _read_limit_w(nvml, handle)
                nvml.nvmlDeviceSetPowerManagementLimit(handle, round(leftover.previous_w * 1000))
                now = _read_limit_w(nvml, handle)
            except (PowerLimitError, nvml.NVMLError) as exc:
                ok = False
                why = str(exc) if isinstance(exc, PowerLimitError) else describe_nvml_error(exc)
                lines.append(
                    f"GPU {leftover.uuid}: not restored to {leftover.previous_w:g} W ({why}); "
                    f"its record stays in {_record_path(leftover.uuid)}"
                )
                continue
            _remove(_record_path(leftover.uuid))
            lines.append(
                f"GPU {index} ({name}, {leftover.uuid}): power limit {_fmt(was)} -> {_fmt(now)} "
                f"(run {leftover.run_id} had set {leftover.limit_w:g} W)"
            )
    finally:
        _shutdown(nvml)
    return lines + problems, ok and not problems


def _fmt(watts: float | None) -> str:
    return "unknown" if watts is None else f"{watts:g} W"


def _read_limit_w(nvml: NvmlLibrary, handle: object) -> float | None:
    try:
        return _watts(nvml.nvmlDeviceGetPowerManagementLimit(handle))
    except Exception:
        return None


def _remove(path: Path) -> None:
    """The record goes; one that cannot be removed stays and is reported again (never fatal)."""
    try:
        path.unlink()
    except OSError:
        pass


def _shutdown(nvml: NvmlLibrary) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass
