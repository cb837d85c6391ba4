"""The one timestamp format (engine.core.timestamps): what is written reads back, and run ids
begin with the compact form, so they sort as time does."""

from __future__ import annotations

import re
import time

from engine.core.spec import new_run_id
from engine.core.timestamps import now_stamp, parse_stamp, short_stamp


def test_a_written_stamp_reads_back_and_shows_short():
    stamp = now_stamp()
    when = parse_stamp(stamp)
    assert when is not None and abs(when.timestamp() - time.time()) < 5
    assert re.fullmatch(r"\d{2}-\d{2} \d{2}:\d{2}", short_stamp(stamp))
    assert parse_stamp("yesterday") is None and parse_stamp(None) is None
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", new_run_id())
