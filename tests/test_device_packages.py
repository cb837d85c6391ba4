"""What the lent GPU machine has, what the device check carries there, and what it does without.

Every runtime dependency in pyproject.toml is either on the device already (tests/device/device-has.txt),
carried as a wheel (tests/device/carried.txt, within pyproject's range), or named here as not needed
by the worker side and the device check. A new dependency fails this test until it is placed.
"""

import subprocess
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO

# Not needed on the device: the lab (the worker side never imports it: import-linter's 'headless'
# contract) and the Slurm executor (engine.orchestrate.slurm imports submitit when it submits).
NOT_NEEDED = {"textual", "textual-plot", "textual-hires-canvas", "submitit"}


def _lines(name: str) -> list[str]:
    text = (REPO / "tests" / "device" / name).read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _dependencies() -> dict[str, Requirement]:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {canonicalize_name(r.name): r for r in map(Requirement, dependencies)}


def test_every_runtime_dependency_is_on_the_device_carried_or_not_needed():
    carried = {canonicalize_name(Requirement(line).name) for line in _lines("carried.txt")}
    device_has = {canonicalize_name(line) for line in _lines("device-has.txt")}
    assert not carried & device_has, "a package the device has is carried: two versions there"
    assert set(_dependencies()) == carried | device_has | NOT_NEEDED


def test_each_carried_wheel_is_one_pinned_version_inside_the_projects_range():
    dependencies = _dependencies()
    for line in _lines("carried.txt"):
        carried = Requirement(line)
        (pin,) = carried.specifier
        assert pin.operator == "==", line
        assert dependencies[canonicalize_name(carried.name)].specifier.contains(pin.version), line


def test_wheels_sh_refuses_a_version_that_is_not_major_minor():
    proc = subprocess.run(["bash", "tests/device/wheels.sh", "312"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == "wheels.sh: '312' is not a CPython version; give MAJOR.MINOR, e.g. 3.12\n"
