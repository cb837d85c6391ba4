"""The prepared-data cache: hits skip parsing, changed files miss, bad entries are rebuilt, never fatal."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.core.settings import settings
from engine.worker.data import cache, extrasensory, motionsense

from .builders import make_motionsense


def _no_parsing(*args, **kwargs):
    raise AssertionError("parsed a CSV on a cache hit")


def entries(root: Path) -> list[Path]:
    return sorted((root / "prepared").glob("*.npz"))


def test_cache_root_from_env(tmp_path):
    assert settings().cache_root() == tmp_path / "cache"  # set by the autouse fixture


def test_second_motionsense_load_is_a_hit_without_parsing(shared_data, tmp_path, monkeypatch):
    make_motionsense(tmp_path, shared_data, rows=None)  # four full real recordings
    cold = motionsense.load(tmp_path)
    assert cold.info["cache"] == "miss"
    assert len(entries(tmp_path / "cache")) == 1
    monkeypatch.setattr(motionsense, "parse_csv", _no_parsing)
    warm = motionsense.load(tmp_path)
    assert warm.info["cache"] == "hit"
    np.testing.assert_array_equal(cold.source.x_train, warm.source.x_train)
    np.testing.assert_array_equal(cold.target.x_test, warm.target.x_test)
    assert {k: v for k, v in cold.info.items() if k != "load_s" and not k.startswith("cache")} == {
        k: v for k, v in warm.info.items() if k != "load_s" and not k.startswith("cache")
    }
    # Windowing and groups are applied after the cache: other choices reuse the same entry.
    other = motionsense.load(tmp_path, window=64, stride=20, channels="all")
    assert other.info["cache"] == "hit" and other.source.input_shape == (12, 64)
    assert not list((tmp_path / "cache" / "prepared").glob("*.tmp"))


def test_second_extrasensory_load_is_a_hit_without_parsing(shared_data, monkeypatch):
    cold = extrasensory.load(shared_data)
    assert cold.info["cache"] == "miss"
    parse_user = extrasensory.parse_user
    monkeypatch.setattr(extrasensory, "parse_user", _no_parsing)
    warm = extrasensory.load(shared_data)
    assert warm.info["cache"] == "hit"
    assert warm.info["rows_nan_dropped"] == cold.info["rows_nan_dropped"]
    np.testing.assert_array_equal(cold.target.x_train, warm.target.x_train)
    # The label filter changes what is parsed: a separate entry.
    monkeypatch.setattr(extrasensory, "parse_user", parse_user)  # (not undo(): that would unset JOULELAB_CACHE)
    assert extrasensory.load(shared_data, label_filter="PHONE_IN_POCKET").info["cache"] == "miss"


def test_changed_file_invalidates_its_entry(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1500)
    first = motionsense.load(tmp_path)
    sub_2 = tmp_path / "motionsense" / "A_DeviceMotion_data" / "wlk_7" / "sub_2.csv"
    lines = sub_2.read_text().splitlines(keepends=True)
    sub_2.write_text("".join(lines[:1] + lines[101:]))  # 100 rows shorter
    second = motionsense.load(tmp_path)
    assert second.info["cache"] == "miss"
    assert second.info["rows"]["2"]["wlk_7"] == first.info["rows"]["2"]["wlk_7"] - 100
    assert len(entries(tmp_path / "cache")) == 1  # the stale entry was removed
    assert motionsense.load(tmp_path).info["cache"] == "hit"


def test_same_size_rewrite_invalidates(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300)
    motionsense.load(tmp_path)
    sub_1 = tmp_path / "motionsense" / "A_DeviceMotion_data" / "wlk_7" / "sub_1.csv"
    text = sub_1.read_text()
    changed = text.replace("0.1", "0.2", 1)
    assert len(changed) == len(text) and changed != text
    st = sub_1.stat()
    sub_1.write_text(changed)
    os.utime(sub_1, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000))  # same size, mtime 1 us later
    assert motionsense.load(tmp_path).info["cache"] == "miss"


def test_corrupt_entry_is_discarded_and_rebuilt(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300)
    good = motionsense.load(tmp_path)
    (entry,) = entries(tmp_path / "cache")
    entry.write_bytes(entry.read_bytes()[:500])  # truncated, as by a full disk
    again = motionsense.load(tmp_path)
    assert again.info["cache"] == "miss (unreadable entry discarded)"
    np.testing.assert_array_equal(good.source.x_train, again.source.x_train)
    assert motionsense.load(tmp_path).info["cache"] == "hit"


def test_unwritable_cache_is_not_fatal(shared_data, tmp_path, monkeypatch):
    make_motionsense(tmp_path, shared_data, rows=1300)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("JOULELAB_CACHE", str(blocker))
    data = motionsense.load(tmp_path)
    assert data.info["cache"].startswith("miss (not stored:")
    assert data.source.n_classes == 2


def test_load_or_build_keys_on_options_and_is_atomic(tmp_path):
    src = tmp_path / "a.csv"
    src.write_text("x")
    calls = []

    def build():
        calls.append(1)
        return {"a": np.arange(3)}, {"n": 3}

    root = tmp_path / "root"
    r1 = cache.load_or_build("t", [src], {"o": 1}, build, root=root)
    r2 = cache.load_or_build("t", [src], {"o": 1}, build, root=root)
    r3 = cache.load_or_build("t", [src], {"o": 2}, build, root=root)
    assert (r1.status, r2.status, r3.status) == ("miss", "hit", "miss")
    assert len(calls) == 2 and r2.meta == {"n": 3}
    np.testing.assert_array_equal(r2.arrays["a"], np.arange(3))
    assert [p.suffix for p in (root / "prepared").iterdir()] == [".npz", ".npz"]


def test_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    src = tmp_path / "a.csv"
    src.write_text("x")

    def broken_savez(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    result = cache.load_or_build("t", [src], {}, lambda: ({"a": np.ones(2)}, {}), root=tmp_path / "root")
    assert result.status.startswith("miss (not stored: No space left on device")
    assert list((tmp_path / "root" / "prepared").iterdir()) == []


def test_disabled_cache_writes_nothing(tmp_path):
    src = tmp_path / "a.csv"
    src.write_text("x")
    result = cache.load_or_build("t", [src], {}, lambda: ({"a": np.ones(2)}, {}), enabled=False, root=tmp_path / "root")
    assert result.status == "disabled" and not (tmp_path / "root").exists()
