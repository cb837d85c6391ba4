"""The CLI's options: each declared once, none silently ignored, one machine-readable flag."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from engine.cli import app
from engine.orchestrate import slurm
from tui.cli import app as lab_app

runner = CliRunner()


def one_line_exit_2(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


# --- options that do not apply to the executor are refused, not dropped ----------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--until-clear"], "--until-clear does not apply to --executor slurm; leave it out"),
        (["--metrics-port", "9464"], "--metrics-port does not apply to --executor slurm"),
        (["--max-trials", "4"], "--max-trials does not apply to --executor slurm"),
        (["--until-clear", "--metrics-port", "9464"], "--until-clear, --metrics-port do not apply"),
    ],
)
def test_local_only_options_are_refused_with_slurm(tmp_path, options, named):
    """No cluster is needed: the refusal comes before anything asks Slurm."""
    result = runner.invoke(app, ["run", "quick", "--executor", "slurm", "--logs", str(tmp_path), *options])
    one_line_exit_2(result, named)


@pytest.mark.parametrize(
    "options", [["--partition", "gpu"], ["--gpus-per-job", "1"], ["--time", "5"], ["--no-exclusive"]]
)
def test_slurm_only_options_are_refused_locally(tmp_path, options):
    result = runner.invoke(app, ["run", "quick", "--logs", str(tmp_path), *options])
    one_line_exit_2(result, "does not apply to --executor local")
    assert not (tmp_path / ".plans").exists()  # nothing ran


def test_max_trials_needs_until_clear(tmp_path):
    one_line_exit_2(runner.invoke(app, ["run", "quick", "--logs", str(tmp_path), "--max-trials", "4"]), "--until-clear")


def test_device_reaches_the_slurm_jobs_specs(tmp_path, monkeypatch):
    submitted = []

    def submit(plan, options, logs_dir, preset):
        submitted.extend(plan)
        raise slurm.SlurmError("submitted (test stops here)")

    monkeypatch.setattr(slurm, "check_cluster", lambda options: None)
    monkeypatch.setattr(slurm, "submit_plan", submit)
    result = runner.invoke(
        app, ["run", "quick", "--executor", "slurm", "--logs", str(tmp_path), "--device", "cpu", "--tdp", "65"]
    )
    one_line_exit_2(result, "submitted (test stops here)")
    assert submitted and {p.spec.device for p in submitted} == {"cpu"} and {p.spec.tdp_w for p in submitted} == {65}


# --- one loader for a plan ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "calibrate"])
def test_an_only_that_leaves_nothing_is_one_line_for_every_command(tmp_path, command):
    result = runner.invoke(app, [command, "quick", "--logs", str(tmp_path), "--only", "mode=finetune"])
    one_line_exit_2(result, "--only mode=finetune leaves no configuration of preset 'quick' to run")


@pytest.mark.parametrize("command", ["run", "calibrate"])
def test_a_bad_tdp_is_refused_by_every_command_that_runs(tmp_path, command):
    result = runner.invoke(app, [command, "quick", "--logs", str(tmp_path), "--tdp", "nan"])
    one_line_exit_2(result, "--tdp nan")


# --- one declaration per option, one machine-readable flag ---------------------------------------


def options_by_name(typer_app: typer.Typer) -> dict[str, set[str]]:
    """Every option's help texts across the app's commands and its root."""
    command = typer.main.get_command(typer_app)
    helps: dict[str, set[str]] = {}
    for sub in [command, *getattr(command, "commands", {}).values()]:
        for param in sub.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    helps.setdefault(opt, set()).add(getattr(param, "help", None) or "")
    return helps


def test_each_shared_option_has_one_declaration():
    helps = options_by_name(lab_app)  # the headless commands and the lab's own options
    for opt in ("--logs", "--data-dir", "--tdp", "--metrics-port", "--metrics-addr", "--json"):
        assert len(helps[opt]) == 1, (opt, helps[opt])


@pytest.mark.parametrize("command", ["meters", "data"])
def test_format_json_and_its_json_alias_print_the_same_machine_output(command):
    args = {"meters": ["meters", "--seconds", "0.1"], "data": ["data"]}[command]
    by_format = runner.invoke(app, [*args, "--format", "json"])
    by_alias = runner.invoke(app, [*args, "--json"])
    assert by_format.exit_code == 0 and by_alias.exit_code == 0, by_format.output + by_alias.output
    a, b = json.loads(by_format.stdout), json.loads(by_alias.stdout)
    assert a.keys() == b.keys()
    human = runner.invoke(app, args)
    assert human.exit_code == 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(human.stdout)


@pytest.mark.parametrize("command", ["run", "compare", "runs", "jobs", "meters", "data"])
def test_every_command_with_machine_output_takes_format_json(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    (line,) = [line for line in result.output.splitlines() if line.strip().startswith("--format")]
    assert "<human|json>" in line, line
