"""Damaged and big histories: real logs (copies of the golden logs),
damaged the way disks and people damage them; every command names what it skips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.store.run_log import list_runs

GOLDEN = Path(__file__).parent / "golden" / "logs"
runner = CliRunner()


def copy_run(logs: Path, source: str, run_id: str, seed: int = 0) -> Path:
    out = logs / run_id
    shutil.copytree(GOLDEN / source, out)
    for name in ("run.json", "summary.json"):
        data = json.loads((out / name).read_text())
        data["run_id"] = run_id
        data["spec"]["seed"] = seed
        (out / name).write_text(json.dumps(data, indent=2))
    return out


@pytest.fixture()
def history(tmp_path) -> Path:
    """Four runs of one configuration: two whole, one with a truncated summary.json, one without
    its run.json; and one that crashed (no summary at all, an honest status)."""
    logs = tmp_path / "logs"
    for i, rid in enumerate(["a-good", "b-good", "c-truncated", "d-no-runjson", "e-crashed"]):
        copy_run(logs, "golden-scratch", rid, seed=i)
    summary = logs / "c-truncated" / "summary.json"
    summary.write_text(summary.read_text()[:700])
    (logs / "d-no-runjson" / "run.json").unlink()
    (logs / "e-crashed" / "summary.json").unlink()
    return logs


def invoke(*args: str):
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert "Traceback" not in result.output
    return result


def skipped_lines(output: str) -> dict[str, str]:
    return {line.split()[2].rstrip(":"): line for line in output.splitlines() if line.startswith("skipped run ")}


def test_the_store_tells_damaged_from_missing(history):
    by_id = {r.run_id: r for r in list_runs(history)}
    assert by_id["c-truncated"].status == "damaged" and "summary.json is truncated" in by_id["c-truncated"].problem
    assert by_id["d-no-runjson"].status == "damaged" and "run.json is missing" in by_id["d-no-runjson"].problem
    assert by_id["e-crashed"].status == "crashed" and by_id["e-crashed"].problem is None
    assert by_id["e-crashed"].last_phase == "test"  # read from the end of its events.jsonl
    assert {by_id[r].status for r in ("a-good", "b-good")} == {"complete"}


def test_compare_names_every_run_it_leaves_out(history):
    result = invoke(
        "compare",
        "a-good",
        "b-good",
        "c-truncated",
        "d-no-runjson",
        "e-crashed",
        "--logs",
        str(history),
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    skipped = skipped_lines(result.output)
    assert set(skipped) == {"c-truncated", "d-no-runjson", "e-crashed"}
    assert "summary.json is truncated" in skipped["c-truncated"] and "run.json is missing" in skipped["d-no-runjson"]
    data = json.loads(result.stdout[result.stdout.index("{") :])
    assert [c["trials"] for c in data["configs"]] == [2]  # both whole runs, and only they


@pytest.mark.parametrize("fmt", ["csv", "codecarbon"])
def test_export_all_never_exports_a_damaged_run_as_data(history, tmp_path, fmt):
    out = tmp_path / "out"
    result = invoke("export", "--all", "--format", fmt, "-o", str(out), "--logs", str(history))
    assert result.exit_code == 0, result.output
    assert set(skipped_lines(result.output)) == {"c-truncated", "d-no-runjson"}
    if fmt == "csv":
        runs = pd.read_csv(out / "runs.csv")
        assert set(runs.run_id) == {"a-good", "b-good", "e-crashed"}  # a crash is a real status, kept
        assert set(pd.read_csv(out / "phases.csv").run_id) == {"a-good", "b-good"}
    else:
        cc = pd.read_csv(out / "emissions.csv")
        assert set(cc.run_id) == {"a-good", "b-good"}  # no 0 kWh row for a run with nothing measured
        assert (cc.energy_consumed > 0).all()


def test_show_tells_a_truncated_summary_from_a_missing_one(history):
    truncated = invoke("show", "c-truncated", "--logs", str(history))
    assert truncated.exit_code == 1
    assert "damaged: summary.json is truncated or not valid JSON" in truncated.output
    missing = invoke("show", "e-crashed", "--logs", str(history))
    assert missing.exit_code == 0 and "summary.json is missing" in missing.output


def test_runs_lists_damaged_runs_as_damaged_and_says_why(history):
    result = invoke("runs", "--logs", str(history))
    assert result.exit_code == 0
    assert set(skipped_lines(result.output)) == {"c-truncated", "d-no-runjson"}
    assert result.output.count("damaged") >= 2 and "crashed (test)" in result.output


def test_runs_reads_only_the_newest_it_shows_and_export_streams_every_run(tmp_path, monkeypatch):
    from engine.outputs import export
    from engine.store import run_log as store

    logs = tmp_path / "logs"
    for i in range(7):
        copy_run(logs, "golden-transfer" if i % 2 else "golden-scratch", f"run-{i:02d}", seed=i)
    loaded = []
    real_load = store.load_run
    monkeypatch.setattr(store, "load_run", lambda p, light=False: loaded.append(p.name) or real_load(p, light))
    monkeypatch.setattr("engine.cli.RUNS_SHOWN", 3)
    result = invoke("runs", "--logs", str(logs))
    assert sorted(loaded) == ["run-04", "run-05", "run-06"]
    assert "the newest 3 of 7 runs" in result.output
    monkeypatch.setattr(export, "CHUNK_RUNS", 2)  # four chunks: each written after the last
    out = tmp_path / "out"
    assert invoke("export", "--all", "--format", "parquet", "-o", str(out), "--logs", str(logs)).exit_code == 0
    import pyarrow.parquet as pq

    runs = pq.ParquetFile(out / "runs.parquet")
    assert runs.metadata.num_row_groups == 4 and runs.metadata.num_rows == 7
    assert pq.read_table(out / "samples.parquet").num_rows > 0
    csv_out = tmp_path / "csv"
    assert invoke("export", "--all", "--format", "csv", "-o", str(csv_out), "--logs", str(logs)).exit_code == 0
    assert sorted(pd.read_csv(csv_out / "runs.csv").run_id) == [f"run-{i:02d}" for i in range(7)]


def test_a_run_whose_pid_was_reused_is_not_running(tmp_path):
    """`runs` and the lab's follow must agree: a live pid with another start time is another
    program that reused the pid, so the run it was recorded for is no longer running."""
    import os

    import psutil

    from engine.core.run_files import RUN_JSON
    from engine.store.run_log import load_run

    me = psutil.Process(os.getpid()).create_time()
    for name, started, status in (("same", me, "running"), ("reused", me - 1000.0, "crashed")):
        run = tmp_path / name
        run.mkdir()
        (run / RUN_JSON).write_text(
            json.dumps({"run_id": name, "spec": {}, "pid": os.getpid(), "pid_started": started})
        )
        assert load_run(run).status == status, name


def test_show_says_how_many_event_lines_it_skipped(tmp_path):
    """A run whose events.jsonl holds lines that are not events: `show` says so in one line."""
    logs = tmp_path / "logs"
    run = copy_run(logs, "golden-transfer", "garbled")
    with (run / "events.jsonl").open("a") as f:
        f.write('not an event\n{"v": 99}\n')
    result = invoke("show", "garbled", "--logs", str(logs))
    assert result.exit_code == 0, result.output
    assert "2 lines of" in result.output and "could not be read as events (skipped)" in result.output
