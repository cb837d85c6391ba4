"""spec -> real dataset: finds the data folder and calls the MotionSense or ExtraSensory loader.

Also holds small parsing helpers the two loaders share.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.data import DataError, PreparedData
from engine.data.locate import resolve_data_dir_with_origin
from engine.spec import RunSpec

# Spec fields that apply to one dataset only; set on the other they are recorded as ignored.
MOTIONSENSE_ONLY = ("trials", "channels", "window", "stride")
EXTRASENSORY_ONLY = ("label_filter",)


def load_real(spec: RunSpec) -> PreparedData:
    """The spec's real dataset as source and target tasks (not standardised: prepare() does that)."""
    data_dir, origin = resolve_data_dir_with_origin(spec.data_dir)
    defaults = RunSpec()
    if spec.dataset == "motionsense":
        from engine.data import motionsense

        data = motionsense.load(
            data_dir,
            trials=spec.trials,
            channels=spec.channels,
            window=spec.window,
            stride=spec.stride,
            source_group=spec.source_group,
            target_group=spec.target_group,
        )
        ignored = [f for f in EXTRASENSORY_ONLY if getattr(spec, f) != getattr(defaults, f)]
    elif spec.dataset == "extrasensory":
        from engine.data import extrasensory

        data = extrasensory.load(
            data_dir, label_filter=spec.label_filter, source_group=spec.source_group, target_group=spec.target_group
        )
        ignored = [f for f in MOTIONSENSE_ONLY if getattr(spec, f) != getattr(defaults, f)]
    else:
        raise DataError(f"dataset {spec.dataset!r} has no real-data loader (motionsense, extrasensory)")
    data.info["data_dir"] = str(data_dir)
    data.info["data_dir_from"] = origin
    if ignored:
        data.info["ignored_settings"] = ignored
    return data


def check_numeric(frame: pd.DataFrame, where: str, dataset: str, first_line: int = 2) -> None:
    """Raise a DataError naming line and column of the first cell that is not a number.

    `first_line` is the file line of the frame's first row (2: after one header line). Empty cells and
    "nan" are NaN to pandas and pass here; each loader decides what a missing value means.
    """
    for col in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[col].dtype):
            continue
        coerced = pd.to_numeric(frame[col], errors="coerce")
        bad = np.flatnonzero(coerced.isna().to_numpy() & frame[col].notna().to_numpy())
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"{dataset}: {where} line {i + first_line}, column {col}: {frame[col].iloc[i]!r} "
                "is not a number; fix or remove that row"
            )


def parser_error_detail(exc: Exception) -> str:
    """pandas' "Error tokenizing data. C error: Expected 13 fields in line 5, saw 14" -> the useful part."""
    return str(exc).replace("Error tokenizing data. C error: ", "").strip().rstrip(".")
