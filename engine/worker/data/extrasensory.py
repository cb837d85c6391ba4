"""ExtraSensory (Vaizman, Ellis & Lanckriet, IEEE Pervasive Computing 16(4), 2017): per-minute features.

Reads ``<UUID>.features_labels.csv.gz`` (one file per user, one row per minute) and turns it into
feature vectors for person identification:

- features: the 52 phone-motion features, ``raw_acc:*`` (26) and ``proc_gyro:*`` (26);
- optional label filter, e.g. "label:PHONE_IN_POCKET": keep only the minutes where that label is 1;
- rows with a missing (NaN) value in a used feature are dropped, and counted;
- split: per user, in timestamp order, the first 70 % of rows train and the rest test;
- groups: users sorted by UUID, first half the source task, second half the target task (ids may be
  given as full UUIDs or their first 8 characters, which are also the class names).

Publications using ExtraSensory must cite the paper above. Standardisation happens in prepare().
"""

from __future__ import annotations

import difflib
import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.worker.data import DataError, PreparedData, Split, assemble
from engine.worker.data.cache import load_or_build
from engine.worker.data.groups import check_groups, complete_groups
from engine.worker.data.locate import ExtraSensorySource, find_extrasensory
from engine.worker.data.parsing import check_numeric, parser_error_detail

_STATS = (
    [
        f"magnitude_stats:{s}"
        for s in (
            "mean",
            "std",
            "moment3",
            "moment4",
            "percentile25",
            "percentile50",
            "percentile75",
            "value_entropy",
            "time_entropy",
        )
    ]
    + [f"magnitude_spectrum:log_energy_band{i}" for i in range(5)]
    + ["magnitude_spectrum:spectral_entropy"]
    + ["magnitude_autocorrelation:period", "magnitude_autocorrelation:normalized_ac"]
    + [f"3d:{s}" for s in ("mean_x", "mean_y", "mean_z", "std_x", "std_y", "std_z", "ro_xy", "ro_xz", "ro_yz")]
)
# The 52 phone-motion features, in file order (checked against the real files by the tests).
FEATURES = [f"raw_acc:{s}" for s in _STATS] + [f"proc_gyro:{s}" for s in _STATS]
TRAIN_FRACTION = 0.7
MIN_ROWS = 2  # a user needs at least one training and one test row
PARSER_VERSION = 1
CITATION = (
    "Vaizman, Ellis & Lanckriet, Recognizing Detailed Human Context In-the-Wild from Smartphones "
    "and Smartwatches, IEEE Pervasive Computing 16(4), 2017"
)


def normalise_label(label_filter: str | None) -> str | None:
    if label_filter is None or not str(label_filter).strip():
        return None
    text = str(label_filter).strip()
    return text if text.startswith("label:") else f"label:{text}"


def _corrupt(path: Path, exc: BaseException) -> DataError:
    reason = str(exc) or type(exc).__name__
    return DataError(
        f"extrasensory: {path} is truncated or corrupt ({reason}); download the per-user features_labels files again"
    )


def read_header(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            first = fh.readline()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise _corrupt(path, exc) from None
    if not first.strip():
        raise DataError(f"extrasensory: {path} is empty; download the per-user features_labels files again")
    return first.decode("utf-8-sig", errors="replace").rstrip("\r\n").split(",")


def parse_user(path: Path, label: str | None) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """One user's file -> (timestamps int64, features float32 (n, 52), row counts), in timestamp order."""
    columns = read_header(path)
    if not columns or columns[0] != "timestamp":
        raise DataError(
            f"extrasensory: {path} line 1: first column is {columns[0][:40]!r}, not 'timestamp'; "
            "this is not an ExtraSensory features_labels file"
        )
    have = set(columns)
    missing = [f for f in FEATURES if f not in have]
    if missing:
        raise DataError(
            f"extrasensory: {path} line 1: {len(missing)} of the 52 phone-motion feature columns "
            f"are missing (first: {missing[0]!r}); use the original per-user features_labels files"
        )
    if label is not None and label not in have:
        labels = [c for c in columns if c.startswith("label:")]
        close = difflib.get_close_matches(label, labels, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (labels: {', '.join(labels[:4])}, ...)"
        raise DataError(
            f"extrasensory: label_filter {label!r} is not a column of {path.name}{hint}; "
            "fix label_filter in the spec or preset"
        )
    usecols = ["timestamp", *FEATURES] + ([label] if label else [])
    try:
        frame = pd.read_csv(path, usecols=usecols, engine="c", skip_blank_lines=False)
    except pd.errors.ParserError as exc:
        raise DataError(
            f"extrasensory: {path}: {parser_error_detail(exc)}; every row needs "
            f"{len(columns)} comma-separated fields like the header"
        ) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(path, exc) from None
    check_numeric(frame, str(path), "extrasensory")

    stamps = frame["timestamp"].to_numpy(dtype=np.float64)
    if np.isnan(stamps).any():
        line = int(np.flatnonzero(np.isnan(stamps))[0]) + 2
        raise DataError(f"extrasensory: {path} line {line}: timestamp is missing; fix or remove that row")
    order = np.argsort(stamps, kind="stable")
    x = frame[FEATURES].to_numpy(dtype=np.float64)[order]
    stamps = stamps[order].astype(np.int64)

    keep = np.ones(len(x), dtype=bool)
    if label:
        keep = frame[label].to_numpy(dtype=np.float64)[order] == 1
    has_nan = ~np.isfinite(x).all(axis=1)
    counts = {
        "total": int(len(x)),
        "filtered_out": int((~keep).sum()),
        "nan_dropped": int((keep & has_nan).sum()),
    }
    keep &= ~has_nan
    counts["used"] = int(keep.sum())
    return stamps[keep], x[keep].astype(np.float32), counts


def _class_names(uuids: list[str]) -> dict[str, str]:
    """UUID -> class name: the 8-character prefix, or the full UUID where prefixes collide."""
    prefixes = [u[:8] for u in uuids]
    return {u: (u[:8] if prefixes.count(u[:8]) == 1 else u) for u in uuids}


def load(
    data_dir: Path,
    *,
    label_filter: str | None = None,
    source_group: tuple[str, ...] | None = None,
    target_group: tuple[str, ...] | None = None,
    use_cache: bool = True,
) -> PreparedData:
    """ExtraSensory under `data_dir`/extrasensory as a source task and a target task of feature vectors."""
    src = find_extrasensory(Path(data_dir) / "extrasensory")
    label = normalise_label(label_filter)
    uuids = src.users
    names = _class_names(uuids)
    by_name = {n: u for u, n in names.items()}

    def build() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {}
        counts: dict[str, dict[str, int]] = {}
        for uuid in uuids:
            stamps, x, counts[uuid] = parse_user(src.files[uuid], label)
            arrays[f"{uuid}.t"] = stamps
            arrays[f"{uuid}.x"] = x
        return arrays, {"counts": counts}

    cached = load_or_build(
        "extrasensory",
        [src.files[u] for u in uuids],
        {"parser": PARSER_VERSION, "features": FEATURES, "label_filter": label},
        build,
        enabled=use_cache,
    )
    counts = cached.meta["counts"]
    usable = [names[u] for u in uuids if counts[u]["used"] >= MIN_ROWS]
    excluded = {names[u]: _why_unusable(counts[u], label) for u in uuids if counts[u]["used"] < MIN_ROWS}

    source, target, rule = _groups([names[u] for u in uuids], usable, excluded, source_group, target_group, src, label)

    def split(group: tuple[str, ...]) -> Split:
        per_user = []
        for name in group:
            x = cached.arrays[f"{by_name[name]}.x"]
            cut = int(len(x) * TRAIN_FRACTION)
            per_user.append((name, x[:cut], x[cut:]))
        return assemble(per_user)

    source_split, target_split = split(source), split(target)
    total = {k: sum(c[k] for c in counts.values()) for k in ("total", "filtered_out", "nan_dropped", "used")}
    info = {
        "dataset": "ExtraSensory; cite: " + CITATION,
        "location": str(src.location),
        "files": [src.files[u].name for u in uuids],
        "users": {names[u]: u for u in uuids},
        "features": "phone motion: raw_acc (26) + proc_gyro (26)",
        "n_features": len(FEATURES),
        "label_filter": label,
        "rows": {names[u]: counts[u] for u in uuids},
        "rows_total": total["total"],
        "rows_filtered_out": total["filtered_out"],
        "rows_nan_dropped": total["nan_dropped"],
        "rows_used": total["used"],
        "excluded_users": excluded,
        "split": f"chronological per user by timestamp: first {TRAIN_FRACTION:.0%} train, rest test",
        "groups": rule,
        "source_group": list(source),
        "target_group": list(target),
        "samples": {
            name: {"train": int(len(s.y_train)), "test": int(len(s.y_test))}
            for name, s in (("source", source_split), ("target", target_split))
        },
        **cached.info(),
    }
    return PreparedData(
        name="extrasensory", synthetic=False, kind="features", source=source_split, target=target_split, info=info
    )


def _why_unusable(counts: dict[str, int], label: str | None) -> str:
    why = []
    if label and counts["filtered_out"]:
        why.append(f"{counts['filtered_out']} without {label} == 1")
    if counts["nan_dropped"]:
        why.append(f"{counts['nan_dropped']} with missing features")
    return f"{counts['used']} usable row(s) of {counts['total']}" + (f" ({', '.join(why)})" if why else "")


def normalise_user(user: str, all_names: list[str]) -> str:
    """A full UUID or its 8-character prefix (any case) -> the class name used for that user."""
    text = str(user).strip().upper()
    if text in all_names:
        return text
    for name in all_names:
        if len(name) == 8 and len(text) == 36 and text.startswith(name):
            return name
    return text


def _groups(
    all_names: list[str],
    usable: list[str],
    excluded: dict[str, str],
    source_group: tuple[str, ...] | None,
    target_group: tuple[str, ...] | None,
    src: ExtraSensorySource,
    label: str | None,
) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    where = f" with {label} == 1" if label else ""
    if source_group is None and target_group is None:
        if len(usable) < 4:
            raise DataError(
                f"extrasensory: {len(usable)} user(s) with at least {MIN_ROWS} usable rows{where} in "
                f"{src.location} (of {len(all_names)}); the source and target groups need at least 2 "
                "each: add user files" + (" or drop the label filter" if label else "")
            )
        half = len(usable) // 2
        return (
            tuple(usable[:half]),
            tuple(usable[half:]),
            "default: users sorted by UUID, first half the source, the rest the target",
        )
    source = tuple(normalise_user(u, all_names) for u in source_group) if source_group is not None else None
    target = tuple(normalise_user(u, all_names) for u in target_group) if target_group is not None else None
    source, target, rule = complete_groups(list(usable), source, target, "user")
    check_groups(source, target, all_names, "extrasensory")
    for group_name, group in (("source_group", source), ("target_group", target)):
        for user in group:
            if user in excluded:
                raise DataError(
                    f"extrasensory: {group_name} user {user} has {excluded[user]}; "
                    "remove it from the group" + (" or drop the label filter" if label else "")
                )
    return source, target, rule
