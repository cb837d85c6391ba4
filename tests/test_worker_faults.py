"""Faults: nothing lost, nothing hangs, every error says what to do. Real workers, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from engine.core.events import Done, Epoch, Hello, MeterGap, PhaseStart, Progress, decode_event
from engine.store.run_log import list_runs, load_run
from tests.fakes.powercap import intel_server
from tests.helpers import REPO, TINY, run_worker, start_worker, the_run_dir, tiny_spec

LONG = {"epochs": 200, "synthetic_seconds": 60.0}


def cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **kwargs.pop("env", {})}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
        **kwargs,
    )


def preset_file(tmp_path: Path, **settings) -> Path:
    values = {**TINY, **settings}
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items() if k not in ("dataset", "size"))
    path = tmp_path / "p.toml"
    path.write_text(f"# test\n[matrix]\nmode = ['scratch']\n[settings]\n{body}\n")
    return path


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def training_worker(logs: Path) -> psutil.Process:
    """The worker of the only run in `logs`, once it is training."""

    def ready():
        runs = list_runs(logs)
        if (
            runs
            and runs[0].last_phase == "train"
            and runs[0].manifest.pid
            and '"type":"progress"' in (runs[0].path / "events.jsonl").read_text()
        ):
            return psutil.Process(runs[0].manifest.pid)
        return None

    return wait_for(ready, what="the worker to start training")


def test_sigkilled_worker_is_crashed_with_its_events_and_the_cli_exits_1(tmp_path):
    logs = tmp_path / "logs"
    proc = cli("run", str(preset_file(tmp_path, **LONG)), "--logs", str(logs))
    worker = training_worker(logs)
    worker.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    crash_lines = [line for line in err.splitlines() if "crashed" in line]
    assert len(crash_lines) == 1 and "SIGKILL" in crash_lines[0]
    assert "Traceback" not in err
    record = load_run(the_run_dir(logs))
    assert record.status == "crashed" and record.last_phase == "train"
    events = [decode_event(line) for line in (record.path / "events.jsonl").read_text().splitlines()]
    assert isinstance(events[0], Hello) and any(isinstance(e, Progress) for e in events)
    assert not psutil.pid_exists(worker.pid) or worker.status() == psutil.STATUS_ZOMBIE
    # `joulelab runs` lists it as crashed, with the phase it reached
    listing = cli("runs", "--logs", str(logs))
    assert "crashed (train)" in listing.communicate(timeout=60)[0]


def test_ctrl_c_cancels_the_run_keeps_partial_energy_and_leaves_no_process(tmp_path):
    logs = tmp_path / "logs"
    proc = cli("run", str(preset_file(tmp_path, **LONG)), "--logs", str(logs))
    worker = training_worker(logs)
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    wait_for(
        lambda: not psutil.pid_exists(worker.pid) or worker.status() == psutil.STATUS_ZOMBIE,
        timeout=2.5,
        what="the worker to be gone",
    )
    assert time.monotonic() - t0 < 5
    record = load_run(the_run_dir(logs))
    assert record.status == "cancelled"
    train = record.summary.phases["train"]
    assert train.partial is True and train.total.gross_j > 0 and train.total.source == "modelled"


def test_worker_finishes_its_run_when_the_reader_disappears(tmp_path):
    proc = start_worker(tiny_spec(tmp_path, epochs=3), stderr=subprocess.DEVNULL)
    for line in proc.stdout:
        if isinstance(decode_event(line), PhaseStart):
            break
    proc.stdout.close()  # the SSH session dropped: nobody reads the stream any more
    assert proc.wait(timeout=120) == 0
    record = load_run(the_run_dir(tmp_path))
    assert record.status == "complete" and record.summary.reader_lost is True
    lines = (record.path / "events.jsonl").read_text().splitlines()
    assert isinstance(decode_event(lines[-1]), Done)  # the log went on to the end


def test_two_runs_at_once_write_separate_uncorrupted_logs(tmp_path):
    results = []
    threads = [
        threading.Thread(target=lambda s=seed: results.append(run_worker(tiny_spec(tmp_path, seed=s))))
        for seed in (1, 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0]
    runs = list_runs(tmp_path)
    assert len(runs) == 2 and {r.status for r in runs} == {"complete"}
    for r in runs:
        events = [decode_event(line) for line in (r.path / "events.jsonl").read_text().splitlines()]
        assert {e.run for e in events} == {r.run_id}
        assert not list(r.path.glob(".summary.json*"))  # no temporary left behind


def test_an_unwritable_logs_directory_is_refused_before_training(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the logs directory should be")
    logs = blocker / "logs"
    proc = cli("run", str(preset_file(tmp_path)), "--logs", str(logs))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert str(logs) in err and "not writable" in err and "Traceback" not in err
    assert err.strip().count("\n") == 0
    # the worker refuses too, when started directly
    direct = run_worker(tiny_spec(logs))
    assert direct.returncode == 2 and "not writable" in direct.stderr


def test_a_meter_that_fails_mid_run_leaves_a_gap_in_events_and_summary(tmp_path):
    tree = intel_server(tmp_path / "sys", sockets=1)
    spec = tiny_spec(tmp_path / "logs", epochs=50, synthetic_seconds=40.0)
    proc = start_worker(spec, {"JOULELAB_POWERCAP_ROOT": str(tree.root)}, stderr=subprocess.DEVNULL)
    events = []
    removed = False
    for line in proc.stdout:
        event = decode_event(line)
        events.append(event)
        match event:
            case Hello():
                assert any(m["method"] == "rapl:package-0" for m in event.meters)
            case Progress() if not removed:
                tree.remove("intel-rapl:0")  # the package counter vanishes mid-training
                removed = True
            case Epoch() if event.epoch >= 2:
                proc.send_signal(signal.SIGTERM)  # enough: the gap has happened
    assert proc.wait(timeout=60) in (0, 130)
    gaps = [e for e in events if isinstance(e, MeterGap)]
    assert gaps and gaps[0].domain == "package-0" and "energy_uj" in gaps[0].reason
    summary = json.loads((the_run_dir(tmp_path / "logs") / "summary.json").read_text())
    assert "package-0" in summary["meter_gaps"]
    assert summary["phases"]["train"]["energy"]["package-0"]["gap"] is True
    assert summary["phases"]["train"]["energy"]["package-0"]["source"] == "counter"


@pytest.mark.parametrize("run_id", ["../etc", "no-such-run", "a/b"])
def test_run_ids_that_do_not_exist_or_escape_logs_are_refused(tmp_path, run_id):
    (tmp_path / "logs").mkdir()
    proc = cli("show", run_id, "--logs", str(tmp_path / "logs"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and "joulelab runs" in err


def test_export_to_an_unwritable_path_is_one_line_exit_2(tmp_path):
    logs = tmp_path / "logs"
    assert run_worker(tiny_spec(logs)).returncode == 0
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = cli("export", "--all", "--logs", str(logs), "--format", "csv", "-o", str(blocker / "out"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "cannot write the export" in err and "Traceback" not in err


def test_checkpoints_are_loaded_weights_only():
    source = (REPO / "engine" / "worker" / "source_networks.py").read_text()
    assert "weights_only=True" in source
    for path in (REPO / "engine").rglob("*.py"):
        text = path.read_text()
        assert "torch.load(" not in text or "weights_only=True" in text, path


def test_a_full_disk_is_refused_before_training(tmp_path):
    """A file-size limit makes every write past 2 KiB fail, as a full disk does (EFBIG here,
    ENOSPC there: both are the OSError that check_writable turns into one line)."""
    import resource

    def limit_writes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    logs = tmp_path / "logs"
    proc = cli(
        "run",
        str(preset_file(tmp_path)),
        "--logs",
        str(logs),
        preexec_fn=limit_writes,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert str(logs) in err and "not writable" in err and "Traceback" not in err
    assert not [p for p in logs.iterdir() if p.is_dir()]  # no run was started


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
        proc = cli("run", str(path), "--logs", str(tmp_path / "logs"))
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        # Missing data is refused before any run; data found but broken fails the run that reads it.
        what = "none was started" if data_dir.name == "nowhere" else "failed"
        assert len(lines) == 1 and what in lines[0] and "Traceback" not in err
        assert str(data_dir) in lines[0]
