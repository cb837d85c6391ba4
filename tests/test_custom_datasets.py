"""Datasets of the user's own (engine.worker.data.custom): `joulelab data` lists them with their
shapes, and names the file and the fix of each one that cannot be used (exit 2)."""

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli import app

runner = CliRunner()


def windows(n_classes=4, per_class=20):
    rng = np.random.default_rng(0)
    label = np.repeat(np.arange(n_classes), per_class)
    x = rng.normal(size=(len(label), 3, 16)).astype(np.float32)
    return {"x": x, "label": label, "time": np.tile(np.arange(per_class) * 4, n_classes)}


def write(data_dir, name, **arrays):
    folder = data_dir / "custom" / name
    folder.mkdir(parents=True)
    np.savez(folder / "data.npz", **arrays)
    return folder / "data.npz"


def test_data_lists_windows_and_feature_datasets_with_their_shapes(tmp_path):
    write(tmp_path, "wave", **windows())
    folder = tmp_path / "custom" / "rows"
    folder.mkdir(parents=True)
    lines = ["label,f1,f2,group"] + [
        f"{c},{i * 0.1},{c + i},{'source' if c < 2 else 'target'}" for c in range(4) for i in range(10)
    ]
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["data", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (
        "wave           found      your own windows, shape 80 x 3 x 16, 4 classes (20-20 samples per class)"
        in result.output
    )
    assert (
        "rows           found      your own features, shape 40 x 2, 4 classes (10-10 samples per class)"
        in result.output
    )


def broken(kind):
    arrays = windows()
    if kind == "no x":
        del arrays["x"]
    elif kind == "lengths":
        arrays["label"] = arrays["label"][:-3]
    elif kind == "nan column":
        arrays["x"][:, 1, :] = np.nan
    elif kind == "one class":
        arrays["label"] = np.zeros_like(arrays["label"])
    return arrays


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("no x", "no array 'x'; save the samples as x"),
        ("lengths", "label has shape (77,), x 80 samples; give exactly one label per sample"),
        ("nan column", "x channel 1 is NaN in every sample; drop that channel from x"),
        ("one class", "label holds one class only (0); identification needs at least 2 per task"),
    ],
)
def test_a_broken_dataset_gets_one_line_naming_the_file_and_the_fix(tmp_path, kind, says):
    path = write(tmp_path, "bad", **broken(kind))
    result = runner.invoke(app, ["data", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.startswith("bad ")]
    assert f"unusable   {path}: {says}" in line


def test_a_run_on_a_missing_custom_dataset_is_refused_before_it_starts(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text('[matrix]\ndataset = ["mine"]\n[settings]\nepochs = 1\n')
    result = runner.invoke(app, ["run", str(preset), "--data-dir", str(tmp_path), "--logs", str(tmp_path / "logs")])
    assert result.exit_code == 2
    assert (
        f"mine: no {tmp_path / 'custom' / 'mine' / 'data.npz'} (nor data.csv); write your dataset there"
        in result.output
    )
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


def test_custom_datasets_keep_the_built_in_protocol(tmp_path):
    """Chronological per label by time with a gap of one window; groups by label halves."""
    from engine.core.spec import spec_from_dict
    from engine.worker.data.prepare import prepare

    arrays = windows()
    order = np.random.default_rng(1).permutation(len(arrays["x"]))  # file order is not time order
    write(tmp_path, "wave", **{k: v[order] for k, v in arrays.items()})
    data = prepare(spec_from_dict({"dataset": "wave", "data_dir": str(tmp_path), "normalize": False}))
    assert (data.source.classes, data.target.classes) == (["0", "1"], ["2", "3"])
    # 16 of 20 train (times 0..60); test windows start at least one window (16) after the last: 80
    assert np.bincount(data.target.y_train).tolist() == [16, 16]
    assert np.bincount(data.target.y_test).tolist() == [1, 1]
    assert data.holdout_gap == 4  # ceil(16 / step 4)
    first = arrays["x"][(arrays["label"] == 2)][0]
    assert np.array_equal(data.target.x_train[0], first)


def test_the_holdout_gap_is_the_step_within_a_label_whatever_other_labels_clocks_say():
    # two people recorded on clocks offset by one sample: merged, their windows look 1 and 3 apart
    from engine.worker.data.custom import _gap

    label = np.repeat([0, 1], 5)
    time = np.concatenate([np.arange(5) * 4, np.arange(5) * 4 + 1])
    x = np.zeros((10, 2, 16), dtype=np.float32)
    assert _gap({"x": x, "label": label, "time": time}, "windows") == 4  # ceil(16 / step 4)
