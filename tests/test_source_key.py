"""The saved source network's key: what changes the network or its pretraining energy is in it."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.spec import RunSpec
from engine.worker.source_networks import source_key

X = np.zeros((4, 3, 8), dtype=np.float32)
Y = np.array([0, 1, 0, 1])


def key(**fields) -> str:
    return source_key(RunSpec(mode="transfer", **fields), X, Y)


@pytest.mark.parametrize(
    "fields",
    [
        {"procs_per_node": 2},
        {"power_limit_fraction": 0.6},
        {"power_limit_w": 250.0},
        {"model": "nets:tiny", "model_dir": "/a"},
        {"width": 2.0},
        {"amp": True},
    ],
)
def test_a_setting_that_changes_the_pretraining_gives_another_key(fields):
    assert key(**fields) != key()


def test_a_user_network_from_another_folder_is_another_network():
    assert key(model="nets:tiny", model_dir="/a") != key(model="nets:tiny", model_dir="/b")


def test_settings_at_their_defaults_keep_the_keys_of_networks_saved_before_they_existed():
    # the key of a plain spec must not move when a field is added at its default
    assert key() == key(procs_per_node=1, power_limit_w=None, model=None)
