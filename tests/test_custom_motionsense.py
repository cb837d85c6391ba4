"""The door proven on known data: MotionSense written into the custom format by
examples/motionsense_to_custom.py gives the built-in loader's splits, class counts and, seed for
seed, its accuracies."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from engine.core.spec import spec_from_dict
from tests.helpers import REPO, run_worker

GROUPS = {"source_group": ["1", "2"], "target_group": ["3", "4"]}
SUBJECTS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def data_dir(shared_data, tmp_path_factory):
    """A data folder with four subjects of MotionSense, and the same written as a custom dataset."""
    root = tmp_path_factory.mktemp("data")
    trial = root / "motionsense" / "A_DeviceMotion_data" / "wlk_7"
    trial.mkdir(parents=True)
    for s in SUBJECTS:
        shutil.copy(shared_data / "motionsense" / "A_DeviceMotion_data" / "wlk_7" / f"sub_{s}.csv", trial)
    script = REPO / "examples" / "motionsense_to_custom.py"
    subprocess.run([sys.executable, str(script), str(root / "motionsense"), str(root)], check=True, timeout=60)
    return root


def test_the_custom_route_gives_the_built_in_splits(data_dir):
    from engine.worker.data.prepare import prepare

    built_in, own = (
        prepare(spec_from_dict({"dataset": name, "data_dir": str(data_dir), **GROUPS}))
        for name in ("motionsense", "ms-own")
    )
    assert own.kind == built_in.kind == "windows"
    for task in ("source", "target"):
        a, b = getattr(built_in, task), getattr(own, task)
        assert a.classes == b.classes
        assert np.bincount(a.y_train).tolist() == np.bincount(b.y_train).tolist()
        assert np.bincount(a.y_test).tolist() == np.bincount(b.y_test).tolist()
        for part in ("x_train", "y_train", "x_test", "y_test"):
            assert np.array_equal(getattr(a, part), getattr(b, part)), (task, part)
    assert own.holdout_gap == 13  # ceil(window 128 / stride 10), the built-in's validation gap


@pytest.mark.slow
def test_the_custom_route_gives_the_built_in_accuracies(data_dir, tmp_path):
    tiny = {"mode": "transfer", "epochs": 1, "idle_s": 0, "test_min_s": 0, "reuse_source": False, "stride": 10}
    accuracies = []
    for name in ("motionsense", "ms-own"):
        spec = {"dataset": name, "data_dir": str(data_dir), "logs_dir": str(tmp_path / name), **GROUPS, **tiny}
        done = run_worker(spec)
        assert done.returncode == 0, done.stderr[-2000:]
        (run,) = (tmp_path / name).iterdir()
        summary = json.loads((run / "summary.json").read_text())
        accuracies.append((summary["metrics"]["accuracy_frac"], summary["metrics"]["source_accuracy_frac"]))
    assert accuracies[0] == accuracies[1]
