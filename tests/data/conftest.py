"""Data tests never touch the user's cache or data folder: both are pointed at tmp dirs."""

from __future__ import annotations

import pytest

from engine.worker.data import extrasensory, motionsense


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JOULELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JOULELAB_DATA", raising=False)


@pytest.fixture(scope="session")
def ms_data(shared_data):
    """MotionSense wlk_7 with the default protocol, parsed once for the session (no cache)."""
    return motionsense.load(shared_data, use_cache=False)


@pytest.fixture(scope="session")
def es_data(shared_data):
    return extrasensory.load(shared_data, use_cache=False)


@pytest.fixture(scope="session")
def es_pocket(shared_data):
    return extrasensory.load(shared_data, label_filter="label:PHONE_IN_POCKET", use_cache=False)
