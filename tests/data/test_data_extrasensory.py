"""ExtraSensory loader on the 10 real user files (../shared/data) and small copies in tmp_path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.worker.data import DataError, extrasensory

from .builders import es_files, make_extrasensory


def test_feature_names_match_the_real_files(shared_data):
    header = pd.read_csv(es_files(shared_data)[0], nrows=0).columns
    motion = [c for c in header if c.startswith(("raw_acc:", "proc_gyro:"))]
    assert extrasensory.FEATURES == motion
    assert len(motion) == 52


def test_ten_users_split_five_and_five(es_data):
    assert es_data.kind == "features" and not es_data.synthetic
    assert es_data.source.classes == ["0A986513", "1155FF54", "24E40C4C", "33A85C34", "3600D531"]
    assert es_data.target.classes == ["4FC32141", "A5A30F76", "A5CDF89D", "CF722AA9", "FDAA70A1"]
    for split in (es_data.source, es_data.target):
        assert split.x_train.dtype == np.float32 and split.input_shape == (52,)
        assert split.x_test.shape[1] == 52
        assert not np.isnan(split.x_train).any() and not np.isnan(split.x_test).any()
    assert es_data.info["rows_total"] == 44_065
    assert es_data.info["users"]["33A85C34"] == "33A85C34-CFE4-4732-9E73-0A7AC861B27A"


def test_nan_rows_dropped_and_counted(es_data):
    info = es_data.info
    assert info["rows_nan_dropped"] > 0
    assert info["rows_used"] == info["rows_total"] - info["rows_nan_dropped"]
    assert info["rows"]["33A85C34"]["nan_dropped"] > 0
    n = sum(len(s.y_train) + len(s.y_test) for s in (es_data.source, es_data.target))
    assert n == info["rows_used"]


def test_chronological_70_30_per_user(es_data, shared_data):
    path = next(p for p in es_files(shared_data) if p.name.startswith("0A986513"))
    stamps, x, counts = extrasensory.parse_user(path, None)
    assert np.all(np.diff(stamps) > 0)
    cut = int(len(x) * 0.7)
    np.testing.assert_array_equal(es_data.source.x_train[es_data.source.y_train == 0], x[:cut])
    np.testing.assert_array_equal(es_data.source.x_test[es_data.source.y_test == 0], x[cut:])
    assert counts == es_data.info["rows"]["0A986513"]


def test_label_filter_keeps_only_labelled_rows(es_data, es_pocket):
    info = es_pocket.info
    assert info["label_filter"] == "label:PHONE_IN_POCKET"
    assert 0 < info["rows_used"] < es_data.info["rows_used"]
    assert info["rows_filtered_out"] > 0
    assert info["rows_used"] == info["rows_total"] - info["rows_filtered_out"] - info["rows_nan_dropped"]
    assert sum(len(s.y_train) for s in (es_pocket.source, es_pocket.target)) < sum(
        len(s.y_train) for s in (es_data.source, es_data.target)
    )


def test_label_filter_shorthand_and_typo(shared_data, tmp_path):
    make_extrasensory(tmp_path, shared_data, users=4, rows=300)
    full = extrasensory.load(tmp_path, label_filter="label:PHONE_IN_POCKET")
    short = extrasensory.load(tmp_path, label_filter="PHONE_IN_POCKET")
    np.testing.assert_array_equal(full.target.x_train, short.target.x_train)
    with pytest.raises(DataError, match=r"did you mean 'label:PHONE_IN_POCKET'"):
        extrasensory.load(tmp_path, label_filter="label:PHONE_IN_POKET")


def test_groups_by_prefix_or_full_uuid(shared_data, tmp_path):
    make_extrasensory(tmp_path, shared_data, users=5, rows=100)
    data = extrasensory.load(
        tmp_path,
        source_group=("0a986513", "1155FF54-63D3-4AB2-9863-8385D0BD0A13"),
        target_group=("24E40C4C", "33A85C34"),
    )
    assert data.source.classes == ["0A986513", "1155FF54"]
    assert data.target.classes == ["24E40C4C", "33A85C34"]
    rest = extrasensory.load(tmp_path, source_group=("0A986513", "1155FF54"))
    assert rest.target.classes == ["24E40C4C", "33A85C34", "3600D531"]
    with pytest.raises(DataError, match=r"source_group names DEADBEEF, not in the data"):
        extrasensory.load(tmp_path, source_group=("DEADBEEF", "0A986513"))


def test_deterministic(es_data, shared_data):
    again = extrasensory.load(shared_data, use_cache=False)
    np.testing.assert_array_equal(es_data.source.x_train, again.source.x_train)
    np.testing.assert_array_equal(es_data.target.y_test, again.target.y_test)
