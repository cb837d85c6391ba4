"""spec -> prepared arrays: picks the loader, then applies the spec's normalization and holdout."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.core.spec import RunSpec
from engine.worker.data import DataError, PreparedData, Split, standardise


def prepare(spec: RunSpec) -> PreparedData:
    if spec.dataset == "synthetic":
        from engine.worker.data import synthetic

        data = synthetic.load(
            spec.synthetic_subjects,
            spec.synthetic_seconds,
            spec.window,
            spec.stride,
            spec.seed,
            spec.source_group,
            spec.target_group,
        )
    else:
        from engine.worker.data.real import load_real

        data = load_real(spec)
    for task, split in (("source", data.source), ("target", data.target)):
        check_nonempty(data.name, task, split)
    if spec.normalize:
        data = replace(data, source=standardise(data.source), target=standardise(data.target))
    data.info["normalized"] = spec.normalize
    return data


def check_nonempty(dataset: str, task: str, split: Split) -> None:
    """Every person needs training and test samples, or accuracy would be measured on nothing."""
    for part, y in (("training", split.y_train), ("test", split.y_test)):
        counts = np.bincount(y, minlength=split.n_classes)
        empty = [split.classes[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise DataError(
                f"{dataset}: {task} group: {', '.join(empty)} have no {part} samples after the split; "
                "use longer recordings (synthetic_seconds), a smaller window or stride, or leave them "
                "out of the group"
            )


def holdout(split: Split, fraction: float, gap: int) -> tuple[Split, np.ndarray, np.ndarray]:
    """Take the last `fraction` of each class's training samples as a validation set.

    Samples of a class are in time order, so this is a chronological holdout; `gap` samples are
    dropped before it so that overlapping windows do not leak between training and validation.
    Returns the reduced split and (x_val, y_val).
    """
    if fraction <= 0:
        return split, split.x_train[:0], split.y_train[:0]
    keep_train, keep_val = [], []
    for label in range(split.n_classes):
        idx = np.flatnonzero(split.y_train == label)
        n_val = max(1, int(len(idx) * fraction))
        if len(idx) - n_val - gap < 1:
            keep_train.append(idx)  # too few samples to spare: this class gets no validation
            continue
        keep_val.append(idx[-n_val:])
        keep_train.append(idx[: len(idx) - n_val - gap])
    train_idx = np.concatenate(keep_train)
    val_idx = np.concatenate(keep_val) if keep_val else np.empty(0, dtype=np.int64)
    reduced = replace(split, x_train=split.x_train[train_idx], y_train=split.y_train[train_idx])
    return reduced, split.x_train[val_idx], split.y_train[val_idx]
