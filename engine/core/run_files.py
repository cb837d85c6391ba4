"""The run log's files and how they are written: what the worker writes and every reader opens.

<logs>/<run-id>/run.json       spec + environment manifest (written at start, updated atomically)
<logs>/<run-id>/events.jsonl   every event, append-only, flushed per line
<logs>/<run-id>/summary.json   the result, written atomically at the end (never half-written)
<logs>/<run-id>/stderr.log     the worker's stderr (library warnings, tracebacks)
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from engine.core.errors import JouleLabError
from engine.core.settings import env_var

LOGS_ENV = env_var("logs")
RUN_JSON = "run.json"
EVENTS = "events.jsonl"
SUMMARY = "summary.json"
STDERR = "stderr.log"
NODES = "nodes"  # a multi-node run's node records: <run>/nodes/<node_rank>.json

# The one definition of a run id (the spec and the store both use it): ASCII only, so an id is
# the same path everywhere and cannot escape logs/.
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*\Z", re.ASCII)


# mkstemp creates files 0600; logs and exports should get the user's usual permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


class StoreError(JouleLabError):
    """A run that does not exist, or a logs directory that cannot be used. One line, with the fix."""


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def check_writable(logs_dir: Path) -> None:
    """Refuse early, with the path and the reason, if the logs directory cannot take a run."""
    blocker = next((p for p in (logs_dir, *logs_dir.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        where = "" if blocker == logs_dir else f": {blocker} is"
        raise StoreError(
            f"logs directory {logs_dir} is not writable{where or ': it is'} a file, not a directory; "
            f"point --logs / {LOGS_ENV} at a directory"
        )
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=logs_dir, prefix=".probe-", delete=True) as f:
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise StoreError(
            f"logs directory {logs_dir} is not writable ({exc.strerror or exc}); "
            f"free space or fix permissions, or point --logs / {LOGS_ENV} elsewhere"
        ) from None
