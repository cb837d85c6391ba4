"""The CLI through typer's CliRunner, with real workers."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.store.run_log import run_dirs
from tests.helpers import REPO, TINY

runner = CliRunner()


def tiny_preset(tmp_path, trials=1):
    # three epochs: the transfer head's training must outlast the model meter's 10 ms CPU tick
    values = {**TINY, "epochs": 3}
    settings = "\n".join(
        f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"'
        for k, v in values.items()
        if k not in ("dataset", "size")
    )
    path = tmp_path / "tiny.toml"
    path.write_text(
        f"# tiny\n[preset]\nname = 'tiny'\ntrials = {trials}\n[matrix]\nmode = ['transfer', 'scratch']\n"
        f"[settings]\n{settings}\n"
    )
    return path


@pytest.mark.slow
def test_run_prints_the_comparison_and_leaves_logs(tmp_path):
    logs = tmp_path / "logs"
    result = runner.invoke(app, ["run", str(tiny_preset(tmp_path)), "--logs", str(logs)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "transfer vs scratch" in result.output
    assert "training energy of scratch" in result.output
    assert "modelled" in result.output
    runs = run_dirs(logs)  # the runs, not the plan record (.plans)
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "summary.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_run_json_format_prints_results_only(tmp_path):
    result = runner.invoke(
        app,
        [
            "run",
            str(tiny_preset(tmp_path)),
            "--logs",
            str(tmp_path / "logs"),
            "--only",
            "mode=scratch",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["status"] for r in data["runs"]] == ["complete"]
    assert data["configs"][0]["config"] == "synthetic/small/scratch/baseline"


def test_bad_preset_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[matrix]\nsize = ['huge']\n")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    assert "size: 'huge' is not one of small, big" in result.stderr
    assert "Traceback" not in result.output
    missing = runner.invoke(app, ["run", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr


@pytest.mark.slow
def test_engine_never_imports_textual():
    code = (
        "import sys, engine.cli, engine.worker.main, engine.orchestrate.worker_process, "
        "engine.orchestrate.plan_runner, engine.analysis.stats, engine.outputs.tables; "
        "print(any(m == 'textual' or m.startswith('textual.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


GOLDEN_LOGS = str(REPO / "tests" / "golden" / "logs")
WIDE = {"COLUMNS": "200"}


@pytest.mark.slow
def test_engine_cli_without_a_command_prints_help_and_the_joulelab_command_adds_the_lab():
    # headless: `python -m engine.cli` prints help and never loads the TUI
    code = (
        "import sys; from engine.cli import main; sys.argv = ['joulelab']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print('textual' in sys.modules, code)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert "Commands:" in out.stdout and "run" in out.stdout
    assert out.stdout.strip().endswith("False 0")
    from tui.cli import app as lab_cli

    lab_help = runner.invoke(lab_cli, ["--help"])
    assert lab_help.exit_code == 0 and "--metrics-port" in lab_help.output
    # the lab's command line has every headless command, the same objects
    assert [c.callback for c in lab_cli.registered_commands] == [c.callback for c in app.registered_commands]
    assert runner.invoke(lab_cli, ["runs", "--logs", GOLDEN_LOGS], env=WIDE).exit_code == 0


def test_every_project_error_is_a_joulelab_error_with_its_exit_code():
    from engine.core.errors import EXIT_RUN_FAILED, EXIT_USAGE, JouleLabError
    from engine.core.events import ProtocolError
    from engine.core.run_files import StoreError
    from engine.core.spec import SpecError
    from engine.orchestrate.presets import PresetError
    from engine.orchestrate.slurm import SlurmError
    from engine.outputs.export import ExportError
    from engine.outputs.plots import PlotError
    from engine.outputs.prometheus import MetricsError
    from engine.worker.data import DataError
    from engine.worker.device import DeviceError
    from engine.worker.event_log import EXIT_LOG_UNWRITABLE, LogWriteError
    from engine.worker.meters.base import MeterError, MeterUnavailable
    from tui.widgets.lab_form import FormError

    user_input = (DataError, DeviceError, ExportError, MetricsError, PlotError, PresetError, SlurmError, SpecError)
    for cls in (*user_input, StoreError, FormError):
        assert issubclass(cls, JouleLabError) and cls.exit_code == EXIT_USAGE, cls
    for cls in (MeterError, MeterUnavailable, ProtocolError):
        assert issubclass(cls, JouleLabError) and cls.exit_code == EXIT_RUN_FAILED, cls
    assert LogWriteError.exit_code == EXIT_LOG_UNWRITABLE


def test_a_joulelab_error_from_any_command_is_one_line_and_its_exit_code():
    """The one place (JouleLabGroup): no command catches these itself."""
    from engine.cli import new_app
    from engine.core.events import ProtocolError
    from engine.core.spec import SpecError

    probe = new_app()

    @probe.command()
    def bad_input() -> None:
        raise SpecError("epochs: expected 1-10000, got 0")

    @probe.command()
    def damaged() -> None:
        raise ProtocolError("line 3: not JSON")

    for command, code, line in (
        ("bad-input", 2, "epochs: expected 1-10000, got 0"),
        ("damaged", 1, "line 3: not JSON"),
    ):
        result = runner.invoke(probe, [command])
        assert result.exit_code == code, result.output
        assert result.stderr == f"error: {line}\n" and "Traceback" not in result.output


def test_runs_lists_history_with_status_energy_and_accuracy():
    result = runner.invoke(app, ["runs", "--logs", GOLDEN_LOGS], env=WIDE)
    assert result.exit_code == 0
    assert "golden-transfer" in result.output and "golden-scratch" in result.output
    assert "complete" in result.output and "~" in result.output  # modelled energy is marked
    as_json = runner.invoke(app, ["runs", "--logs", GOLDEN_LOGS, "--format", "json"])
    rows = json.loads(as_json.stdout)
    assert {r["run_id"] for r in rows} == {"golden-transfer", "golden-scratch"}
    assert all(r["energy_source"] == "modelled" for r in rows)


def test_show_prints_phases_with_provenance_and_missing_meters():
    result = runner.invoke(app, ["show", "golden-transfer", "--logs", GOLDEN_LOGS], env=WIDE)
    assert result.exit_code == 0
    for text in ("pretrain", "model:tdp-cpu-time", "modelled", "rapl:", "accuracy"):
        assert text in result.output
    missing = runner.invoke(app, ["show", "nope", "--logs", GOLDEN_LOGS])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.stderr


def test_compare_by_ids_and_json():
    result = runner.invoke(app, ["compare", "golden-transfer", "golden-scratch", "--logs", GOLDEN_LOGS], env=WIDE)
    assert result.exit_code == 0 and "transfer vs scratch" in result.output
    data = json.loads(
        runner.invoke(
            app, ["compare", "golden-transfer", "golden-scratch", "--logs", GOLDEN_LOGS, "--format", "json"]
        ).stdout
    )
    (c,) = data["comparisons"]
    assert c["treatment"] == "transfer" and c["train_energy_ratio"]["source"] == "modelled"
    none = runner.invoke(app, ["compare", "--preset", "paper", "--logs", GOLDEN_LOGS])
    assert none.exit_code == 2 and "no runs of preset 'paper'" in none.stderr


def test_export_and_plot_write_files(tmp_path):
    result = runner.invoke(app, ["export", "--all", "--logs", GOLDEN_LOGS, "--format", "parquet", "-o", str(tmp_path)])
    assert result.exit_code == 0 and (tmp_path / "phases.parquet").exists()
    nothing = runner.invoke(app, ["export", "--logs", GOLDEN_LOGS])
    assert nothing.exit_code == 2 and "--all" in nothing.stderr
    png = tmp_path / "p.png"
    result = runner.invoke(app, ["plot", "golden-transfer", "golden-scratch", "--logs", GOLDEN_LOGS, "-o", str(png)])
    assert result.exit_code == 0 and png.read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(app, ["plot", "golden-transfer", "--logs", GOLDEN_LOGS, "-o", str(tmp_path / "p.gif")])
    assert bad.exit_code == 2 and ".png or .svg" in bad.stderr


def test_meters_reports_what_this_machine_can_measure():
    result = runner.invoke(app, ["meters", "--seconds", "0.2", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    text = json.dumps(report)
    assert "model:tdp-cpu-time" in text or "rapl:" in text


def test_data_says_where_it_looked(tmp_path):
    result = runner.invoke(app, ["data", "--data-dir", str(tmp_path / "nowhere"), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    by_name = {d["name"]: d for d in report["datasets"]}
    assert by_name["synthetic"]["found"] is True
    assert by_name["motionsense"]["found"] is False and "motion-sense" in by_name["motionsense"]["get"]


def test_usage_errors_exit_2():
    result = runner.invoke(app, ["run", "quick", "--trials", "0"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["run", "quick", "--only", "size=huge"])
    assert result.exit_code == 2 and "'huge' is not one of small, big" in result.stderr


@pytest.mark.slow
def test_quick_preset_end_to_end_through_the_real_cli(tmp_path):
    logs = tmp_path / "logs"
    result = runner.invoke(app, ["run", "quick", "--logs", str(logs)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "transfer vs scratch" in result.output and "[energy modelled, not measured]" in result.output
    last = runner.invoke(app, ["compare", "--last", "--logs", str(logs), "--format", "json"])
    assert len(json.loads(last.stdout)["configs"]) == 2
    out = tmp_path / "export"
    assert runner.invoke(app, ["export", "--all", "--logs", str(logs), "-o", str(out)]).exit_code == 0
    import pandas as pd

    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["mode"]) == ["scratch", "transfer"] and set(runs["status"]) == {"complete"}
