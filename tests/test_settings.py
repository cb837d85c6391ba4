"""The settings module (engine.core.settings): every JOULELAB_* variable read in one place, typed,
and answered the same for the CLI and the lab."""

import csv
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.core.settings import DEFAULT_CARBON_INTENSITY, Settings, SettingsError, env_var
from tests.helpers import REPO

GOLDEN_LOGS = str(REPO / "tests" / "golden" / "logs")
runner = CliRunner()


def test_each_field_is_one_documented_variable():
    assert env_var("stall_s") == "JOULELAB_STALL_S"
    for name, field in Settings.__annotations__.items():
        assert "description=" in field, f"{name} has no description"
    with pytest.raises(KeyError):
        env_var("no_such_setting")


def test_values_are_typed_and_empty_means_unset():
    s = Settings.from_env(
        {"JOULELAB_STALL_S": "2.5", "JOULELAB_LOGS": "/tmp/l", "JOULELAB_CARBON_INTENSITY": "56", "JOULELAB_DATA": ""}
    )
    assert s.stall_s == 2.5 and s.logs == Path("/tmp/l") and s.carbon_intensity == 56.0 and s.data is None
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("name", "value"), [("JOULELAB_STALL_S", "soon"), ("JOULELAB_STALL_S", "-1"), ("JOULELAB_CARBON_INTENSITY", "x")]
)
def test_a_bad_value_names_the_variable_in_one_line(name, value):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r} cannot be used") and "\n" not in message


def test_carbon_intensity_an_option_beats_the_variable_beats_the_default():
    value, source = Settings.from_env({}).carbon()
    assert value == DEFAULT_CARBON_INTENSITY == 480.0 and "Ember" in source
    assert Settings.from_env({"JOULELAB_CARBON_INTENSITY": "56"}).carbon() == (56.0, "JOULELAB_CARBON_INTENSITY")
    assert Settings.from_env({"JOULELAB_CARBON_INTENSITY": "56"}).carbon(12.0) == (12.0, "set for this session")


def emissions(out: Path) -> tuple[float, float]:
    """(kWh, kg CO2e) summed over the rows of an emissions.csv."""
    with out.open() as f:
        rows = list(csv.DictReader(f))
    return sum(float(r["energy_consumed"]) for r in rows), sum(float(r["emissions"]) for r in rows)


def test_the_cli_codecarbon_export_honours_the_carbon_variable(tmp_path):
    """Defect: `export --format codecarbon` used a hard-coded 480 g/kWh whatever
    JOULELAB_CARBON_INTENSITY said (the lab's export honoured it)."""
    args = ["export", "--all", "--logs", GOLDEN_LOGS, "--format", "codecarbon"]
    default = runner.invoke(app, [*args, "-o", str(tmp_path / "default.csv")], env={"JOULELAB_CARBON_INTENSITY": ""})
    assert default.exit_code == 0, default.output
    set_by_env = runner.invoke(app, [*args, "-o", str(tmp_path / "env.csv")], env={"JOULELAB_CARBON_INTENSITY": "120"})
    assert set_by_env.exit_code == 0, set_by_env.output
    option = runner.invoke(
        app,
        [*args, "-o", str(tmp_path / "opt.csv"), "--carbon-intensity", "60"],
        env={"JOULELAB_CARBON_INTENSITY": "120"},
    )
    assert option.exit_code == 0, option.output
    kwh, kg_default = emissions(tmp_path / "default.csv")
    assert kwh > 0
    assert kg_default == pytest.approx(kwh * 480 / 1000)
    assert emissions(tmp_path / "env.csv")[1] == pytest.approx(kwh * 120 / 1000)
    assert emissions(tmp_path / "opt.csv")[1] == pytest.approx(kwh * 60 / 1000)


def test_a_bad_variable_is_one_line_and_exit_2():
    result = runner.invoke(
        app,
        ["export", "--all", "--logs", GOLDEN_LOGS, "--format", "codecarbon", "-o", "/dev/null"],
        env={"JOULELAB_CARBON_INTENSITY": "lots"},
    )
    assert result.exit_code == 2, result.output
    assert "JOULELAB_CARBON_INTENSITY='lots' cannot be used" in result.output
    assert "Traceback" not in result.output


def test_joulelab_variables_are_read_in_the_settings_module_only():
    """`grep JOULELAB_ engine tui` finds the variables in engine/core/settings.py alone."""
    found = subprocess.run(
        ["grep", "-rn", "--include=*.py", "JOULELAB_", "engine", "tui"], cwd=REPO, capture_output=True, text=True
    ).stdout.splitlines()
    elsewhere = [line for line in found if not line.startswith("engine/core/settings.py:")]
    assert elsewhere == []
    assert any(re.search(r'PREFIX = "JOULELAB_"', line) for line in found)


def test_the_readme_lists_every_variable():
    readme = (REPO / "README.md").read_text()
    assert [name for name in Settings.__struct_fields__ if f"`{env_var(name)}`" not in readme] == []
