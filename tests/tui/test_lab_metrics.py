"""The lab's --metrics-port: its plan runner serves live Prometheus metrics, then closes the port."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.test_integrations import free_port, scrape
from tests.tui.conftest import fake_command, make_app, press, wait_for, wait_settled


@pytest.mark.slow
async def test_the_lab_serves_live_metrics_of_its_run_and_closes_the_port_after(logs: Path) -> None:
    port = free_port()
    app = make_app(logs, fake_command("--hold"), metrics_port=port, metrics_addr="127.0.0.1")
    url = f"http://127.0.0.1:{port}/metrics"
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "r")
        await wait_for(pilot, lambda: app.live.states.get(0) and app.live.states[0].metrics, what="the result")
        text = await asyncio.to_thread(scrape, url)  # the run holds before its end: it is still going
        assert text is not None
        mine = [line for line in text.splitlines() if 'run_id="run-0001"' in line]
        assert any(
            line.startswith("joulelab_energy_joules_total{") and 'phase="train"' in line and 'source="modelled"' in line
            for line in mine
        ), text
        assert any(line.startswith("joulelab_power_watts{") for line in mine), text
        await press(pilot, "x")
        await wait_settled(pilot, app)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
