"""Datasets of the user's own: ``<data_dir>/custom/<name>/data.npz`` (or ``data.csv``), in the study's protocol.

Arrays of data.npz (read with ``allow_pickle=False``: never unpickled):

- ``x``: float, ``(samples, channels, time)`` for windows or ``(samples, features)`` for feature rows;
- ``label``: one per sample, the class (e.g. the person), integers or strings;
- ``group`` (optional): ``"source"`` or ``"target"`` per sample, which task a sample belongs to;
  without it the tasks are split by label value, as the built-in datasets split their people
  (the first half of the labels in sorted order is the source, or ``source_group`` /
  ``target_group`` in the preset name labels);
- ``time`` (optional): the order of the samples within a label (for windows: each window's first
  sample on one clock, in samples), for the chronological split; without it, file order;
- ``split`` (optional): ``"train"`` or ``"test"`` per sample, a fixed split of the dataset's own
  (e.g. the authors' official one); without it, the chronological split below.

data.csv holds feature rows: a ``label`` column, optional ``group``, ``time`` and ``split``
columns, every other column a feature.

Split, as the built-in loaders: per label, in time order, the first 80 % (windows) or 70 %
(features) train and the rest test; for windows with ``time``, the test windows that overlap the
last training window are left out (a gap of one window), and the validation holdout leaves the
same gap. Samples with a missing value (NaN) are dropped and counted. Parsed arrays are cached as
the built-in loaders' are (engine.worker.data.cache).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.spec import DATASETS, is_custom_dataset, suggest
from engine.worker.data import DataError, PreparedData, assemble
from engine.worker.data.cache import load_or_build
from engine.worker.data.groups import check_groups, complete_groups

CUSTOM_DIR = "custom"
FILES = ("data.npz", "data.csv")
WINDOWS_TRAIN_FRACTION = 0.8  # as MotionSense's and the synthetic set's chronological split
FEATURES_TRAIN_FRACTION = 0.7  # as ExtraSensory's
PARSER_VERSION = 1
LAYOUT = (
    "<data_dir>/custom/<name>/data.npz with arrays x (samples x channels x time, or samples x "
    "features), label, optional group, time, split; or data.csv with a label column"
)
GROUPS = ("source", "target")
SPLITS = ("train", "test")


def custom_root(data_dir: Path) -> Path:
    return Path(data_dir) / CUSTOM_DIR


def names(data_dir: Path) -> list[str]:
    """The dataset folders under <data_dir>/custom (each may still be unusable: see describe)."""
    root = custom_root(data_dir)
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def find(data_dir: Path, name: str) -> Path:
    """The file of dataset `name`, or a DataError naming where it was looked for and the fix."""
    folder = custom_root(data_dir) / name
    for file in FILES:
        if (folder / file).is_file():
            return folder / file
    present = ", ".join(names(data_dir)) or "none"
    raise DataError(
        f"{name}: no {folder / FILES[0]} (nor {FILES[1]}){suggest(name, [*DATASETS, *names(data_dir)])}; "
        "write your dataset there "
        f"(datasets of your own found in {custom_root(data_dir)}: {present}; see README 'Your own data')"
    )


# ---------------------------------------------------------------------------------------------- reading


def _bad(path: Path, what: str) -> DataError:
    return DataError(f"{path}: {what}")


def read(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a custom dataset file, checked: x float (2-D or 3-D), one label per sample,
    group/time/split if present. Any problem is one line naming the file, the array and the fix."""
    arrays = _read_csv(path) if path.suffix == ".csv" else _read_npz(path)
    x = arrays.get("x")
    if x is None:
        raise _bad(path, "no array 'x'; save the samples as x (samples x channels x time, or samples x features)")
    if "label" not in arrays:
        raise _bad(path, "no array 'label'; save one class per sample as label (integers or strings)")
    if x.dtype.kind not in "fiu" or x.ndim not in (2, 3):
        raise _bad(
            path,
            f"x is {x.dtype} of shape {x.shape}; expected numbers of shape (samples, channels, time) "
            "or (samples, features)",
        )
    x = x.astype(np.float32, copy=False)
    n = len(x)
    for name in ("label", "group", "time", "split"):
        if name in arrays:
            a = arrays[name]
            if a.ndim != 1 or len(a) != n:
                raise _bad(path, f"{name} has shape {a.shape}, x {n} samples; give exactly one {name} per sample")
    label = arrays["label"]
    if label.dtype.kind not in "iuU":
        raise _bad(path, f"label is {label.dtype}; save the classes as integers or strings")
    columns = x.reshape(n, x.shape[1], -1) if x.ndim == 3 else x[:, :, None]
    empty = np.flatnonzero(np.isnan(columns).all(axis=(0, 2))) if n else np.empty(0, dtype=np.int64)
    if len(empty):
        what = "channel" if x.ndim == 3 else "column"
        raise _bad(path, f"x {what} {int(empty[0])} is NaN in every sample; drop that {what} from x")
    if np.isinf(x).any():
        raise _bad(path, "x holds infinite values; replace them with NaN (the sample is dropped) or fix them")
    out = {"x": x, "label": label}
    for name, allowed in (("group", GROUPS), ("split", SPLITS)):
        if name in arrays:
            values = arrays[name].astype(str)
            wrong = sorted(set(values) - set(allowed))
            if wrong:
                raise _bad(path, f"{name} holds {wrong[0]!r}; each entry must be {' or '.join(map(repr, allowed))}")
            out[name] = values
    if "time" in arrays:
        t = arrays["time"]
        if t.dtype.kind not in "fiu" or not np.isfinite(t.astype(np.float64)).all():
            raise _bad(path, "time must be finite numbers, one per sample (the order within a label)")
        out["time"] = t.astype(np.float64)
    classes = np.unique(label)
    if len(classes) < 2:
        shown = repr(classes[0].item()) if len(classes) else "none"
        raise _bad(path, f"label holds one class only ({shown}); identification needs at least 2 per task")
    return out


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except ValueError as exc:  # an object array: it would need unpickling, which is never done
        raise _bad(path, f"cannot be read without unpickling ({exc}); save plain numeric or string arrays") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _bad(path, f"is not a readable .npz ({exc}); write it again with numpy.savez") from None


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    import pandas as pd

    from engine.worker.data.parsing import check_numeric, parser_error_detail

    try:
        frame = pd.read_csv(path, engine="c")
    except pd.errors.ParserError as exc:
        raise _bad(path, f"{parser_error_detail(exc)}; every row needs as many fields as the header") from None
    except (OSError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise _bad(path, f"cannot be read as CSV ({exc})") from None
    if "label" not in frame.columns:
        raise _bad(path, "no 'label' column; the CSV form needs a label column and one column per feature")
    special = [c for c in ("label", "group", "time", "split") if c in frame.columns]
    features = frame.drop(columns=special)
    check_numeric(features, str(path), "custom")
    out = {"x": features.to_numpy(dtype=np.float64)}
    label = frame["label"]
    out["label"] = label.to_numpy() if pd.api.types.is_integer_dtype(label) else label.astype(str).to_numpy(dtype=str)
    for name in ("group", "split"):
        if name in frame.columns:
            out[name] = frame[name].astype(str).to_numpy(dtype=str)
    if "time" in frame.columns:
        out["time"] = pd.to_numeric(frame["time"], errors="coerce").to_numpy(dtype=np.float64)
    return out


# ---------------------------------------------------------------------------------------------- loading


def class_names(label: np.ndarray) -> list[str]:
    """The classes in their stable order: numerically for integer labels, else as strings."""
    return [str(v) for v in np.unique(label)]  # np.unique sorts numbers as numbers, strings as strings


def load(
    data_dir: Path,
    name: str,
    *,
    source_group: tuple[str, ...] | None = None,
    target_group: tuple[str, ...] | None = None,
    use_cache: bool = True,
) -> PreparedData:
    path = find(data_dir, name)
    cached = load_or_build(
        f"custom-{name}", [path], {"parser": PARSER_VERSION}, lambda: (read(path), {}), enabled=use_cache
    )
    arrays = cached.arrays
    x, label = arrays["x"], arrays["label"].astype(str)
    kind = "windows" if x.ndim == 3 else "features"
    usable = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    classes = class_names(arrays["label"])
    order = np.argsort(arrays["time"], kind="stable") if "time" in arrays else np.arange(len(x))

    if "group" in arrays:
        if source_group is not None or target_group is not None:
            raise DataError(
                f"{name}: {path} has a group array, so it says which samples are the source and target "
                "tasks; remove source_group and target_group from the preset"
            )
        rule = "by the group array"
        tasks = {g: tuple(c for c in classes if ((label == c) & (arrays["group"] == g) & usable).any()) for g in GROUPS}
        for g, members in tasks.items():
            if len(members) < 2:
                raise DataError(f"{name}: {path}: the {g} group has {len(members)} class(es); it needs at least 2")
        source, target = tasks["source"], tasks["target"]
    else:
        present = [c for c in classes if (usable & (label == c)).any()]
        if source_group is None and target_group is None and len(present) < 4:
            raise DataError(
                f"{name}: {path} has {len(present)} classes with usable samples; the source and target "
                "tasks need at least 2 each: add classes, or give a group array"
            )
        source, target, rule = complete_groups(present, source_group, target_group, "label")
        check_groups(source, target, present, name)

    fraction = WINDOWS_TRAIN_FRACTION if kind == "windows" else FEATURES_TRAIN_FRACTION
    gap = _gap(arrays, kind)

    def take(task: str | None, cls: str) -> tuple[str, np.ndarray, np.ndarray]:
        mine = (label == cls) & usable
        if task is not None:
            mine &= arrays["group"] == task
        idx = order[mine[order]]
        if "split" in arrays:
            train, test = idx[arrays["split"][idx] == "train"], idx[arrays["split"][idx] == "test"]
        else:
            cut = int(len(idx) * fraction)
            train, test = idx[:cut], idx[cut:]
            if gap and "time" in arrays and len(train):
                test = test[arrays["time"][test] >= arrays["time"][train[-1]] + x.shape[2]]
        if not len(train) or not len(test):
            raise DataError(
                f"{name}: {path}: label {cls} has {len(train)} training and {len(test)} test samples "
                "after the split; give it more samples or leave it out of the groups"
            )
        return cls, x[train], x[test]

    grouped = "group" in arrays
    source_split = assemble([take("source" if grouped else None, c) for c in source])
    target_split = assemble([take("target" if grouped else None, c) for c in target])
    if "split" in arrays:
        split_rule = "by the split array (train/test per sample)"
    else:
        order_by = "by time" if "time" in arrays else "in file order"
        split_rule = f"chronological per label {order_by}: first {fraction:.0%} train, rest test"
        if kind == "windows" and "time" in arrays:
            split_rule += ", gap of one window"
    info: dict[str, Any] = {
        "dataset": f"{name} (your own: {path})",
        "file": str(path),
        "shape": list(x.shape),
        "samples": int(len(x)),
        "missing_dropped": int((~usable).sum()),
        "split": split_rule,
        "groups": rule,
        "source_group": list(source),
        "target_group": list(target),
        "windows" if kind == "windows" else "rows": {
            task: {"train": int(len(s.y_train)), "test": int(len(s.y_test))}
            for task, s in (("source", source_split), ("target", target_split))
        },
        **cached.info(),
    }
    return PreparedData(
        name=name,
        synthetic=False,
        kind=kind,
        source=source_split,
        target=target_split,
        info=info,
        holdout_gap=gap,
    )


def _gap(arrays: dict[str, np.ndarray], kind: str) -> int:
    """Samples the validation holdout leaves out so that no window overlaps both sides: one window
    over the windows' step in time (ceil(window / step)); 0 for feature rows or without time."""
    if kind != "windows" or "time" not in arrays:
        return 0
    # the step between one label's windows, label by label: labels recorded on clocks of their own
    # (offsets between people) must not make the gaps between labels look like steps
    time, label = arrays["time"], arrays["label"]
    steps = np.concatenate([np.diff(np.sort(time[label == value])) for value in np.unique(label)])
    steps = steps[steps > 0]
    if not len(steps):
        return 0
    window = int(arrays["x"].shape[2])
    return math.ceil(window / float(np.median(steps)))


# --------------------------------------------------------------------------------------------- describe


def describe(data_dir: Path) -> list[dict[str, Any]]:
    """One entry per folder under <data_dir>/custom for `joulelab data` and the lab: kind, shape,
    classes, samples per class, missing values, or the one line that says what is wrong."""
    entries = []
    for name in names(data_dir):
        folder = custom_root(data_dir) / name
        entry: dict[str, Any] = {"name": name, "custom": True, "looked_in": str(folder), "found": False}
        entry["expected"] = LAYOUT
        try:
            if not is_custom_dataset(name):
                raise DataError(
                    f"{folder}: {name!r} cannot name a dataset; rename the folder with lower case letters, "
                    "digits, - and _ (up to 24 characters), not a built-in name"
                )
            path = find(data_dir, name)
            arrays = read(path)
        except DataError as exc:
            entry["problem"] = str(exc)
            entries.append(entry)
            continue
        x, label = arrays["x"], arrays["label"]
        values, counts = np.unique(label, return_counts=True)
        missing = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        entry.update(
            found=True,
            problem=None,
            location=str(path),
            kind="windows" if x.ndim == 3 else "features",
            shape=list(x.shape),
            classes=len(values),
            per_class={str(v): int(c) for v, c in zip(values, counts)},
            missing=int(missing.sum()),
            arrays=sorted(arrays),
        )
        entries.append(entry)
    return entries


def format_entry(e: dict[str, Any]) -> list[str]:
    """`joulelab data`'s lines for one custom dataset."""
    if not e["found"]:
        return [f"{e['name']:<14} unusable   {e['problem']}"]
    counts = list(e["per_class"].values())
    shape = " x ".join(map(str, e["shape"]))
    return [
        f"{e['name']:<14} found      your own {e['kind']}, shape {shape}, {e['classes']} classes "
        f"({min(counts)}-{max(counts)} samples per class), {e['missing']} with missing values, in {e['location']}"
    ]
