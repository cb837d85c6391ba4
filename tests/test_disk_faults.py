"""Logs that cannot be written: an unwritable or full logs directory is refused before training;
a disk that fills during a run stops it with its cause and a log readable to its last line; an
export that cannot be written is one line. Real workers, the real CLI."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from engine.core.events import AnyEvent, Hello, Sample, decode_event
from tests.helpers import (
    LONG,
    preset_file,
    run_worker,
    start_cli,
    the_run_dir,
    tiny_spec,
)

pytestmark = pytest.mark.slow  # real workers and the real CLI, in subprocesses


def test_an_unwritable_logs_directory_is_refused_before_training(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the logs directory should be")
    logs = blocker / "logs"
    proc = start_cli("run", str(preset_file(tmp_path)), "--logs", str(logs))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert str(logs) in err and "not writable" in err and "Traceback" not in err
    assert err.strip().count("\n") == 0
    # the worker refuses too, when started directly
    direct = run_worker(tiny_spec(logs))
    assert direct.returncode == 2 and "not writable" in direct.stderr


def test_a_full_disk_is_refused_before_training(tmp_path):
    """A file-size limit makes every write past 2 KiB fail, as a full disk does (EFBIG here,
    ENOSPC there: both are the OSError that check_writable turns into one line)."""
    import resource

    def limit_writes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    logs = tmp_path / "logs"
    proc = start_cli(
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


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def check_log_readable_to_the_last_line(run_path: Path) -> list[AnyEvent]:
    text = (run_path / "events.jsonl").read_text()
    assert text.endswith("\n")
    return [decode_event(line) for line in text.splitlines()]  # every line whole


def test_a_log_that_cannot_grow_mid_run_stops_the_run_with_its_cause(tmp_path):
    logs = tmp_path / "logs"
    cache = tmp_path / "cache"
    proc = start_cli(
        "run",
        str(preset_file(tmp_path, sample_hz=100.0, **LONG)),
        "--logs",
        str(logs),
        preexec_fn=_limit_file_size(40_000),
        env={"PYTHONDONTWRITEBYTECODE": "1", "JOULELAB_CACHE": str(cache)},
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if "failed" in x]
    assert len(line) == 1 and "file too large while writing" in line[0] and "events.jsonl" in line[0]
    run_path = the_run_dir(logs)
    events = check_log_readable_to_the_last_line(run_path)
    assert any(isinstance(e, Sample) for e in events)
    summary = json.loads((run_path / "summary.json").read_text())  # small enough to fit the limit
    assert summary["status"] == "failed" and "events.jsonl" in summary["error"]
    assert "while writing" in (run_path / "stderr.log").read_text()


def test_a_full_tmpfs_as_logs_stops_the_run_with_no_space_left_and_a_readable_log(tmp_path):
    """The reported case: a small tmpfs as --logs (300 KB there, 120 KB here to fill sooner),
    sampling at 100 Hz; stderr.log is on it too."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        proc = start_cli(
            "run",
            str(preset_file(tmp_path, sample_hz=100.0, **LONG)),
            "--logs",
            str(mnt),
            "--format",
            "json",
            env={"JOULELAB_CACHE": str(tmp_path / "cache")},
        )
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        assert "Traceback" not in err
        (run,) = json.loads(out)["runs"]
        # the worker stopped itself with its exit code for an unwritable log, and said why
        assert (run["status"], run["exit_code"]) == ("failed", 3)
        assert "no space left on device while writing" in run["error"] and "events.jsonl" in run["error"]
        events = check_log_readable_to_the_last_line(the_run_dir(mnt))
        assert isinstance(events[0], Hello) and any(isinstance(e, Sample) for e in events)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_export_to_an_unwritable_path_is_one_line_exit_2(tmp_path):
    logs = tmp_path / "logs"
    assert run_worker(tiny_spec(logs)).returncode == 0
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = start_cli("export", "--all", "--logs", str(logs), "--format", "csv", "-o", str(blocker / "out"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "cannot write the export" in err and "Traceback" not in err
