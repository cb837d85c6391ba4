import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own cache (parsed data, saved source networks) and state (power limits
    left set), never the user's."""
    monkeypatch.setenv("JOULELAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    # and its own lab configuration (networks.toml): never the user's
    monkeypatch.setenv("JOULELAB_CONFIG", str(tmp_path_factory.mktemp("config")))
    monkeypatch.setenv("JOULELAB_STATE", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real MotionSense/ExtraSensory files next to the checkout (../shared/data).

    A fresh user clone does not have them: tests skip with the reason. Under CI they must exist.
    """
    if (SHARED_DATA / "motionsense").is_dir() and (SHARED_DATA / "extrasensory").is_dir():
        return SHARED_DATA
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the real data is missing at {SHARED_DATA}")
    pytest.skip(f"real data not found at {SHARED_DATA} (see README: Tests)")
