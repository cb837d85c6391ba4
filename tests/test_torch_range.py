"""torch is a tested range, not a pin: a user's torch in it is kept, and a fresh install here takes the CPU build.

pip keeps an installed torch that satisfies the range, and on a fresh install takes the highest release
the range admits. The releases named below are the ones the range was checked against
(`pip index versions torch`): 2.11.0 is the device machine's CUDA build, 2.13.0+cpu the CPU build on
this machine's disk (CI's), 2.14.x the first CUDA builds a wider range would pull (several GB).
"""

import tomllib

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

from tests.helpers import REPO


def _torch_requirement() -> Requirement:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch_line,) = [d for d in dependencies if Requirement(d).name == "torch"]
    return Requirement(torch_line)


@pytest.mark.parametrize("kept", ["2.11.0", "2.11.0+cu130", "2.12.1", "2.13.0", "2.13.0+cpu"])
def test_a_torch_in_the_tested_range_is_kept(kept):
    assert _torch_requirement().specifier.contains(kept)


@pytest.mark.parametrize("refused", ["2.10.0", "2.14.0", "2.14.1", "2.15.0"])
def test_the_range_admits_no_release_past_the_cpu_build(refused):
    assert not _torch_requirement().specifier.contains(refused)


def test_the_newest_release_the_range_admits_is_the_cpu_build_on_disk():
    published = ["2.10.0", "2.11.0", "2.12.0", "2.12.1", "2.13.0", "2.13.0+cpu", "2.14.0", "2.14.1", "2.15.0"]
    newest = max(_torch_requirement().specifier.filter(published), key=Version)
    assert newest == "2.13.0+cpu"


def test_the_installed_torch_is_in_the_range():
    assert _torch_requirement().specifier.contains(torch.__version__)
