"""The one timestamp format: local wall-clock time to the second, ISO 8601 with its UTC offset
(2024-05-01T14:03:59+0200), as run.json, summary.json, plan files and calibration records hold
it; and the compact form (20240501-140359) that begins run ids and export file names."""

from __future__ import annotations

import time
from datetime import datetime

STAMP = "%Y-%m-%dT%H:%M:%S%z"
COMPACT = "%Y%m%d-%H%M%S"
CLOCK = "%H:%M:%S"


def now_stamp() -> str:
    """Now, as the logs record it."""
    return time.strftime(STAMP)


def compact_stamp() -> str:
    """Now, for an id or a file name (sorts as time does)."""
    return time.strftime(COMPACT)


def clock_time() -> str:
    """Now, the time of day only (the lab's message log)."""
    return time.strftime(CLOCK)


def parse_stamp(stamp: str | None) -> datetime | None:
    """A recorded stamp as an aware datetime, or None when it is missing or not one."""
    try:
        return datetime.strptime(stamp or "", STAMP)
    except ValueError:
        return None


def short_stamp(stamp: str) -> str:
    """A recorded stamp as a listing shows it: month-day hour:minute (05-01 14:03)."""
    return stamp[5:16].replace("T", " ")
