"""An on-disk cache of parsed dataset arrays, so CSV parsing is paid once, not on every run.

Entries are uncompressed ``.npz`` files under ``<cache root>/prepared/``; the cache root is
the cache setting (engine.core.settings: cache_root). What a loader caches is
the *parsed* data before any windowing, grouping or standardisation (MotionSense: each recording as
float32 samples; ExtraSensory: each user's feature rows). Windows overlap (stride 10 of 128 repeats
every sample 12.8 times), so caching recordings instead of windows keeps an entry ~13x smaller, lets
every window/stride/group choice share one entry, and re-windowing costs milliseconds.

Keys. An entry is keyed by the cache format, the loader's options that change what is parsed, and a
fingerprint of every source file: (absolute path, size, mtime_ns). Why that is enough, and why file
contents are not hashed:

- Any write to a file sets its mtime to the current time in nanoseconds (ext4, xfs, btrfs, apfs,
  tmpfs), so an edited, re-downloaded or re-extracted file gets a new key even when its size is
  unchanged. Tools that restore an old mtime (``cp -p``, ``rsync -a``, ``unzip``) do so together
  with that time's contents, so the key still describes the bytes.
- The blind spot is a same-size rewrite that lands within one mtime tick on a coarse-timestamp
  filesystem (FAT: 2 s) or a deliberate ``touch -d`` back to the old time; neither happens to a
  dataset by accident.
- Hashing contents would read every byte on every run: ~0.09 s for the 50 MB of test data and over
  a second for the full datasets, many times the ~10 ms a cached load takes.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so a crashed or
concurrent run never leaves a half-written entry under a real name. An entry that cannot be read
(truncated, corrupt, or written by another format) is deleted and rebuilt: a cache problem is never
fatal, and neither is an unwritable cache folder (the data is then parsed each time and the run's
info says why).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.settings import settings

FORMAT = 1  # bump when the layout of entries changes
META_KEY = "__meta__"


def prepared_dir(root: Path | None = None) -> Path:
    return (root or settings().cache_root()) / "prepared"


def fingerprint(paths: Iterable[Path]) -> list[list[str | int]]:
    """(absolute path, size, mtime_ns) of each file, in the given order."""
    out: list[list[str | int]] = []
    for path in paths:
        st = os.stat(path)
        out.append([str(Path(path).resolve()), st.st_size, st.st_mtime_ns])
    return out


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class CacheResult:
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]  # what the builder returned with the arrays (row counts, drops, ...)
    status: str  # "hit" | "miss" | "miss (...)" | "disabled"
    path: str | None  # the entry file, when there is one
    seconds: float  # time to load the entry, or to build (parse) and store it

    def info(self) -> dict[str, Any]:
        return {"cache": self.status, "cache_entry": self.path, "load_s": round(self.seconds, 4)}


def load_or_build(
    dataset: str,
    files: list[Path],
    options: dict[str, Any],
    build: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]],
    *,
    enabled: bool = True,
    root: Path | None = None,
) -> CacheResult:
    """Return the arrays `build()` would return for these files and options, from cache if valid.

    `files` are the source files the arrays come from (a zip counts as one file); `options` are the
    loader's settings that change the parsed arrays (JSON-able). `build` returns (arrays, meta):
    arrays by name, and a JSON-able dict of facts about them, both stored in the entry.
    """
    started = time.perf_counter()
    if not enabled:
        arrays, meta = build()
        return CacheResult(arrays, meta, "disabled", None, time.perf_counter() - started)

    prints = fingerprint(files)  # before parsing: a file changed mid-parse misses next time
    selection = _digest({"dataset": dataset, "files": [p[0] for p in prints], "options": options})
    key = {"format": FORMAT, "dataset": dataset, "options": options, "files": prints}
    folder = prepared_dir(root)
    stem = f"{dataset}-{selection[:12]}"
    path = folder / f"{stem}-{_digest(key)[:16]}.npz"

    status = "miss"
    if path.exists():
        loaded = _read_entry(path, key)
        if loaded is not None:
            arrays, meta = loaded
            return CacheResult(arrays, meta, "hit", str(path), time.perf_counter() - started)
        status = "miss (unreadable entry discarded)"
        _unlink(path)

    arrays, meta = build()
    try:
        _write_entry(folder, path, key, arrays, meta)
        for stale in folder.glob(f"{stem}-*.npz"):  # older versions of the same files
            if stale != path:
                _unlink(stale)
    except OSError as exc:
        status = f"miss (not stored: {exc.strerror or exc} at {folder})"
        return CacheResult(arrays, meta, status, None, time.perf_counter() - started)
    return CacheResult(arrays, meta, status, str(path), time.perf_counter() - started)


def _read_entry(path: Path, key: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            stored = json.loads(str(npz[META_KEY][()]))
            if stored.get("key") != json.loads(json.dumps(key)):
                return None  # a hash collision or a foreign entry: treat as a miss
            arrays = {name: npz[name] for name in npz.files if name != META_KEY}
        return arrays, stored["meta"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, TypeError):
        return None


def _write_entry(
    folder: Path, path: Path, key: dict[str, Any], arrays: dict[str, np.ndarray], meta: dict[str, Any]
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    payload = dict(arrays)
    payload[META_KEY] = np.array(json.dumps({"key": key, "meta": meta}))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            # numpy's stub checks **arrays against its allow_pickle: bool keyword as well
            np.savez(fh, **payload)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(Path(tmp))
        raise


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
