"""Datasets: every loader turns its files into the same shape, a source task and a target task.

The source task (one group of people) is what a transferred network was pretrained on; the target
task (another group) is what scratch, transfer and fine-tune are trained and tested on. Labels are
0..k-1 within each task; `classes` maps them back to subject or user ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from engine.core.errors import JouleLabError


class DataError(JouleLabError):
    """Bad or missing data. The message names the file (and line) and says how to fix it."""


@dataclass
class Split:
    x_train: np.ndarray  # float32: (N, channels, window) for windows, (N, features) for features
    y_train: np.ndarray  # int64 in 0..len(classes)-1
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


@dataclass
class PreparedData:
    name: str  # "synthetic" | "motionsense" | "extrasensory" | a dataset of the user's own
    synthetic: bool  # True: generated, not measured from people; every report says so
    kind: str  # "windows" | "features"
    source: Split
    target: Split
    info: dict[str, Any] = field(default_factory=dict)  # provenance for run.json: files, rows, drops, groups
    # Samples the validation holdout leaves out between training and validation, so that no
    # window straddles both; None: the spec's window over its stride (windows), 0 (features)
    holdout_gap: int | None = None

    @property
    def label(self) -> str:
        return f"{self.name} (synthetic)" if self.synthetic else self.name


def standardise(split: Split) -> Split:
    """Z-score with statistics of the training set only (per channel, or per feature)."""
    axes = (0, 2) if split.x_train.ndim == 3 else (0,)
    mean = split.x_train.mean(axis=axes, keepdims=True)
    std = split.x_train.std(axis=axes, keepdims=True)
    std = np.where(std < 1e-8, 1.0, std)  # a constant channel stays constant rather than NaN
    return replace(
        split,
        x_train=((split.x_train - mean) / std).astype(np.float32),
        x_test=((split.x_test - mean) / std).astype(np.float32),
    )


def windows(signal: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Cut a (time, channels) recording into (n, channels, window) windows."""
    n = (len(signal) - window) // stride + 1
    if n <= 0:
        return np.empty((0, signal.shape[1], window), dtype=np.float32)
    idx = np.arange(window)[None, :] + stride * np.arange(n)[:, None]
    return np.ascontiguousarray(signal[idx].transpose(0, 2, 1), dtype=np.float32)


def chronological_windows(
    signal: np.ndarray, window: int, stride: int, train_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Split one recording in time, then window each side.

    The first `train_fraction` of samples trains, the rest tests, with a gap of one window between
    them so that no window straddles the cut and no test window overlaps a training window.
    """
    cut = int(len(signal) * train_fraction)
    return windows(signal[:cut], window, stride), windows(signal[cut + window :], window, stride)


def assemble(per_class: list[tuple[str, np.ndarray, np.ndarray]]) -> Split:
    """Build a Split from (class id, train samples, test samples) per class."""
    xs_train, ys_train, xs_test, ys_test = [], [], [], []
    for label, (_, x_train, x_test) in enumerate(per_class):
        xs_train.append(x_train)
        xs_test.append(x_test)
        ys_train.append(np.full(len(x_train), label, dtype=np.int64))
        ys_test.append(np.full(len(x_test), label, dtype=np.int64))
    return Split(
        x_train=np.concatenate(xs_train).astype(np.float32, copy=False),
        y_train=np.concatenate(ys_train),
        x_test=np.concatenate(xs_test).astype(np.float32, copy=False),
        y_test=np.concatenate(ys_test),
        classes=[cid for cid, _, _ in per_class],
    )
