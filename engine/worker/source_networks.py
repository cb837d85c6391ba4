"""Pretrained source networks, kept for reuse: the premise of transfer is that network A exists.

A source network is trained once per (data, size, source group, seed and training settings) and
saved with the energy its pretraining cost, so later transfer runs start from it and the
comparison can still count that cost (and say after how many transfers it pays for itself).

Files: <cache root>/sources/<key>.pt (a state_dict, loaded with weights_only=True) and
<key>.json (the pretrain phase record: duration, energy with provenance, the run that paid it).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.core.settings import settings
from engine.core.spec import RunSpec

# Spec fields that change what the source network learns.
KEY_FIELDS = (
    "dataset",
    "size",
    "effective_pretrain_epochs",
    "batch_size",
    "lr",
    "seed",
    "normalize",
    "batchnorm",
    "augment",
    "val_fraction",
)
# Keyed only when not at their defaults, so networks cached before these settings existed stay valid.
# A power limit or data parallelism changes the pretraining's energy (and DDP its batches), so a
# source network pretrained under one is not reused, with its joules, by a run without it.
KEY_FIELDS_IF_SET: dict[str, object] = {
    "width": 1.0,
    "amp": False,
    "model": None,
    "model_dir": None,
    "procs_per_node": 1,
    "power_limit_w": None,
    "power_limit_fraction": None,
}


def source_key(spec: RunSpec, x_train: np.ndarray, y_train: np.ndarray, device: str = "cpu") -> str:
    """Hash of the settings and of the source task's actual training data (so a changed file,
    window, stride, channel set or group gives a new network)."""
    h = hashlib.sha256()
    fields = {f: getattr(spec, f) for f in KEY_FIELDS}
    fields.update({f: getattr(spec, f) for f, default in KEY_FIELDS_IF_SET.items() if getattr(spec, f) != default})
    if device != "cpu":  # its pretraining energy was measured on another device
        fields["device"] = device.split(":")[0]
    h.update(json.dumps(fields, sort_keys=True).encode())
    h.update(str(x_train.shape).encode())
    h.update(np.ascontiguousarray(x_train).tobytes())
    h.update(np.ascontiguousarray(y_train).tobytes())
    h.update(torch.__version__.encode())
    return h.hexdigest()[:24]


def sources_dir() -> Path:
    return settings().cache_root() / "sources"


def load(key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(state_dict, pretrain record) of a saved source network, or None (missing or unreadable)."""
    base = sources_dir() / key
    try:
        record = json.loads(base.with_suffix(".json").read_text())
        state = torch.load(base.with_suffix(".pt"), weights_only=True, map_location="cpu")
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError):
        return None
    return state, record


def state_mismatch(expected: dict[str, torch.Tensor], state: object) -> str | None:
    """Why a saved state_dict does not fit a network whose own state_dict is `expected` (keys
    missing or extra, tensors of other shapes), in a few words; None when it fits."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return f"the file holds a {type(state).__name__}, not a state_dict of tensors"
    missing, extra = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    shapes = [k for k in expected.keys() & state.keys() if tuple(expected[k].shape) != tuple(state[k].shape)]
    problems = [
        f"{label} {', '.join(map(str, keys[:3]))}{' …' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("unexpected", extra), ("other shapes for", sorted(shapes)))
        if keys
    ]
    return "; ".join(problems) or None


def discard(key: str) -> None:
    """Remove a cached source network that cannot be used (it is pretrained again and saved anew)."""
    for suffix in (".pt", ".json"):
        try:
            (sources_dir() / f"{key}{suffix}").unlink(missing_ok=True)
        except OSError:
            pass  # a cache that cannot be changed is overwritten by the next save, or not used


def save(key: str, state: dict[str, torch.Tensor], record: dict[str, Any]) -> str | None:
    """Save atomically; returns a reason when the cache cannot be written (never fatal)."""
    folder = sources_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for suffix, write in (
            (".pt", lambda p: torch.save(state, p)),
            (".json", lambda p: Path(p).write_text(json.dumps(record, indent=1))),
        ):
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=suffix)
            os.close(fd)
            try:
                write(tmp)
                os.replace(tmp, folder / f"{key}{suffix}")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    except OSError as exc:
        return f"source network not cached: {folder}: {exc.strerror or exc}"
    return None
