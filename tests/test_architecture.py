"""The import rules: import-linter's contracts in pyproject.toml ([tool.importlinter]) hold on the
code, and fail on a planted violation (so they cannot pass by accident); every package is in the
wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over the engine and tui packages found under `root` (its pyproject's contracts)."""
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", script, "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_the_import_contracts_hold():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.slow
def test_a_planted_upward_import_breaks_the_contracts(tmp_path):
    """A lazy import inside a function counts: core reaching up to outputs, and the worker
    reaching into orchestration, each break their contract by name."""
    for top in ("engine", "tui"):
        shutil.copytree(REPO / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "engine" / "core" / "spec.py").open("a") as f:
        f.write("\n\ndef _planted():\n    from engine.outputs import tables\n\n    return tables\n")
    with (tmp_path / "engine" / "worker" / "train.py").open("a") as f:
        f.write("\n\ndef _planted():\n    import engine.orchestrate.presets\n\n    return engine\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "engine.core is not allowed to import engine.outputs" in result.stdout
    assert "engine.worker.train -> engine.orchestrate.presets" in result.stdout
    assert "The worker process imports core only (and its own meters, data, training) BROKEN" in result.stdout


def test_every_package_is_in_the_wheel():
    """pyproject.toml lists the packages explicitly; one left out installs without it (an
    editable install, as CI uses, would not notice)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("engine", "tui")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert found - listed == set(), f"packages missing from [tool.setuptools] packages: {sorted(found - listed)}"
