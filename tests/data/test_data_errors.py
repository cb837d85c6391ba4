"""Bad input: one DataError line that names the file (and line) and says how to fix it."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from engine.core.spec import RunSpec
from engine.worker.data import DataError, extrasensory, motionsense
from engine.worker.data.prepare import prepare

from .builders import es_files, make_extrasensory, make_motionsense

WLK7 = Path("motionsense") / "A_DeviceMotion_data" / "wlk_7"


def one_line_error(fn, *args, match: str, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        fn(*args, **kwargs)
    message = str(err.value)
    print(message)  # shown with -s: the gallery of messages a user sees
    assert "\n" not in message, message
    assert re.search(match, message), message
    return message


def edit_csv(path: Path, line: int, column: int, value: str) -> None:
    """Set field `column` (0 = index) of 1-based `line` of a CSV."""
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[line - 1].rstrip("\n").split(",")
    fields[column] = value
    lines[line - 1] = ",".join(fields) + "\n"
    path.write_text("".join(lines))


# -------------------------------------------------------------------------------- missing and empty


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "nope"
    one_line_error(
        prepare,
        RunSpec(dataset="motionsense", data_dir=str(missing)),
        match=rf"data folder {re.escape(str(missing))} does not exist; point --data-dir",
    )
    one_line_error(extrasensory.load, missing, match=r"does not exist; .*extrasensory.ucsd.edu")


def test_missing_dataset_folder_says_where_to_get_it(tmp_path):
    one_line_error(
        motionsense.load,
        tmp_path,
        match=r"no data at .*motionsense; download A_DeviceMotion_data.zip from "
        r"https://github.com/mmalekzadeh/motion-sense",
    )


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("JOULELAB_DATA", str(tmp_path / "from-env"))
    one_line_error(prepare, RunSpec(dataset="extrasensory"), match=r"from-env does not exist")


def test_empty_dataset_folders(tmp_path):
    (tmp_path / "motionsense").mkdir()
    (tmp_path / "extrasensory").mkdir()
    one_line_error(motionsense.load, tmp_path, match=r"motionsense: .*motionsense is empty; download")
    one_line_error(extrasensory.load, tmp_path, match=r"extrasensory: .*extrasensory is empty; download")
    (tmp_path / "motionsense" / "A_DeviceMotion_data").mkdir()
    one_line_error(motionsense.load, tmp_path, match=r"A_DeviceMotion_data is empty")
    (tmp_path / "motionsense" / "A_DeviceMotion_data" / "notes").mkdir()
    one_line_error(motionsense.load, tmp_path, match=r"holds no <act>_<trial>/sub_<n>.csv folders \(found: notes\)")


# --------------------------------------------------------------------------------------- one level off


def test_data_dir_pointing_at_the_parent(shared_data, tmp_path):
    make_motionsense(tmp_path / "data", shared_data, rows=1300)
    one_line_error(
        motionsense.load,
        tmp_path,
        match=rf"found {re.escape(str(tmp_path / 'data' / 'motionsense'))} one level down: "
        rf"use --data-dir {re.escape(str(tmp_path / 'data'))}$",
    )


def test_data_dir_pointing_at_the_dataset_itself(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300)
    one_line_error(
        motionsense.load,
        tmp_path / "motionsense",
        match=rf"is inside the motionsense data: use --data-dir {re.escape(str(tmp_path))}$",
    )
    one_line_error(
        motionsense.load,
        tmp_path / "motionsense" / "A_DeviceMotion_data",
        match=rf"is inside the motionsense data: use --data-dir {re.escape(str(tmp_path))}$",
    )
    make_extrasensory(tmp_path, shared_data, users=4, rows=20)
    one_line_error(extrasensory.load, tmp_path / "extrasensory", match=rf"use --data-dir {re.escape(str(tmp_path))}$")


def test_dataset_nested_one_level_too_deep(shared_data, tmp_path):
    make_motionsense(tmp_path / "motionsense" / "motion-sense-master", shared_data, rows=1300)
    deep = tmp_path / "motionsense" / "motion-sense-master" / "motionsense" / "A_DeviceMotion_data"
    one_line_error(
        motionsense.load,
        tmp_path,
        match=rf"nested too deep at {re.escape(str(deep))}; move it to "
        rf"{re.escape(str(tmp_path / 'motionsense' / 'A_DeviceMotion_data'))}$",
    )
    make_extrasensory(tmp_path / "extrasensory", shared_data, users=4, rows=20)  # extrasensory/extrasensory/
    one_line_error(extrasensory.load, tmp_path, match=r"nested too deep in .*extrasensory/extrasensory; move")


def test_unextracted_extrasensory_zip(tmp_path):
    (tmp_path / "extrasensory").mkdir()
    with zipfile.ZipFile(tmp_path / "extrasensory" / "ExtraSensory.per_uuid_features_labels.zip", "w") as zf:
        zf.writestr("x.txt", "x")
    one_line_error(extrasensory.load, tmp_path, match=r"must be extracted: unzip it in")


# ------------------------------------------------------------------------------------ bad file contents


def test_wrong_header(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300)
    path = tmp_path / WLK7 / "sub_2.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("time,x,y,z\n" + "".join(lines[1:]))
    one_line_error(
        motionsense.load, tmp_path, match=rf"{re.escape(str(path))} line 1: header 'time,x,y,z' is not the MotionSense"
    )


def test_non_numeric_cell_names_line_and_column(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300)
    path = tmp_path / WLK7 / "sub_3.csv"
    edit_csv(path, line=10, column=10, value="abc")
    one_line_error(
        motionsense.load,
        tmp_path,
        match=rf"{re.escape(str(path))} line 10, column userAcceleration.x: 'abc' is not a number",
    )


def test_missing_cell_and_extra_field(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300)
    path = tmp_path / WLK7 / "sub_1.csv"
    edit_csv(path, line=7, column=4, value="")
    one_line_error(motionsense.load, tmp_path, match=r"sub_1.csv line 7, column gravity.x: empty or missing")
    make_motionsense(tmp_path / "b", shared_data, rows=1300)
    path = tmp_path / "b" / WLK7 / "sub_4.csv"
    edit_csv(path, line=5, column=12, value="1.0,2.0")
    one_line_error(motionsense.load, tmp_path / "b", match=r"sub_4.csv: Expected 13 fields in line 5, saw 14")


def test_empty_csv(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300)
    (tmp_path / WLK7 / "sub_2.csv").write_text("")
    one_line_error(motionsense.load, tmp_path, match=r"sub_2.csv is empty")


def test_subject_with_too_few_rows_for_a_window(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300)
    path = tmp_path / WLK7 / "sub_4.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:301]))
    one_line_error(
        motionsense.load,
        tmp_path,
        match=rf"{re.escape(str(path))} has 300 rows, too few for window 128: .* needs at least "
        r"1276 rows .*smaller --window",
    )


def test_too_few_rows_in_test_trials(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, rows=1300, folders=("wlk_7", "wlk_15"))
    path = tmp_path / "motionsense" / "A_DeviceMotion_data" / "wlk_15" / "sub_1.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:101]))
    one_line_error(
        motionsense.load,
        tmp_path,
        match=r"subject 1 has too few rows for one window of 128 in its test \(11-16\) trials: "
        r".*sub_1.csv \(100 rows\)",
    )


def test_corrupt_zip(tmp_path):
    (tmp_path / "motionsense").mkdir()
    (tmp_path / "motionsense" / "A_DeviceMotion_data.zip").write_bytes(b"PK\x03\x04 truncated download")
    one_line_error(motionsense.load, tmp_path, match=r"A_DeviceMotion_data.zip is not a readable zip .*download")


def test_truncated_gzip(shared_data, tmp_path):
    (tmp_path / "extrasensory").mkdir()
    for i, src in enumerate(es_files(shared_data)[:4]):
        data = src.read_bytes()
        (tmp_path / "extrasensory" / src.name).write_bytes(data[: len(data) // 3] if i == 2 else data)
    bad = tmp_path / "extrasensory" / es_files(shared_data)[2].name
    one_line_error(
        extrasensory.load, tmp_path, match=rf"{re.escape(str(bad))} is truncated or corrupt \(.*\); download .* again"
    )


def test_not_a_gzip(shared_data, tmp_path):
    make_extrasensory(tmp_path, shared_data, users=4, rows=20)
    bad = sorted((tmp_path / "extrasensory").iterdir())[0]
    bad.write_bytes(b"timestamp,raw_acc\n1,2\n")
    one_line_error(extrasensory.load, tmp_path, match=rf"{re.escape(bad.name)} is truncated or corrupt")


def test_extrasensory_non_numeric_cell(shared_data, tmp_path):
    def edit(lines, i):
        if i == 1:
            fields = lines[5].split(",")
            fields[3] = "oops"
            lines[5] = ",".join(fields)
        return lines

    make_extrasensory(tmp_path, shared_data, users=4, rows=50, edit=edit)
    one_line_error(
        extrasensory.load,
        tmp_path,
        match=r"1155FF54.*\.csv\.gz line 6, column raw_acc:magnitude_stats:moment3: 'oops' is not a number",
    )


def test_extrasensory_missing_feature_columns(shared_data, tmp_path):
    def edit(lines, i):
        return [line.replace("proc_gyro:", "gyro:") for line in lines] if i == 0 else lines

    make_extrasensory(tmp_path, shared_data, users=4, rows=20, edit=edit)
    one_line_error(
        extrasensory.load,
        tmp_path,
        match=r"0A986513.* line 1: 26 of the 52 phone-motion feature columns are missing "
        r"\(first: 'proc_gyro:magnitude_stats:mean'\)",
    )


# ------------------------------------------------------------------------------------------- groups


def test_too_few_subjects_for_two_groups(shared_data, tmp_path):
    make_motionsense(tmp_path, shared_data, subjects=(1, 2, 3), rows=1300)
    one_line_error(motionsense.load, tmp_path, match=r"3 subject\(s\) found .*need at least 2 each")
    one_line_error(
        motionsense.load, tmp_path, source_group=("1",), target_group=("2", "3"), match=r"source_group has 1 member"
    )
    one_line_error(
        motionsense.load,
        tmp_path,
        source_group=("1", "9"),
        target_group=("2", "3"),
        match=r"source_group names 9, not in the data",
    )


def test_group_with_no_usable_users(shared_data, tmp_path):
    def no_pocket(lines, i):
        if i < 3:  # three of four users never have the phone in the pocket
            col = lines[0].rstrip("\n").split(",").index("label:PHONE_IN_POCKET")
            for k in range(1, len(lines)):
                fields = lines[k].rstrip("\n").split(",")
                fields[col] = "0"
                lines[k] = ",".join(fields) + "\n"
        return lines

    make_extrasensory(tmp_path, shared_data, users=4, rows=60, edit=no_pocket)
    one_line_error(
        extrasensory.load,
        tmp_path,
        label_filter="PHONE_IN_POCKET",
        match=r"1 user\(s\) with at least 2 usable rows with label:PHONE_IN_POCKET == 1 .*of 4\); "
        r"the source and target groups need at least 2 each",
    )
    one_line_error(
        extrasensory.load,
        tmp_path,
        label_filter="PHONE_IN_POCKET",
        source_group=("0A986513", "1155FF54"),
        target_group=("24E40C4C", "33A85C34"),
        match=r"source_group user 0A986513 has 0 usable row\(s\) of 60 \(60 without "
        r"label:PHONE_IN_POCKET == 1\); remove it from the group or drop the label filter",
    )
