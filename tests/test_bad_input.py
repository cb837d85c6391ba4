"""Bad input: one clear line, a non-zero exit, no traceback, nothing started. Settings, presets,
run ids, paths and data, through the CLI in-process (typer's CliRunner), the CLI as a user runs it
and the real worker; and a checkpoint is only ever loaded as weights."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.core.run_files import RUN_ID_RE, StoreError, check_writable
from engine.core.spec import SpecError, spec_from_dict
from engine.orchestrate.presets import PresetError, filter_plan, load, parse_only
from tests.helpers import REPO, TINY, run_worker, start_cli, tiny_spec

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert "Traceback" not in result.output and not isinstance(result.exception, (AssertionError, TypeError))
    return result


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def preset(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text("# test\n" + body)
    return path


# -- nan and inf ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["lr", "sample_hz", "idle_s", "tdp_w"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_and_inf_settings_are_refused_in_one_line(key, value):
    with pytest.raises(SpecError, match=f"{key}: .* is not a finite number"):
        spec_from_dict({key: value})


@pytest.mark.slow
def test_a_nan_spec_is_refused_by_the_worker_before_any_run_dir(tmp_path):
    result = run_worker(tiny_spec(tmp_path / "logs", lr=math.nan))  # json.dumps writes NaN
    assert result.returncode == 2 and "lr: nan is not a finite number" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "logs").exists()


def test_nan_in_a_preset_and_on_the_command_line_is_one_line_exit_2(tmp_path):
    path = preset(tmp_path, "[matrix]\nmode = ['scratch']\n[settings]\nlr = nan\n")
    result = invoke("run", str(path), "--logs", str(tmp_path / "logs"))
    assert result.exit_code == 2 and len(error_lines(result)) == 1 and "not a finite number" in result.output
    for args in (
        ["run", "quick", "--tdp", "nan"],
        ["meters", "--tdp", "1e12"],
        ["meters", "--tdp", "-5"],
        ["meters", "--tdp", "inf"],
    ):
        result = invoke(*args, "--logs", str(tmp_path / "logs")) if args[0] == "run" else invoke(*args)
        assert result.exit_code == 2 and "--tdp" in result.output and "at most 2000" in result.output, args
    assert not (tmp_path / "logs").exists()


def test_trials_on_the_command_line_is_bounded_like_presets(tmp_path):
    result = invoke("run", "quick", "--trials", "1001", "--logs", str(tmp_path / "logs"))
    assert result.exit_code == 2 and "--trials" in result.output and "1000" in result.output
    assert not (tmp_path / "logs").exists()


# -- markup: user text is shown as written ---------------------------------------------------


def test_brackets_in_errors_paths_and_help_are_shown_as_written(tmp_path):
    path = preset(tmp_path, "[matrix]\nfoo = [1]\n")
    result = invoke("run", str(path))
    assert result.exit_code == 2 and "[matrix] unknown key 'foo'" in result.output
    odd = tmp_path / "[/x]"
    odd.mkdir(parents=True)  # a folder "[" holding a folder "x]": the path reads [/x]
    result = invoke("runs", "--logs", str(odd))
    assert result.exit_code == 0 and str(odd) in result.output
    result = invoke("export", "--all", "--logs", str(odd))
    assert result.exit_code == 2 and str(odd) in result.output
    # help wraps to the terminal: compare with the whitespace collapsed
    assert "[default: $JOULELAB_LOGS or ./logs]" in " ".join(invoke("run", "--help").output.split())


# -- a plan whose dataset is missing ---------------------------------------------------------


def test_a_plan_whose_dataset_is_missing_is_refused_before_the_first_run(tmp_path):
    nowhere = tmp_path / "nowhere"
    path = preset(
        tmp_path,
        "[matrix]\ndataset = ['motionsense']\nmode = ['scratch', 'transfer', 'finetune']\n"
        f"[preset]\ntrials = 5\n[settings]\ndata_dir = {json.dumps(str(nowhere))}\n",
    )
    result = invoke("run", str(path), "--logs", str(tmp_path / "logs"))
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert str(nowhere) in line and "15 runs of the plan need it; none was started" in line
    assert not list((tmp_path / "logs").glob("*/"))


# -- selecting and filtering -----------------------------------------------------------------


def test_repeated_only_keeps_any_of_the_values():
    plan = load("quick").plan(1)
    modes = {p.config.mode for p in plan}
    assert len(modes) >= 2
    a, b = sorted(modes)[:2]
    kept = filter_plan(plan, parse_only([f"mode={a}", f"mode={b}"]))
    assert {p.config.mode for p in kept} == {a, b}
    with pytest.raises(PresetError):
        parse_only(["mode=nope"])


def test_compare_refuses_two_ways_of_selecting(tmp_path):
    result = invoke("compare", "--last", "--preset", "quick", "--logs", str(tmp_path))
    assert result.exit_code == 2 and len(error_lines(result)) == 1 and "choose one way" in result.output


def test_top_level_logs_reaches_the_subcommand_or_is_refused(tmp_path):
    logs = tmp_path / "mylogs"
    logs.mkdir()
    result = invoke("--logs", str(logs), "runs")
    assert result.exit_code == 0 and f"no runs in {logs}" in result.output
    result = invoke("--logs", str(logs), "export", "--all")
    assert result.exit_code == 2 and f"no runs in {logs}" in result.output
    result = invoke("--logs", str(logs), "meters")
    assert result.exit_code == 2 and "--logs does not apply to `joulelab meters`" in result.output


# -- data, run ids and logs paths ------------------------------------------------------------


def test_data_calls_a_truncated_gzip_damaged_and_a_file_a_file(tmp_path):
    folder = tmp_path / "data" / "extrasensory"
    folder.mkdir(parents=True)
    body = b"timestamp,raw_acc:magnitude_stats:mean\n" + b"".join(b"%d,1.0\n" % i for i in range(20000))
    (folder / "11111111-2222-3333-4444-555555555555.features_labels.csv.gz").write_bytes(gzip.compress(body)[:3000])
    result = invoke("data", "--data-dir", str(tmp_path / "data"))
    (line,) = [x for x in result.output.splitlines() if x.startswith("extrasensory")]
    assert "damaged" in line and "found" not in line
    assert "unreadable" in result.output
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = invoke("data", "--data-dir", str(afile))
    assert f"{afile} is a file, not a directory" in result.output and "does not exist" not in result.output


@pytest.mark.parametrize("run_id", ["é1", "run²", "٣"])
def test_run_ids_are_ascii_in_the_spec_as_in_the_store(run_id):
    assert not RUN_ID_RE.match(run_id)
    with pytest.raises(SpecError, match="ASCII"):
        spec_from_dict({**TINY, "run_id": run_id})


def test_logs_naming_a_file_says_it_is_a_file(tmp_path):
    afile = tmp_path / "logs"
    afile.write_text("x")
    with pytest.raises(StoreError, match="it is a file, not a directory"):
        check_writable(afile)
    result = invoke("run", "quick", "--logs", str(afile))
    assert result.exit_code == 2 and "is a file, not a directory" in result.output
    assert "free space" not in result.output


# -- through the CLI as a user runs it ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("run_id", ["../etc", "no-such-run", "a/b"])
def test_run_ids_that_do_not_exist_or_escape_logs_are_refused(tmp_path, run_id):
    (tmp_path / "logs").mkdir()
    proc = start_cli("show", run_id, "--logs", str(tmp_path / "logs"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and "joulelab runs" in err


@pytest.mark.slow
def test_missing_or_corrupt_data_is_one_line_and_exit_2_through_the_cli(tmp_path):
    broken = tmp_path / "data" / "motionsense" / "A_DeviceMotion_data" / "wlk_7"
    broken.mkdir(parents=True)
    (broken / "sub_1.csv").write_text("not,the,right,header\n1,2,3,4\n")
    for data_dir in (tmp_path / "nowhere", tmp_path / "data"):
        path = tmp_path / "ms.toml"
        path.write_text(
            f"# t\n[matrix]\ndataset = ['motionsense']\n[settings]\nidle_s = 0.1\n"
            f"data_dir = {json.dumps(str(data_dir))}\n"
        )
        proc = start_cli("run", str(path), "--logs", str(tmp_path / "logs"))
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        # Missing data is refused before any run; data found but broken fails the run that reads it.
        what = "none was started" if data_dir.name == "nowhere" else "failed"
        assert len(lines) == 1 and what in lines[0] and "Traceback" not in err
        assert str(data_dir) in lines[0]


def test_checkpoints_are_loaded_weights_only():
    source = (REPO / "engine" / "worker" / "source_networks.py").read_text()
    assert "weights_only=True" in source
    for path in (REPO / "engine").rglob("*.py"):
        text = path.read_text()
        assert "torch.load(" not in text or "weights_only=True" in text, path
