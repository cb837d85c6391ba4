"""MotionSense loader on the real wlk_7 files (../shared/data) and on small copies in tmp_path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.core.spec import RunSpec
from engine.worker.data import DataError, motionsense
from engine.worker.data.locate import find_motionsense
from engine.worker.data.prepare import prepare

from .builders import MS_REAL, make_motionsense

W, S = 128, 10


def expected_counts(rows: int, window: int = W, stride: int = S) -> tuple[int, int]:
    cut = int(rows * 0.8)
    return (cut - window) // stride + 1, (rows - cut - window - window) // stride + 1


def test_shapes_groups_and_labels(ms_data):
    assert ms_data.name == "motionsense" and not ms_data.synthetic and ms_data.kind == "windows"
    assert ms_data.source.classes == [str(i) for i in range(1, 13)]
    assert ms_data.target.classes == [str(i) for i in range(13, 25)]
    for split in (ms_data.source, ms_data.target):
        assert split.x_train.dtype == np.float32 and split.x_train.shape[1:] == (6, W)
        assert split.x_test.shape[1:] == (6, W)
        assert set(np.unique(split.y_train)) == set(range(12)) == set(np.unique(split.y_test))
    info = ms_data.info
    assert info["trials"] == [7] and info["trial_folders"] == ["wlk_7"]
    assert len(info["files"]) == 24
    assert sum(sum(r.values()) for r in info["rows"].values()) == 158_645
    assert info["split"].startswith("chronological")
    assert info["source_group"] == [str(i) for i in range(1, 13)]
    assert info["cache"] == "disabled"


def test_window_counts_follow_rows(ms_data):
    for split in (ms_data.source, ms_data.target):
        for label, subject in enumerate(split.classes):
            rows = ms_data.info["rows"][subject]["wlk_7"]
            n_train, n_test = expected_counts(rows)
            assert (split.y_train == label).sum() == n_train
            assert (split.y_test == label).sum() == n_test


def test_windows_are_the_csv_columns_with_a_gap(ms_data, shared_data):
    frame = pd.read_csv(shared_data / MS_REAL / "sub_1.csv")
    raw = frame.iloc[:, 1:].to_numpy(np.float64).astype(np.float32)
    signal = np.concatenate([raw[:, 6:9], raw[:, 9:12] + raw[:, 3:6]], axis=1)
    cut = int(len(signal) * 0.8)
    x_train = ms_data.source.x_train[ms_data.source.y_train == 0]
    x_test = ms_data.source.x_test[ms_data.source.y_test == 0]
    np.testing.assert_array_equal(x_train[0], signal[:W].T)
    np.testing.assert_array_equal(x_train[1], signal[S : S + W].T)
    np.testing.assert_array_equal(x_test[0], signal[cut + W : cut + 2 * W].T)  # one window of gap
    last_train_end = (len(x_train) - 1) * S + W
    assert last_train_end <= cut < cut + W  # no training sample at or after the cut


def test_no_window_in_both_train_and_test(ms_data):
    for split in (ms_data.source, ms_data.target):
        train = {w.tobytes() for w in split.x_train}
        assert not any(w.tobytes() in train for w in split.x_test)


def test_subjects_info_recorded(ms_data):
    assert ms_data.info["subjects_info"]["1"] == {"weight": 102, "height": 188, "age": 46, "gender": 1}
    assert len(ms_data.info["subjects_info"]) == 24


def test_deterministic(ms_data, shared_data):
    again = motionsense.load(shared_data, use_cache=False)
    for a, b in ((ms_data.source, again.source), (ms_data.target, again.target)):
        np.testing.assert_array_equal(a.x_train, b.x_train)
        np.testing.assert_array_equal(a.y_test, b.y_test)


def test_all_channels_window_and_stride(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1000)
    data = motionsense.load(tmp_path, channels="all", window=64, stride=32)
    assert data.source.input_shape == (12, 64)
    assert data.info["channels"] == motionsense.COLUMNS
    n_train, n_test = expected_counts(1000, 64, 32)
    assert (data.source.y_train == 0).sum() == n_train and (data.source.y_test == 0).sum() == n_test


def test_custom_groups_accept_sub_prefix_and_leading_zero(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, subjects=(1, 2, 3, 4, 5), rows=1400)
    data = motionsense.load(tmp_path, source_group=("sub_1", "02"), target_group=("4", "5"))
    assert data.source.classes == ["1", "2"] and data.target.classes == ["4", "5"]
    rest = motionsense.load(tmp_path, source_group=("1", "2"))
    assert rest.target.classes == ["3", "4", "5"]


def test_trials_1_to_9_train_and_11_to_16_test(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1400, folders=("wlk_7", "wlk_8", "wlk_15"))
    data = motionsense.load(tmp_path)
    assert data.info["split"] == "by trial: trials 7, 8 train, 15 test"
    per_file = (1400 - W) // S + 1
    assert (data.source.y_train == 0).sum() == 2 * per_file
    assert (data.source.y_test == 0).sum() == per_file
    one = motionsense.load(tmp_path, trials=(7,))
    assert one.info["split"].startswith("chronological") and one.info["trials"] == [7]
    train_only = motionsense.load(tmp_path, trials=(7, 8))
    assert (train_only.source.y_train == 0).sum() == 2 * expected_counts(1400)[0]


def test_zip_and_nested_layouts_give_the_same_arrays(shared_data, tmp_path):
    plain = motionsense.load(make_motionsense(tmp_path / "a", shared_data, rows=1300))
    zipped_dir = make_motionsense(tmp_path / "b", shared_data, rows=1300, layout="zip")
    assert find_motionsense(zipped_dir / "motionsense").kind == "zip"
    zipped = motionsense.load(zipped_dir)
    nested = motionsense.load(make_motionsense(tmp_path / "c", shared_data, rows=1300, layout="nested"))
    assert zipped.info["layout"] == "zip"
    for other in (zipped, nested):
        np.testing.assert_array_equal(plain.source.x_train, other.source.x_train)
        np.testing.assert_array_equal(plain.target.x_test, other.target.x_test)


def test_prepare_standardises_with_training_statistics(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300)
    data = prepare(RunSpec(dataset="motionsense", data_dir=str(tmp_path)))
    mean = data.target.x_train.mean(axis=(0, 2))
    np.testing.assert_allclose(mean, 0, atol=1e-4)
    assert data.info["data_dir"] == str(tmp_path) and data.info["data_dir_from"] == "--data-dir"
    assert data.info["normalized"] is True


def test_unknown_trial_is_one_line(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300)
    with pytest.raises(DataError, match=r"trial\(s\) 8 not found .*present: 7") as err:
        motionsense.load(tmp_path, trials=(7, 8))
    assert "\n" not in str(err.value)
