"""The power-limit mechanism in a real worker subprocess, with a fake CUDA GPU (tests/fakes/fake_cuda.py)
and the fake NVML, whose power limits live in a file as a GPU's outlive a process: the limit set
and read back before the idle baseline, put back after success, failure and cancel; refused in one
line before any metered phase; and the record a SIGKILL leaves, reported by the next run and put
back by `joulelab meters --restore-power-limit`."""

import json
import os
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.core.events import Error, PhaseStart
from engine.worker import power_limit
from tests.fakes.fake_pynvml import FakeGpu, FakeNvml, make_fake_pynvml
from tests.helpers import LONG, REPO, events_in, the_run_dir, tiny_spec, training_worker

UUID = "GPU-aaaaaaaa-0000-0000-0000-000000000000"  # a fake A100: default 400 W, range 100-400 W

WORKER = """
import sys
sys.path.insert(0, {repo!r})
from tests.fakes.fake_pynvml import FakeGpu, FakeNvml, make_fake_pynvml
from tests.fakes import fake_cuda
state = FakeNvml(gpus=[FakeGpu(uuid={uuid!r}, set_limit_error={set_error!r})], limits_file={limits!r})
sys.modules["pynvml"] = make_fake_pynvml(state)
fake_cuda.install({syncs!r}, uuid={uuid!r}, cuda={cuda!r})
import engine.worker.main as worker
if {fail!r}:
    def train(self, *args):
        raise RuntimeError("training broke")
    worker.Run.train = train
sys.exit(worker.main(["--spec", {spec!r}]))
"""


def start(
    tmp_path, spec: dict, *, set_error: int | None = None, fail: bool = False, cuda: bool = True
) -> subprocess.Popen:
    spec_file = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*.json')))}.json"
    spec_file.write_text(json.dumps(spec))
    code = WORKER.format(
        repo=str(REPO),
        uuid=UUID,
        set_error=set_error,
        limits=str(tmp_path / "gpu-limits.json"),
        syncs=str(tmp_path / "syncs.log"),
        fail=fail,
        cuda=cuda,
        spec=str(spec_file),
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def gpu_limit_mw(tmp_path) -> int | None:
    """The fake GPU's power limit now (None: never set, so still its 400 W)."""
    path = tmp_path / "gpu-limits.json"
    return json.loads(path.read_text())[UUID] if path.exists() else None


def records(run) -> tuple[dict, dict]:
    return json.loads((run / "run.json").read_text()), json.loads((run / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["complete", "failed"])
def test_the_limit_is_set_read_back_and_put_back(tmp_path, ending):
    logs = tmp_path / "logs"
    code, out, err = finish(
        start(tmp_path, tiny_spec(logs, power_limit_fraction=0.5, idle_s=0.0, test_min_s=0.0), fail=ending == "failed")
    )
    assert code == (0 if ending == "complete" else 1), err
    manifest, summary = records(the_run_dir(logs))
    assert summary["status"] == ending and summary["config"] == "synthetic/small/scratch/power-limit-x0.5"
    limit = summary["power_limit"]
    assert (limit["asked"], limit["asked_w"], limit["set_w"], limit["previous_w"]) == ("0.5 x default", 200, 200, 400)
    assert (limit["default_w"], limit["range_w"], limit["uuid"]) == (400, [100, 400], UUID)
    assert (limit["restored"], limit["restored_w"], limit["restore_error"]) == (True, 400, None)
    assert manifest["power_limit"] == limit
    shown = CliRunner().invoke(app, ["show", summary["run_id"], "--logs", str(logs)], env={"COLUMNS": "200"})
    assert "GPU power limit: 0.5 x default (200 W), read back 200 W; previous 400 W, put back" in shown.stdout
    assert gpu_limit_mw(tmp_path) == 400_000  # the GPU is back at its limit
    assert power_limit.read_leftovers() == ([], [])  # and no record is left


@pytest.mark.slow
def test_the_limit_is_put_back_after_a_cancel(tmp_path):
    logs = tmp_path / "logs"
    proc = start(tmp_path, tiny_spec(logs, power_limit_w=250, **LONG))
    training_worker(logs)
    assert gpu_limit_mw(tmp_path) == 250_000  # set while it trains
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 130, err
    _, summary = records(the_run_dir(logs))
    assert summary["status"] == "cancelled" and summary["power_limit"]["restored"] is True
    assert gpu_limit_mw(tmp_path) == 400_000
    assert power_limit.read_leftovers() == ([], [])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("asked", "set_error", "cuda", "message"),
    [
        ({"power_limit_w": 300}, 4, True, "no permission to set its power limit"),  # NVML_ERROR_NO_PERMISSION
        ({"power_limit_w": 450}, None, True, "450 W (450 W) is outside the range GPU 0 (NVIDIA A100-SXM4-40GB) allows"),
        ({"power_limit_fraction": 0.8}, None, False, "a GPU power limit is not applicable on the CPU"),
    ],
)
def test_a_limit_that_cannot_be_set_is_refused_before_anything_is_metered(tmp_path, asked, set_error, cuda, message):
    logs = tmp_path / "logs"
    code, out, err = finish(start(tmp_path, tiny_spec(logs, **asked), set_error=set_error, cuda=cuda))
    assert code == 2 and "Traceback" not in err
    events = events_in(out)
    [error] = [e for e in events if isinstance(e, Error)]
    assert error.message.startswith("power-limit: ") and message in error.message and "\n" not in error.message
    assert not [e for e in events if isinstance(e, PhaseStart)]
    assert gpu_limit_mw(tmp_path) is None  # never set
    assert power_limit.read_leftovers() == ([], [])


@pytest.mark.slow
def test_a_killed_run_leaves_a_record_that_the_next_run_and_meters_report(tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    proc = start(tmp_path, tiny_spec(logs / "killed", power_limit_w=200, **LONG))
    killed = training_worker(logs / "killed")
    proc.kill()  # SIGKILL: nothing is put back
    finish(proc)
    assert gpu_limit_mw(tmp_path) == 200_000
    [left], _ = power_limit.read_leftovers()
    assert (left.uuid, left.limit_w, left.previous_w, left.pid) == (UUID, 200, 400, killed.pid)
    line = power_limit.leftover_line(left)

    # the next run on the GPU says so, in its log and run.json, before its idle baseline, and runs
    code, _, err = finish(start(tmp_path, tiny_spec(logs / "next", idle_s=0.0, test_min_s=0.0)))
    assert code == 0, err
    manifest, summary = records(the_run_dir(logs / "next"))
    assert manifest["power_limit_leftover"] == summary["power_limit_leftover"] == [line]
    assert f"joulelab worker: {line}" in err.splitlines()
    # a power-limit run on that GPU is refused until the limit is put back
    code, out, _ = finish(start(tmp_path, tiny_spec(logs / "refused", power_limit_w=300)))
    assert code == 2
    [error] = [e for e in events_in(out) if isinstance(e, Error)]
    assert error.message == line + ", then start this run again"
    assert gpu_limit_mw(tmp_path) == 200_000

    # `joulelab meters --restore-power-limit` puts it back, on the same (fake) GPU
    state = FakeNvml(gpus=[FakeGpu(uuid=UUID)], limits_file=str(tmp_path / "gpu-limits.json"))
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(state))
    result = CliRunner().invoke(app, ["meters", "--restore-power-limit"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "power limit 200 W -> 400 W" in result.stdout
    assert gpu_limit_mw(tmp_path) == 400_000 and power_limit.read_leftovers() == ([], [])
