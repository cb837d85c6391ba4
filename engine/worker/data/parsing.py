"""Parsing helpers the real-data loaders (motionsense, extrasensory) share: one line that names
the file, the line and the column of what cannot be read."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.worker.data import DataError


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
