"""Fixtures for the lab's tests: the app built against a fake or a real worker.

The fake worker (tests/fakes/fake_worker.py) replays a recorded stream and writes the run log like
the real one; the real worker trains the tiny synthetic spec of tests/helpers.py in about a second.
Tests wait on conditions (`wait_for`), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.css.query import NoMatches

from tests.helpers import REPO, TINY

FAKE_WORKER = REPO / "tests" / "fakes" / "fake_worker.py"
WALL = "2026-01-01T10:00:00+0000"

# TINY as the app's spec defaults (the form starts from its epochs and sampling rate); the form
# chooses the dataset and the size.
SPEC_DEFAULTS = {k: v for k, v in TINY.items() if k not in ("dataset", "size")}

DATASETS_NONE_FOUND = [
    {"name": "synthetic", "found": True},
    {
        "name": "motionsense",
        "found": False,
        "problem": "no motionsense/ folder in /data",
        "looked_in": "/data/motionsense",
        "get": "https://github.com/mmalekzadeh/motion-sense",
    },
    {
        "name": "extrasensory",
        "found": False,
        "problem": "no extrasensory/ folder in /data",
        "looked_in": "/data/extrasensory",
        "get": "http://extrasensory.ucsd.edu",
    },
]


def fake_command(*args: str) -> list[str]:
    return [sys.executable, str(FAKE_WORKER), "--wall", WALL, *args]


def counter_ids(prefix: str = "run") -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}-{next(numbers):04d}"


def make_app(logs: Path, command: list[str] | None = None, **kwargs):
    from tui.app import JouleLabApp

    options = dict(
        logs_dir=logs,
        worker_command=command or fake_command(),
        spec_defaults=dict(SPEC_DEFAULTS),
        run_id_factory=counter_ids(),
        datasets=lambda data_dir: (DATASETS_NONE_FOUND, None),
    )
    options.update(kwargs)
    return JouleLabApp(**options)


def _raise_if_crashed(app) -> None:
    error = getattr(app, "_exception", None)
    if error is not None:
        raise AssertionError(f"the app crashed: {type(error).__name__}: {error}") from error


async def press(pilot, *keys: str, timeout: float = 15.0) -> None:
    """pilot.press, but a crashed app fails the test instead of hanging it."""
    try:
        await asyncio.wait_for(pilot.press(*keys), timeout)
    except TimeoutError:
        _raise_if_crashed(pilot.app)
        if pilot.app.return_code is not None or not pilot.app.is_running:
            return  # the key quit the app: Pilot's wait for idle can outlive a closing app
        raise AssertionError(f"pressing {keys} did not finish in {timeout:.0f} s") from None


async def wait_for(pilot, predicate: Callable[[], object], timeout: float = 30.0, what: str = "a condition"):
    deadline = time.monotonic() + timeout
    while True:
        _raise_if_crashed(pilot.app)
        try:
            value = predicate()
        except NoMatches:  # not composed yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.05)


async def wait_settled(pilot, app, timeout: float = 15.0) -> None:
    """Until the run is over and every view has drawn what it holds."""
    await wait_for(pilot, lambda: not app.running, timeout, "the plan to finish")
    live = app.live
    await wait_for(
        pilot,
        lambda: not live._dirty and (not live.graph.display or live.graph.settled or not live.graph.is_on_screen),
        timeout,
        "the live view to draw",
    )
    await pilot.pause()


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path / "logs"
