"""Data-parallel settings that need no launched ranks: the cores shared out among a node's ranks,
the collective timeout that long settings lengthen, and a power limit refused under DDP."""

from __future__ import annotations

import pytest

from engine.core.spec import RunSpec, SpecError
from engine.worker.ranks import PROCESS_GROUP_TIMEOUT_S, group_timeout_s, threads_per_rank


def test_the_nodes_cores_are_shared_out_among_its_ranks():
    # N processes get the cores one process would: not torchrun's one thread each against all
    assert threads_per_rank(RunSpec(procs_per_node=2), cores=16) == 8
    assert threads_per_rank(RunSpec(procs_per_node=4), cores=2) == 1
    assert threads_per_rank(RunSpec(procs_per_node=2, threads=3), cores=16) == 3  # the user's wins


def test_a_long_cool_down_or_timed_inference_lengthens_the_wait_at_a_collective():
    # the leader cools down and times inference alone while the other ranks wait at the next edge
    assert group_timeout_s(RunSpec()) == PROCESS_GROUP_TIMEOUT_S + RunSpec().test_min_s
    assert group_timeout_s(RunSpec(cooldown_s=3000, test_min_s=900)) == PROCESS_GROUP_TIMEOUT_S + 3900


def test_a_power_limit_under_data_parallel_is_refused_in_one_line():
    with pytest.raises(
        SpecError, match=r"^power-limit with procs_per_node = 2: .* sweep the limit at procs_per_node = 1$"
    ):
        RunSpec(procs_per_node=2, power_limit_fraction=0.8)
