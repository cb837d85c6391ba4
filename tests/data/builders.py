"""Small dataset folders for tests, made from a few rows of the real files (or synthesized).

Everything is written under a test's tmp_path; ../shared/data is only ever read.
"""

from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path

import numpy as np

from engine.worker.data.locate import MOTIONSENSE_HEADER as HEADER

MS_REAL = Path("motionsense") / "A_DeviceMotion_data" / "wlk_7"


def real_rows(shared: Path, subject: int, rows: int | None = None) -> list[str]:
    """Header and the first `rows` data lines of a real MotionSense file, newlines kept."""
    with open(shared / MS_REAL / f"sub_{subject}.csv", encoding="utf-8") as fh:
        lines = fh.readlines()
    return lines if rows is None else lines[: rows + 1]


def synth_rows(rows: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, 12))
    return [HEADER + "\n"] + [f"{i}," + ",".join(f"{v:.6f}" for v in row) + "\n" for i, row in enumerate(values)]


def make_motionsense(
    data_dir: Path,
    shared: Path | None = None,
    subjects=(1, 2, 3, 4),
    rows: int | None = 1500,
    folders=("wlk_7",),
    layout: str = "dir",
    subjects_info: bool = False,
) -> Path:
    """<data_dir>/motionsense with the given trial folders and subjects.

    Rows come from the real wlk_7 file of each subject when `shared` is given (a different slice per
    folder so trials differ), else synthesized. layout: "dir", "nested" (the zip unzipped into a folder
    of its name) or "zip".
    """
    root = data_dir / "motionsense"
    base = root / "A_DeviceMotion_data"
    if layout == "nested":
        base = base / "A_DeviceMotion_data"
    staging = data_dir / "_staging" if layout == "zip" else base
    for k, folder in enumerate(folders):
        (staging / folder).mkdir(parents=True, exist_ok=True)
        for s in subjects:
            if shared is not None:
                lines = real_rows(shared, s)
                body = lines[1 + k * 50 :]
                lines = [lines[0]] + (body if rows is None else body[:rows])
            else:
                lines = synth_rows(rows or 1500, seed=1000 * k + s)
            (staging / folder / f"sub_{s}.csv").write_text("".join(lines), encoding="utf-8")
    if layout == "zip":
        root.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(root / "A_DeviceMotion_data.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(staging.rglob("*.csv")):
                zf.write(path, "A_DeviceMotion_data/" + path.relative_to(staging).as_posix())
            zf.writestr("__MACOSX/A_DeviceMotion_data/wlk_7/._sub_1.csv", b"junk")
        shutil.rmtree(staging)
    if subjects_info:
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / "motionsense" / "data_subjects_info.csv", root / "data_subjects_info.csv")
    return data_dir


def es_files(shared: Path) -> list[Path]:
    return sorted((shared / "extrasensory").glob("*.features_labels.csv.gz"))


def make_extrasensory(data_dir: Path, shared: Path, users: int = 4, rows: int | None = 200, edit=None) -> Path:
    """<data_dir>/extrasensory with the first `users` real user files, cut to `rows` rows.

    `edit(lines, index)` may change a user's lines (header included) before they are written.
    """
    root = data_dir / "extrasensory"
    root.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(es_files(shared)[:users]):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = [next(fh) for _ in range(rows + 1)] if rows is not None else fh.readlines()
        if edit is not None:
            lines = edit(lines, i)
        with gzip.open(root / path.name, "wt", encoding="utf-8") as fh:
            fh.writelines(lines)
    return data_dir
