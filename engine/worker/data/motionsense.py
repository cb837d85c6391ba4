"""MotionSense (Malekzadeh et al., IoTDI 2019): 24 subjects, iPhone 6s in the front trouser pocket, 50 Hz.

Reads ``A_DeviceMotion_data/<activity>_<trial>/sub_<n>.csv`` (a folder, or the official zip in place)
and turns it into windows for person identification:

- channels: "default" = rotationRate xyz + (userAcceleration + gravity) xyz, i.e. gyroscope and total
  acceleration (6); "all" = the file's 12 columns in file order;
- windows of `window` samples every `stride` samples (128 and 10: the dataset authors' protocol);
- split: when the selected trials include both the official training trials (1-9) and test trials
  (11-16), trials 1-9 train and 11-16 test; otherwise (one trial, e.g. wlk_7) each recording is split
  in time, the first 80 % training and the rest testing, with a gap of one window between;
- groups: the source task identifies one group of subjects, the target task another (default: the
  first and second half of the subjects present by number, i.e. 1-12 and 13-24 on the full set).

Standardisation is applied later by engine.worker.data.prepare with training statistics.
Parsed recordings are cached (engine.worker.data.cache), so CSV parsing is paid once per set of files.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.worker.data import DataError, PreparedData, assemble, chronological_windows, windows
from engine.worker.data.cache import load_or_build
from engine.worker.data.groups import check_groups, complete_groups
from engine.worker.data.locate import (
    MOTIONSENSE_COLUMNS as COLUMNS,
)
from engine.worker.data.locate import (
    MOTIONSENSE_HEADER as HEADER,
)
from engine.worker.data.locate import (
    MOTIONSENSE_ZIP,
    MotionSenseSource,
    find_motionsense,
    trial_of,
)
from engine.worker.data.parsing import check_numeric, parser_error_detail

DEFAULT_CHANNELS = [
    "rotationRate.x",
    "rotationRate.y",
    "rotationRate.z",
    "userAcceleration.x+gravity.x",
    "userAcceleration.y+gravity.y",
    "userAcceleration.z+gravity.z",
]
RATE_HZ = 50.0
TRAIN_FRACTION = 0.8
LAST_TRAIN_TRIAL = 9  # official split: trials 1-9 train, 11-16 test
FIRST_TEST_TRIAL = 11
PARSER_VERSION = 1


# --------------------------------------------------------------------------------------------- parsing


def parse_csv(data: bytes, where: str) -> np.ndarray:
    """One sub_<n>.csv as a (rows, 12) float32 array, or a DataError naming the file, line and column."""
    first, _, _ = data.partition(b"\n")
    header = first.rstrip(b"\r").decode("utf-8-sig", errors="replace")
    if not data.strip():
        raise DataError(f"motionsense: {where} is empty; extract it again from {MOTIONSENSE_ZIP}")
    if header != HEADER:
        shown = header if len(header) <= 60 else header[:57] + "..."
        raise DataError(
            f"motionsense: {where} line 1: header {shown!r} is not the MotionSense "
            f"device-motion header {HEADER[:40]!r}...; point at A_DeviceMotion_data files "
            f"or extract this one again from {MOTIONSENSE_ZIP}"
        )
    try:
        frame = pd.read_csv(io.BytesIO(data), header=0, engine="c", skip_blank_lines=False)
    except pd.errors.ParserError as exc:
        raise DataError(
            f"motionsense: {where}: {parser_error_detail(exc)}; every row needs 13 "
            "comma-separated fields (index + 12 values)"
        ) from None
    values = frame.iloc[:, 1:]
    check_numeric(values, where, "motionsense")
    arr: np.ndarray = values.to_numpy(dtype=np.float64)
    if np.isnan(arr).any():
        row, col = np.argwhere(np.isnan(arr))[0]
        raise DataError(
            f"motionsense: {where} line {row + 2}, column {COLUMNS[col]}: empty or missing "
            "value; fix or remove that row"
        )
    if not np.isfinite(arr).all():
        row, col = np.argwhere(~np.isfinite(arr))[0]
        raise DataError(
            f"motionsense: {where} line {row + 2}, column {COLUMNS[col]}: value is infinite; fix or remove that row"
        )
    return arr.astype(np.float32)


def read_subjects_info(path: Path) -> dict[str, dict[str, int | float | str]]:
    """data_subjects_info.csv (code, weight, height, age, gender; UTF-8 BOM) as {subject: {...}}."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in reader.fieldnames or []]
        if "code" not in fields:
            raise ValueError(f"{path}: no 'code' column (header: {','.join(fields)})")
        out: dict[str, dict[str, int | float | str]] = {}
        for row in reader:
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if not row.get("code"):
                continue
            entry: dict[str, int | float | str] = {}
            for key, value in row.items():
                if key == "code":
                    continue
                try:
                    number = float(value)
                    entry[key] = int(number) if number.is_integer() else number
                except ValueError:
                    entry[key] = value
            out[str(int(float(row["code"])))] = entry
    return out


def select_channels(raw: np.ndarray, channels: str) -> np.ndarray:
    """(rows, 12) file columns -> (rows, 6) gyroscope + total acceleration, or all 12."""
    if channels == "all":
        return raw
    if channels != "default":
        raise DataError(f"motionsense: channels {channels!r} is not one of default, all")
    return np.concatenate([raw[:, 6:9], raw[:, 9:12] + raw[:, 3:6]], axis=1)


def normalise_subject(subject: str) -> str:
    text = str(subject).strip()
    if text.lower().startswith("sub_"):
        text = text[4:]
    return str(int(text)) if text.isdigit() else text


def _array_name(key: tuple[str, str]) -> str:
    return f"{key[0]}.sub_{key[1]}"


def _min_rows(window: int, stride: int) -> int:
    """The shortest recording that gives a training and a test window under the chronological split."""
    n = max(window, 10 * window - 10)
    while True:
        train, test = chronological_windows(np.zeros((n, 1), np.float32), window, stride, TRAIN_FRACTION)
        if len(train) and len(test):
            return n
        n += 1


# ---------------------------------------------------------------------------------------------- loader


def load(
    data_dir: Path,
    *,
    trials: tuple[int, ...] | None = None,
    channels: str = "default",
    window: int = 128,
    stride: int = 10,
    source_group: tuple[str, ...] | None = None,
    target_group: tuple[str, ...] | None = None,
    use_cache: bool = True,
) -> PreparedData:
    """MotionSense under `data_dir`/motionsense as a source task and a target task of windows."""
    src = find_motionsense(Path(data_dir) / "motionsense")
    present = src.trials
    if trials is None:
        selected = present
    else:
        missing = sorted(set(trials) - set(present))
        if missing:
            raise DataError(
                f"motionsense: trial(s) {', '.join(map(str, missing))} not found in {src.location} "
                f"(present: {', '.join(map(str, present))}); fix trials in the spec or preset, "
                f"or get the full {MOTIONSENSE_ZIP}"
            )
        selected = sorted(set(trials))
    folders = [f for f in src.folders if trial_of(f) in selected]
    keys = [k for k in sorted(src.files, key=lambda k: (trial_of(k[0]), k[0], int(k[1]))) if k[0] in folders]
    subjects = sorted({s for _, s in keys}, key=int)

    def build() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {_array_name(key): parse_csv(data, src.display(key)) for key, data in src.read(keys)}, {}

    cached = load_or_build(
        "motionsense",
        src.source_files() if src.kind == "dir" else [src.location],
        {"parser": PARSER_VERSION, "members": [src.files[k] for k in keys]},
        build,
        enabled=use_cache,
    )
    raw = {key: cached.arrays[_array_name(key)] for key in keys}

    source, target, group_rule = _groups(subjects, source_group, target_group, src)
    trial_split = any(t <= LAST_TRAIN_TRIAL for t in selected) and any(t >= FIRST_TEST_TRIAL for t in selected)
    if trial_split:
        split_rule = (
            f"by trial: trials {', '.join(str(t) for t in selected if t <= LAST_TRAIN_TRIAL)} train, "
            f"{', '.join(str(t) for t in selected if t > LAST_TRAIN_TRIAL)} test"
        )
    else:
        split_rule = f"chronological per recording: first {TRAIN_FRACTION:.0%} train, rest test, gap of one window"

    def subject_windows(subject: str) -> tuple[str, np.ndarray, np.ndarray]:
        train: list[np.ndarray] = []
        test: list[np.ndarray] = []
        mine = [k for k in keys if k[1] == subject]
        for key in mine:
            signal = select_channels(raw[key], channels)
            if trial_split:
                (train if trial_of(key[0]) <= LAST_TRAIN_TRIAL else test).append(windows(signal, window, stride))
            else:
                a, b = chronological_windows(signal, window, stride, TRAIN_FRACTION)
                train.append(a)
                test.append(b)
        n_train, n_test = sum(map(len, train)), sum(map(len, test))
        if not n_train or not n_test:
            raise DataError(_too_short(subject, mine, raw, src, window, stride, trial_split, n_train == 0))
        return subject, np.concatenate(train), np.concatenate(test)

    source_split = assemble([subject_windows(s) for s in source])
    target_split = assemble([subject_windows(s) for s in target])

    info = {
        "dataset": "MotionSense (Malekzadeh et al., IoTDI 2019), MIT licence",
        "layout": "zip" if src.kind == "zip" else "directory",
        "location": str(src.location),
        "files": [src.files[k] for k in keys],
        "trials": selected,
        "trial_folders": folders,
        "rows": {s: {k[0]: int(len(raw[k])) for k in keys if k[1] == s} for s in subjects},
        "rate_hz": RATE_HZ,
        "channel_set": channels,
        "channels": list(COLUMNS) if channels == "all" else list(DEFAULT_CHANNELS),
        "window": window,
        "stride": stride,
        "split": split_rule,
        "groups": group_rule,
        "source_group": list(source),
        "target_group": list(target),
        "windows": {
            name: {"train": int(len(s.y_train)), "test": int(len(s.y_test))}
            for name, s in (("source", source_split), ("target", target_split))
        },
        **cached.info(),
    }
    info.update(_subjects_info(src, source + target))
    return PreparedData(
        name="motionsense", synthetic=False, kind="windows", source=source_split, target=target_split, info=info
    )


def _groups(
    subjects: list[str],
    source_group: tuple[str, ...] | None,
    target_group: tuple[str, ...] | None,
    src: MotionSenseSource,
) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    if source_group is None and target_group is None:
        if len(subjects) < 4:
            raise DataError(
                f"motionsense: {len(subjects)} subject(s) found in {src.location}; the source and "
                "target groups need at least 2 each: add sub_<n>.csv files for more subjects"
            )
        half = len(subjects) // 2
        return (
            tuple(subjects[:half]),
            tuple(subjects[half:]),
            "default: first half of the subjects by number is the source, the rest the target",
        )
    source = tuple(normalise_subject(s) for s in source_group) if source_group is not None else None
    target = tuple(normalise_subject(s) for s in target_group) if target_group is not None else None
    source, target, rule = complete_groups(list(subjects), source, target, "subject")
    check_groups(source, target, subjects, "motionsense")
    return source, target, rule


def _too_short(
    subject: str,
    keys: list[tuple[str, str]],
    raw: dict[tuple[str, str], np.ndarray],
    src: MotionSenseSource,
    window: int,
    stride: int,
    trial_split: bool,
    no_train: bool,
) -> str:
    if trial_split:
        side = "training (1-9)" if no_train else "test (11-16)"
        files = [k for k in keys if (trial_of(k[0]) <= LAST_TRAIN_TRIAL) == no_train]
        if not files:
            return (
                f"motionsense: subject {subject} has no recording in the selected {side} trials; "
                "select trials it has, or leave it out of the groups"
            )
        rows = ", ".join(f"{src.display(k)} ({len(raw[k])} rows)" for k in files)
        return (
            f"motionsense: subject {subject} has too few rows for one window of {window} in its {side} "
            f"trials: {rows}; use a smaller --window or other trials"
        )
    need = _min_rows(window, stride)
    longest = max(keys, key=lambda k: len(raw[k]))
    return (
        f"motionsense: {src.display(longest)} has {len(raw[longest])} rows, too few for window {window}: "
        f"an {TRAIN_FRACTION:.0%}/{1 - TRAIN_FRACTION:.0%} chronological split needs at least {need} rows "
        "per recording; use a smaller --window or a longer recording"
    )


def _subjects_info(src: MotionSenseSource, subjects: tuple[str, ...]) -> dict[str, Any]:
    if src.subjects_info is None:
        return {"subjects_info": None}
    try:
        table = read_subjects_info(src.subjects_info)
    except (OSError, ValueError, KeyError) as exc:  # informative only: never stops a run
        return {"subjects_info": None, "subjects_info_problem": f"{src.subjects_info}: {exc}"}
    return {
        "subjects_info": {s: table[s] for s in subjects if s in table},
        "subjects_info_file": str(src.subjects_info),
    }
