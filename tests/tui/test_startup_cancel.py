"""A cancel during the worker's start-up is a cancel, never a crash (issue 14, item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from engine.core.run_files import RUN_JSON
from engine.orchestrate.worker_process import worker_command
from engine.store.run_log import list_runs
from tests.tui.conftest import make_app, press, wait_for

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("when", ["at once", "once run.json is written"])
async def test_a_cancel_during_start_up_is_recorded_as_cancelled(logs: Path, when: str) -> None:
    app = make_app(logs, worker_command())
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "r")
        if when == "at once":
            await wait_for(pilot, lambda: app.running, what="the run")
        else:
            await wait_for(pilot, lambda: any(logs.glob(f"*/{RUN_JSON}")), what="run.json")
        await press(pilot, "x")
        await wait_for(pilot, lambda: not app.running, 60, "the cancel")
        (record,) = list_runs(logs)
        assert record.status == "cancelled"
        assert record.spec.get("mode") == "transfer" and record.started  # a run with its spec, not ?/?/?
        assert (record.path / RUN_JSON).exists()
        error = str(app.live.query_one("#live-error", Static).render())
        assert "cancelled" in error
        assert "Traceback" not in error and "ImportError" not in error
        assert app.live.statuses[0] == "cancelled"
