"""The lab on a dataset and a network of the user's own: the Lab tab lists the dataset beside the
built-in ones, the network (from networks.toml in the lab's config folder) beside small and big,
and runs them with the real worker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import Select

from engine.orchestrate.worker_process import worker_command
from engine.store.run_log import list_runs
from tests.test_custom_networks import NETS
from tests.tui.conftest import make_app, press, wait_for, wait_settled
from tui.app import describe_real_datasets

pytestmark = pytest.mark.slow


async def test_the_lab_runs_a_custom_dataset_on_a_custom_network(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "nets.py").write_text(NETS)
    config = tmp_path / "config"
    config.mkdir()
    (config / "networks.toml").write_text(f'[networks.mine]\nmodel = "nets:tiny"\npath = "{tmp_path}"\n')
    monkeypatch.setenv("JOULELAB_CONFIG", str(config))
    label = np.repeat(np.arange(4), 30)
    x = (np.random.default_rng(0).normal(size=(len(label), 2, 16)) + label[:, None, None]).astype(np.float32)
    (tmp_path / "data" / "custom" / "wave").mkdir(parents=True)
    np.savez(tmp_path / "data" / "custom" / "wave" / "data.npz", x=x, label=label)

    logs = tmp_path / "logs"
    app = make_app(logs, worker_command(), data_dir=str(tmp_path / "data"), datasets=describe_real_datasets)
    async with app.run_test(size=(160, 50)) as pilot:
        dataset, size = app.form.query_one("#dataset", Select), app.form.query_one("#size", Select)
        await wait_for(pilot, lambda: any(value == "wave" for _, value in dataset._options), 30, "the custom dataset")
        assert ("mine small (nets:tiny)", "mine/small") in size._options
        dataset.value, size.value = "wave", "mine/small"
        await pilot.pause()
        await press(pilot, "r")  # transfer vs scratch, one trial
        await wait_settled(pilot, app, timeout=120)

    runs = list_runs(logs)
    assert [r.status for r in runs] == ["complete", "complete"]
    keys = sorted(r.summary.config for r in runs)  # a user network by its factory's name
    assert keys == ["wave/tiny-small/scratch/baseline", "wave/tiny-small/transfer/baseline"]
    network = json.loads((runs[0].path / "run.json").read_text())["network"]
    assert network["model"] == "nets:tiny" and network["model_dir"] == str(tmp_path)
