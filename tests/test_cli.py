"""The CLI through typer's CliRunner, with real workers."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from engine.cli import app
from tests.helpers import REPO, TINY

runner = CliRunner()


def tiny_preset(tmp_path, trials=1):
    # three epochs: the transfer head's training must outlast the model meter's 10 ms CPU tick
    values = {**TINY, "epochs": 3}
    settings = "\n".join(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"'
                         for k, v in values.items() if k not in ("dataset", "size"))
    path = tmp_path / "tiny.toml"
    path.write_text(f"# tiny\n[preset]\nname = 'tiny'\ntrials = {trials}\n[matrix]\nmode = ['transfer', 'scratch']\n"
                    f"[settings]\n{settings}\n")
    return path


def test_run_prints_the_comparison_and_leaves_logs(tmp_path):
    logs = tmp_path / "logs"
    result = runner.invoke(app, ["run", str(tiny_preset(tmp_path)), "--logs", str(logs)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "transfer vs scratch" in result.output
    assert "training energy of scratch" in result.output
    assert "modelled" in result.output
    runs = sorted(p for p in logs.iterdir() if p.is_dir())
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "summary.json").read_text())["status"] == "complete"


def test_run_json_format_prints_results_only(tmp_path):
    result = runner.invoke(app, ["run", str(tiny_preset(tmp_path)), "--logs", str(tmp_path / "logs"),
                                 "--only", "mode=scratch", "--format", "json"])
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


def test_engine_never_imports_textual():
    code = "import sys, engine.cli, engine.worker, engine.runner, engine.runs, engine.stats, engine.report; " \
           "print(any(m == 'textual' or m.startswith('textual.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"
