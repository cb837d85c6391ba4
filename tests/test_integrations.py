"""Where researchers already look: MLflow runs, live Prometheus metrics, CodeCarbon's emissions.csv.

MLflow is exercised against a real local tracking store (sqlite in tmp_path) and read back with
MLflow's own client; Prometheus by scraping a real run's /metrics over HTTP; CodeCarbon by the
column list of its current EmissionsData, written out literally here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.core.events import Done, MeterGap, PhaseStart, Sample
from engine.core.run_files import EVENTS
from engine.orchestrate.presets import PresetError, parse
from engine.outputs.export import MLFLOW_RUN_ID_TAG, write
from engine.outputs.prometheus import MetricsServer
from engine.store.run_log import list_runs, read_events, run_dirs
from tests.helpers import REPO, TINY

GOLDEN_LOGS = REPO / "tests" / "golden" / "logs"
runner = CliRunner()

# codecarbon 3.3.2, codecarbon/output_methods/emissions_data.py: EmissionsData's fields in order
CODECARBON_3_COLUMNS = [
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- MLflow ----------------------------------------------------------------------------------------


def mlflow_state(client, experiment_id):
    """Everything MLflow holds for an experiment, comparable between two exports."""
    out = {}
    for run in client.search_runs([experiment_id]):
        rid = run.info.run_id
        histories = {k: sorted((m.step, m.value) for m in client.get_metric_history(rid, k)) for k in run.data.metrics}
        out[rid] = (
            run.data.params,
            run.data.metrics,
            run.data.tags,
            histories,
            run.info.status,
            sorted(a.path for a in client.list_artifacts(rid)),
        )
    return out


def test_mlflow_export_of_the_golden_runs_reads_back_and_a_second_export_changes_nothing(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts beside the store, as `mlflow ui` expects
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        "export",
        "--all",
        "--logs",
        str(GOLDEN_LOGS),
        "--format",
        "mlflow",
        "--tracking-uri",
        uri,
        "--experiment",
        "golden",
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "golden-transfer: logged as MLflow run" in first.stdout

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("golden")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    records = {r.run_id: r for r in list_runs(GOLDEN_LOGS)}
    for run in runs:
        record = records[run.data.tags[MLFLOW_RUN_ID_TAG]]
        s = record.summary
        data = run.data
        assert run.info.run_name == record.run_id and run.info.status == "FINISHED"
        # the spec as parameters
        assert data.params["mode"] == record.spec["mode"] and data.params["epochs"] == str(record.spec["epochs"])
        assert set(data.params) == set(record.spec)
        # per phase gross, idle, net joules, each with its source and method
        for phase, p in s.phases.items():
            for q in ("gross_j", "idle_j", "net_j"):
                assert data.metrics[f"energy/{phase}/{q}"] == pytest.approx(getattr(p.total, q))
            assert data.tags[f"energy/{phase}.source"] == "modelled"
            for domain, e in p.energy.items():
                assert data.metrics[f"energy/{phase}/{domain}/net_j"] == pytest.approx(e.net_j)
                assert data.tags[f"energy/{phase}/{domain}.source"] == e.source
                assert data.tags[f"energy/{phase}/{domain}.method"] == e.method
        m = s.metrics
        assert data.metrics["accuracy"] == pytest.approx(m.accuracy_frac)
        assert data.metrics["f1_macro"] == pytest.approx(m.f1_macro_frac)
        assert data.metrics["j_per_train_sample"] == pytest.approx(m.j_per_train_sample.value)
        assert data.metrics["j_per_inference"] == pytest.approx(m.j_per_inference.value)
        assert data.tags["j_per_inference.source"] == "modelled"
        assert data.tags["joulelab.synthetic"] == "true"
        # the energy-to-accuracy curve: one step per epoch
        train_curve = [p for p in s.curve if p.phase == "train"]
        history = client.get_metric_history(run.info.run_id, "curve/train/cumulative_j")
        assert sorted((h.step, h.value) for h in history) == pytest.approx(
            [(p.epoch, p.cumulative_j) for p in train_curve]
        )
        assert len(client.get_metric_history(run.info.run_id, "curve/train/val_accuracy")) == len(train_curve)
        assert data.tags["curve/train.source"] == "modelled"
        # summary.json and run.json as artifacts, byte for byte
        assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["run.json", "summary.json"]
        local = Path(client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path / run.info.run_id)))
        assert local.read_bytes() == (record.path / "summary.json").read_bytes()

    before = mlflow_state(client, experiment.experiment_id)
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert second.stdout.count("already logged; unchanged") == 2
    assert mlflow_state(client, experiment.experiment_id) == before


def test_mlflow_not_installed_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    result = runner.invoke(app, ["export", "--all", "--logs", str(GOLDEN_LOGS), "--format", "mlflow"])
    assert result.exit_code == 2
    assert "pip install 'joulelab[mlflow]'" in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_mlflow_bad_tracking_uri_is_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        [
            "export",
            "golden-scratch",
            "--logs",
            str(GOLDEN_LOGS),
            "--format",
            "mlflow",
            "--tracking-uri",
            "nosuchscheme://x",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "cannot log to MLflow at nosuchscheme://x" in result.stderr and "Traceback" not in result.output


# --- Prometheus ------------------------------------------------------------------------------------


def test_metrics_follow_a_runs_events_and_end_at_its_phase_energies():
    """Fed the golden run's events, the counters hold the summary's gross joules per phase."""
    (record,) = [r for r in list_runs(GOLDEN_LOGS) if r.run_id == "golden-transfer"]
    events, _ = read_events(record.path / EVENTS)
    metrics = MetricsServer(port=1)  # never started: only its registry is read
    metrics.begin(record.run_id, "synthetic/small/transfer/baseline", record.spec["sample_hz"])
    for event in events:
        metrics.observe(event)
    value = metrics.registry.get_sample_value
    labels = {"run_id": record.run_id, "configuration": "synthetic/small/transfer/baseline"}
    for phase, p in record.summary.phases.items():
        for domain, e in p.energy.items():
            got = value(
                "joulelab_energy_joules_total",
                {
                    **labels,
                    "phase": phase,
                    "domain": domain,
                    "kind": e.kind,
                    "source": e.source,
                    "method": e.method,
                },
            )
            assert got == pytest.approx(e.gross_j) if e.gross_j > 0 else got in (None, 0.0)
    last = [e for e in events if isinstance(e, Sample)][-1].domains
    assert value(
        "joulelab_power_watts", {**labels, "domain": "dram", "kind": "dram", "source": "modelled"}
    ) == pytest.approx(last["dram"]["w"])
    assert value("joulelab_run_state", {**labels, "joulelab_run_state": "complete"}) == 1.0
    assert value("joulelab_run_state", {**labels, "joulelab_run_state": "test"}) == 0.0
    assert value("joulelab_samples_dropped_total", labels) is not None


def test_metrics_count_dropped_samples_and_meter_gaps():
    metrics = MetricsServer(port=1)
    metrics.begin("r1", "c", sample_hz=10.0)
    sample = {"cpu": {"w": 5.0, "j": 1.0, "source": "counter", "method": "rapl:package-0"}}
    for t in (0.0, 0.1, 0.5):  # 0.1 -> 0.5 s at 10 Hz: three samples skipped
        metrics.observe(Sample(run="r1", t=t, domains=sample))
    metrics.observe(MeterGap(run="r1", t=0.6, domain="cpu", reason="EIO"))
    metrics.observe(Sample(run="other", t=0.6, domains=sample))  # not begun: ignored
    value = metrics.registry.get_sample_value
    assert value("joulelab_samples_dropped_total", {"run_id": "r1", "configuration": "c"}) == 3.0
    assert value("joulelab_meter_gaps_total", {"run_id": "r1", "configuration": "c", "domain": "cpu"}) == 1.0
    assert value("joulelab_samples_dropped_total", {"run_id": "other", "configuration": "c"}) is None


def test_a_stalled_run_reads_stalled_in_the_metrics():
    """The runner ends a silent worker as stalled (a done event it writes itself); the state must
    say so, not stay at the phase the worker went silent in."""
    metrics = MetricsServer(port=1)
    metrics.begin("r1", "c", sample_hz=10.0)
    metrics.observe(PhaseStart(run="r1", t=0.0, phase="train"))
    metrics.observe(Done(run="r1", t=1.0, status="stalled"))
    labels = {"run_id": "r1", "configuration": "c"}
    value = metrics.registry.get_sample_value
    assert value("joulelab_run_state", {**labels, "joulelab_run_state": "stalled"}) == 1.0
    assert value("joulelab_run_state", {**labels, "joulelab_run_state": "train"}) == 0.0


def tiny_preset(tmp_path: Path, extra: str = "") -> Path:
    # idle_s = 1: the run stays in its idle phase long enough to be scraped on a busy machine
    settings = {**TINY, "idle_s": 1.0}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items() if k not in ("dataset", "size"))
    path = tmp_path / "tiny.toml"
    path.write_text(f"# tiny\n[preset]\nname = 'tiny'\n{extra}\n[matrix]\nmode = ['scratch']\n[settings]\n{lines}\n")
    return path


def scrape(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@pytest.mark.slow
def test_a_real_run_serves_live_metrics_then_closes_the_port_and_logs_itself_to_mlflow(tmp_path):
    port = free_port()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    preset = tiny_preset(tmp_path, f"mlflow = true\nmlflow_tracking_uri = '{uri}'\nmlflow_experiment = 'live'")
    logs = tmp_path / "logs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(preset), "--logs", str(logs), "--metrics-port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    seen = None
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        text = scrape(url)
        if text and "joulelab_energy_joules_total{" in text and "joulelab_power_watts{" in text:
            seen = text
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert seen is not None, f"no live metrics scraped while the run executed\n{out}\n{err}"
    (run_dir,) = run_dirs(logs)  # the run, not the plan record (.plans)
    run_id = run_dir.name
    config = 'configuration="synthetic/small/scratch/baseline"'
    mine = [line for line in seen.splitlines() if f'run_id="{run_id}"' in line and config in line]
    assert any(
        line.startswith("joulelab_power_watts{")
        and 'domain="cpu"' in line
        and 'kind="cpu"' in line
        and 'source="modelled"' in line
        for line in mine
    ), seen
    assert any(
        line.startswith("joulelab_energy_joules_total{")
        and 'phase="idle"' in line
        and 'source="modelled"' in line
        and 'domain="dram"' in line
        for line in mine
    ), seen
    assert any(line.startswith("joulelab_run_state{") and line.endswith(" 1.0") for line in mine), seen
    assert any(line.startswith("joulelab_samples_dropped_total{") for line in mine), seen
    # after the run the port is closed
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    # mlflow = true: the run was logged as it completed
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.search_runs(
        [client.get_experiment_by_name("live").experiment_id], filter_string=f"tags.`{MLFLOW_RUN_ID_TAG}` = '{run_id}'"
    )
    assert len(found) == 1 and found[0].data.metrics["energy/train/gross_j"] > 0
    assert f"logged {run_id} to MLflow" in out


def test_metrics_port_in_use_is_one_line_exit_2_before_any_run(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        logs = tmp_path / "logs"
        result = runner.invoke(
            app, ["run", str(tiny_preset(tmp_path)), "--logs", str(logs), "--metrics-port", str(port)]
        )
    assert result.exit_code == 2, result.output
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.output
    assert not logs.exists() or not any(p.is_dir() for p in logs.iterdir())  # no run started
    bad = runner.invoke(app, ["run", str(tiny_preset(tmp_path)), "--metrics-port", "70000"])
    assert bad.exit_code == 2 and "out of range" in bad.stderr


def test_the_lab_takes_a_metrics_port_and_passes_it_to_its_plan_runner(monkeypatch):
    import tui.app
    from tui.cli import app as lab_cli  # `joulelab` with no command opens the lab

    calls = []
    monkeypatch.setattr(tui.app, "run_app", lambda **kwargs: calls.append(kwargs))
    assert runner.invoke(lab_cli, ["--metrics-port", "9464"]).exit_code == 0
    assert calls[0]["metrics_port"] == 9464 and calls[0]["metrics_addr"] == "127.0.0.1"
    assert runner.invoke(lab_cli, ["--metrics-port", "9464", "--metrics-addr", "0.0.0.0"]).exit_code == 0
    assert calls[1]["metrics_addr"] == "0.0.0.0"
    alone = runner.invoke(lab_cli, ["--metrics-addr", "0.0.0.0"])
    assert alone.exit_code == 2 and "--metrics-addr needs --metrics-port" in alone.stderr
    lab = tui.app.JouleLabApp(metrics_port=9464, metrics_addr="127.0.0.1", preset_paths=[])
    assert (lab.metrics_port, lab.metrics_addr) == (9464, "127.0.0.1")
    (server,) = lab.plan_observers()  # a fresh server for each plan, started and stopped by its PlanRunner
    assert isinstance(server, MetricsServer) and server.url == "http://127.0.0.1:9464/metrics"
    assert tui.app.JouleLabApp(preset_paths=[]).plan_observers() == []


def test_preset_integration_settings_are_checked():
    base = {"matrix": {"mode": ["scratch"]}}
    loaded = parse({**base, "preset": {"mlflow": True, "mlflow_experiment": "e", "metrics_port": 9464}}, Path("p.toml"))
    assert (loaded.mlflow, loaded.mlflow_experiment, loaded.metrics_port, loaded.metrics_addr) == (
        True,
        "e",
        9464,
        None,
    )
    assert parse(base, Path("p.toml")).mlflow is False
    with pytest.raises(PresetError, match=r"p.toml: \[preset\] metrics_port: expected a port number"):
        parse({**base, "preset": {"metrics_port": 0}}, Path("p.toml"))
    with pytest.raises(PresetError, match=r"\[preset\] mlflow: expected true or false"):
        parse({**base, "preset": {"mlflow": "yes"}}, Path("p.toml"))
    with pytest.raises(PresetError, match="did you mean 'metrics_port'"):
        parse({**base, "preset": {"metric_port": 1}}, Path("p.toml"))


# --- CodeCarbon ------------------------------------------------------------------------------------


def test_codecarbon_export_has_codecarbon_3_columns_and_reads_back(tmp_path):
    records = list_runs(GOLDEN_LOGS)
    (path,) = write(records, "codecarbon", tmp_path)
    header = path.read_text().splitlines()[0].split(",")
    assert header == [*CODECARBON_3_COLUMNS, "joulelab_energy_source"]
    df = pd.read_csv(path, usecols=CODECARBON_3_COLUMNS)  # how CodeCarbon's dashboard loads the file
    assert list(df.columns) == CODECARBON_3_COLUMNS and len(df) == 2
    # what JouleLab does not measure is empty, not invented
    for col in (
        "water_consumed",
        "wue",
        "cpu_utilization_percent",
        "gpu_utilization_percent",
        "ram_utilization_percent",
        "ram_used_gb",
    ):
        assert df[col].isna().all(), col
    assert (df["energy_consumed"] > 0).all() and set(df["run_id"]) == {"golden-transfer", "golden-scratch"}


@pytest.mark.slow
def test_integrations_are_imported_only_when_used():
    """mlflow takes seconds to import: importing the CLI, exporter or metrics server must not."""
    code = (
        "import sys, engine.cli, engine.outputs.export, engine.orchestrate.plan_runner, "
        "engine.outputs.prometheus, engine.orchestrate.presets; "
        "print(sorted(m for m in ('mlflow', 'prometheus_client', 'textual', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
