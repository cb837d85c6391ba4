"""Where the data folder is, what `joulelab data` reports, and the layouts the finders accept."""

from __future__ import annotations

from pathlib import Path

import platformdirs

from engine.worker.data.locate import (
    describe_datasets,
    find_extrasensory,
    find_motionsense,
    format_descriptions,
    resolve_data_dir,
    resolve_data_dir_with_origin,
)

from .builders import make_extrasensory, make_motionsense


def test_spec_beats_environment_beats_default(tmp_path, monkeypatch):
    default = Path(platformdirs.user_cache_dir("joulelab")) / "data"
    assert resolve_data_dir_with_origin(None) == (default, "default")
    monkeypatch.setenv("JOULELAB_DATA", str(tmp_path / "env"))
    assert resolve_data_dir_with_origin(None) == (tmp_path / "env", "JOULELAB_DATA")
    assert resolve_data_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    assert resolve_data_dir_with_origin("~/x")[0] == Path.home() / "x"


def test_describe_the_shared_data(shared_data):
    by_name = {e["name"]: e for e in describe_datasets(shared_data)}
    assert by_name["synthetic"]["found"] and by_name["synthetic"]["subjects"] == 24
    ms = by_name["motionsense"]
    assert ms["found"] and ms["problem"] is None and ms["layout"] == "directory"
    assert (ms["subjects"], ms["trials"], ms["files"], ms["rows"]) == (24, [7], 24, 158_645)
    assert ms["subjects_info"].endswith("data_subjects_info.csv")
    es = by_name["extrasensory"]
    assert es["found"] and (es["users"], es["rows"]) == (10, 44_065)
    text = format_descriptions(describe_datasets(shared_data))
    assert "158,645 rows" in text and "10 users" in text


def test_describe_missing_data_says_where_to_get_it(tmp_path):
    entries = {e["name"]: e for e in describe_datasets(tmp_path)}
    ms, es = entries["motionsense"], entries["extrasensory"]
    assert not ms["found"] and ms["looked_in"] == str(tmp_path / "motionsense")
    assert "https://github.com/mmalekzadeh/motion-sense" in ms["get"] and "A_DeviceMotion_data.zip" in ms["get"]
    assert "<data_dir>/motionsense/A_DeviceMotion_data/<act>_<trial>/sub_<n>.csv" in ms["expected"]
    assert not es["found"] and "http://extrasensory.ucsd.edu" in es["get"]
    assert es["expected"] == "<data_dir>/extrasensory/<UUID>.features_labels.csv.gz"
    text = format_descriptions(list(entries.values()))
    assert "not found" in text and "get it" in text


def test_describe_mislaid_data_suggests_the_right_folder(shared_data, tmp_path):
    make_motionsense(tmp_path / "data", shared_data, rows=1300)
    entries = {e["name"]: e for e in describe_datasets(tmp_path)}
    assert f"use --data-dir {tmp_path / 'data'}" in entries["motionsense"]["problem"]


def test_zip_layout_is_read_in_place(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300, layout="zip")
    src = find_motionsense(tmp_path / "motionsense")
    assert src.kind == "zip" and src.subjects == ["1", "2", "3", "4"] and src.trials == [7]
    entry = {e["name"]: e for e in describe_datasets(tmp_path)}["motionsense"]
    assert entry["layout"] == "zip" and entry["rows"] == 4 * 1300


def test_official_nested_layout_and_trial_folders(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300, layout="nested", folders=("wlk_7", "dws_11"))
    src = find_motionsense(tmp_path / "motionsense")
    assert src.kind == "dir" and src.location.name == src.location.parent.name == "A_DeviceMotion_data"
    assert src.folders == ["wlk_7", "dws_11"] and src.trials == [7, 11]


def test_extrasensory_inside_an_official_named_folder(shared_data, tmp_path):
    inner = tmp_path / "extrasensory" / "ExtraSensory.per_uuid_features_labels"
    make_extrasensory(inner.parent.parent, shared_data, users=4, rows=10)
    (tmp_path / "extrasensory").rename(tmp_path / "tmp")
    inner.parent.mkdir()
    (tmp_path / "tmp").rename(inner)
    src = find_extrasensory(tmp_path / "extrasensory")
    assert src.location == inner and len(src.users) == 4


def test_data_reads_each_file_it_reports(tmp_path):
    """Defect: `joulelab data` said "found 4 files" with one empty and one of another header; a run
    found out only in the worker, after its idle baseline."""
    make_motionsense(tmp_path, subjects=(1, 2, 3, 4), rows=50)
    folder = tmp_path / "motionsense" / "A_DeviceMotion_data" / "wlk_7"
    (folder / "sub_2.csv").write_text("")
    (folder / "sub_3.csv").write_text("time,x,y,z\n0,1,2,3\n")
    lines = (folder / "sub_4.csv").read_text().splitlines(keepends=True)
    (folder / "sub_4.csv").write_text(lines[0] + "0,1.0,2.0\n" + "".join(lines[2:]))
    entry = {e["name"]: e for e in describe_datasets(tmp_path)}["motionsense"]
    assert entry["found"] and entry["files"] == 4
    problem = entry["problem"]
    assert "sub_2.csv: empty" in problem
    assert "sub_3.csv: line 1 is 'time,x,y,z', not the expected header" in problem
    assert "sub_4.csv: line 2 has 3 fields, the header 13" in problem
    assert "sub_1.csv" not in problem
    assert "damaged" in format_descriptions([entry])


def test_data_names_an_extrasensory_file_without_rows(tmp_path, shared_data):
    make_extrasensory(tmp_path, shared_data, users=2, rows=5, edit=lambda lines, i: lines[:1] if i == 1 else lines)
    entry = {e["name"]: e for e in describe_datasets(tmp_path)}["extrasensory"]
    assert entry["problem"] is not None and "no data rows below the header" in entry["problem"]
    assert entry["problem"].count("features_labels") == 1


def test_sound_data_has_no_problem(shared_data):
    entries = {e["name"]: e for e in describe_datasets(shared_data)}
    assert entries["motionsense"]["problem"] is None and entries["extrasensory"]["problem"] is None
