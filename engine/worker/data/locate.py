"""Where the real datasets live, what is there, and what to do when they are not where expected.

Layout under the data folder (``--data-dir``, else the data setting (engine.core.settings), else the user cache folder):

    <data_dir>/motionsense/A_DeviceMotion_data/<act>_<trial>/sub_<n>.csv   (+ data_subjects_info.csv)
    <data_dir>/motionsense/A_DeviceMotion_data.zip                         (read without unzipping)
    <data_dir>/extrasensory/<UUID>.features_labels.csv.gz

The finders tolerate the layouts the official downloads produce (the zip unzipped into a folder of its
own name, giving ``A_DeviceMotion_data/A_DeviceMotion_data/...``); anything else one level off raises
a DataError that names the folder found and the path or move that fixes it.
"""

from __future__ import annotations

import gzip
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core.settings import env_var, settings
from engine.worker.data import DataError

DATA_ENV = env_var("data")

MOTIONSENSE_URL = "https://github.com/mmalekzadeh/motion-sense"
MOTIONSENSE_ZIP = "A_DeviceMotion_data.zip"
MOTIONSENSE_DIR = "A_DeviceMotion_data"
SUBJECTS_INFO = "data_subjects_info.csv"
EXTRASENSORY_URL = "http://extrasensory.ucsd.edu"
EXTRASENSORY_ZIP = "ExtraSensory.per_uuid_features_labels.zip"

TRIAL_DIR = re.compile(r"^([a-z]+)_(\d+)$")
SUB_FILE = re.compile(r"^sub_(\d+)\.csv$")
ZIP_MEMBER = re.compile(r"(?:^|/)([a-z]+)_(\d+)/sub_(\d+)\.csv$")
USER_FILE = re.compile(
    r"^([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})"
    r"\.features_labels\.csv(\.gz)?$"
)

FIX_DIR = f"point --data-dir or {DATA_ENV} at the folder that holds motionsense/ and extrasensory/"


# ---------------------------------------------------------------------------------------------- where


def resolve_data_dir_with_origin(spec_data_dir: str | None) -> tuple[Path, str]:
    """The data folder (absolute) and where that choice came from: "--data-dir", DATA_ENV or "default".

    A relative --data-dir or data setting is taken relative to the current directory.
    """
    if spec_data_dir:
        return Path(spec_data_dir).expanduser().absolute(), "--data-dir"
    configured = settings().data
    if configured is not None:
        return configured.expanduser().absolute(), DATA_ENV
    import platformdirs

    return Path(platformdirs.user_cache_dir("joulelab")) / "data", "default"


def resolve_data_dir(spec_data_dir: str | None) -> Path:
    """The spec's data_dir (the CLI writes --data-dir there), else the data setting, else <user cache>/data."""
    return resolve_data_dir_with_origin(spec_data_dir)[0]


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _entries(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    except OSError:
        return []


def _listing(path: Path, limit: int = 5) -> str:
    names = _entries(path)
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# ------------------------------------------------------------------------------------------ MotionSense


@dataclass
class MotionSenseSource:
    """Where MotionSense recordings are: a folder of trial folders, or the official zip."""

    root: Path  # <data_dir>/motionsense
    kind: str  # "dir" | "zip"
    location: Path  # the folder holding <act>_<trial>/ folders, or the zip file
    files: dict[tuple[str, str], str]  # (trial folder "wlk_7", subject "3") -> relative path / member
    subjects_info: Path | None = None

    @property
    def folders(self) -> list[str]:
        return sorted({f for f, _ in self.files}, key=folder_sort_key)

    @property
    def trials(self) -> list[int]:
        return sorted({trial_of(f) for f, _ in self.files})

    @property
    def subjects(self) -> list[str]:
        return sorted({s for _, s in self.files}, key=int)

    def display(self, key: tuple[str, str]) -> str:
        """The file as a user would find it: a path, or zip!member."""
        if self.kind == "zip":
            return f"{self.location}!{self.files[key]}"
        return str(self.location / self.files[key])

    def source_files(self) -> list[Path]:
        """The files whose fingerprint keys the cache (the zip counts as one)."""
        if self.kind == "zip":
            return [self.location]
        return [self.location / rel for rel in self.files.values()]

    def read(self, keys: list[tuple[str, str]]) -> Iterator[tuple[tuple[str, str], bytes]]:
        """Yield (key, bytes) for each key, opening a zip once."""
        if self.kind == "zip":
            try:
                with zipfile.ZipFile(self.location) as zf:
                    for key in keys:
                        yield key, zf.read(self.files[key])
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise DataError(
                    f"motionsense: {self.location} is not a readable zip ({exc}); "
                    f"download {MOTIONSENSE_ZIP} again from {MOTIONSENSE_URL}"
                ) from None
        else:
            for key in keys:
                path = self.location / self.files[key]
                try:
                    yield key, path.read_bytes()
                except OSError as exc:
                    raise DataError(
                        f"motionsense: cannot read {path}: {exc.strerror}; check the file's permissions"
                    ) from None


def trial_of(folder: str) -> int:
    return int(folder.rsplit("_", 1)[1])


def folder_sort_key(folder: str) -> tuple[int, str]:
    return trial_of(folder), folder


def _trial_files(folder: Path) -> dict[tuple[str, str], str]:
    """(trial folder, subject) -> relative path for <folder>/<act>_<trial>/sub_<n>.csv."""
    files = {}
    for trial_dir in _subdirs(folder):
        if not TRIAL_DIR.match(trial_dir.name):
            continue
        try:
            names = os.listdir(trial_dir)
        except OSError:
            continue
        for name in names:
            m = SUB_FILE.match(name)
            if m and (trial_dir / name).is_file():
                files[(trial_dir.name, str(int(m.group(1))))] = f"{trial_dir.name}/{name}"
    return files


def _has_trial_dirs(folder: Path) -> bool:
    return any(TRIAL_DIR.match(d.name) for d in _subdirs(folder))


def _zip_files(path: Path) -> dict[tuple[str, str], str]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            f"motionsense: {path} is not a readable zip ({exc}); "
            f"download {MOTIONSENSE_ZIP} again from {MOTIONSENSE_URL}"
        ) from None
    files = {}
    for name in names:
        if "__MACOSX" in name or "/._" in name or name.startswith("._"):
            continue
        m = ZIP_MEMBER.search(name)
        if m:
            files[(f"{m.group(1)}_{m.group(2)}", str(int(m.group(3))))] = name
    return files


def _find_subjects_info(*folders: Path) -> Path | None:
    for folder in folders:
        candidate = folder / SUBJECTS_INFO
        if candidate.is_file():
            return candidate
    return None


def find_motionsense(root: Path) -> MotionSenseSource:
    """Find MotionSense under `root` (= <data_dir>/motionsense), or raise a DataError saying how to fix it.

    Accepted, in this order: ``root/A_DeviceMotion_data/<act>_<trial>/``, the same nested once more
    (``A_DeviceMotion_data/A_DeviceMotion_data/``, what unzipping into a folder of the zip's name
    gives), trial folders directly in ``root``, and ``root/A_DeviceMotion_data.zip`` read in place.
    """
    root = Path(root)
    inner = root / MOTIONSENSE_DIR
    for folder in (inner, inner / MOTIONSENSE_DIR, root):
        if folder.is_dir() and _has_trial_dirs(folder):
            files = _trial_files(folder)
            if not files:
                raise DataError(
                    f"motionsense: {folder} has trial folders but no sub_<n>.csv files in them; "
                    f"extract {MOTIONSENSE_ZIP} again"
                )
            return MotionSenseSource(root, "dir", folder, files, _find_subjects_info(root, folder.parent, folder))
    zip_path = root / MOTIONSENSE_ZIP
    if zip_path.is_file():
        files = _zip_files(zip_path)
        if not files:
            raise DataError(
                f"motionsense: {zip_path} holds no <act>_<trial>/sub_<n>.csv files; "
                f"download {MOTIONSENSE_ZIP} again from {MOTIONSENSE_URL}"
            )
        return MotionSenseSource(root, "zip", zip_path, files, _find_subjects_info(root))
    raise DataError(_motionsense_problem(root))


def _looks_like_motionsense(folder: Path) -> bool:
    return (folder / MOTIONSENSE_DIR).is_dir() or (folder / MOTIONSENSE_ZIP).is_file() or _has_trial_dirs(folder)


def _search_below(folder: Path, predicate: Callable[[Path], bool], depth: int) -> Path | None:
    """The first folder within `depth` levels below `folder` (breadth first) that satisfies `predicate`."""
    level = [folder]
    for _ in range(depth):
        level = [child for parent in level for child in _subdirs(parent)]
        for child in level:
            if predicate(child):
                return child
    return None


def _mislaid(root: Path, looks_like: Callable[[Path], bool]) -> str | None:
    """A hint when the dataset sits one level off: data_dir pointing at the dataset, or at its parent."""
    data_dir = root.parent
    parts = data_dir.parts
    if root.name in parts[1:]:  # pointed inside the dataset: .../motionsense or .../motionsense/A_Device...
        above = Path(*parts[: len(parts) - 1 - parts[::-1].index(root.name)])
        if looks_like(above / root.name) or looks_like(data_dir):
            return f"{data_dir} is inside the {root.name} data: use --data-dir {above}"
    if data_dir.is_dir() and looks_like(data_dir):
        return (
            f"{data_dir} itself holds {root.name} data: move it into {root}/, "
            f"or use --data-dir with a folder holding {root.name}/"
        )
    for child in _subdirs(data_dir):
        if (child / root.name).is_dir():
            return f"found {child / root.name} one level down: use --data-dir {child}"
    return None


def _not_a_folder(path: Path) -> str:
    return "is a file, not a directory" if path.exists() else "does not exist"


def _motionsense_problem(root: Path) -> str:
    get = (
        f"download {MOTIONSENSE_ZIP} from {MOTIONSENSE_URL} (folder data/) and put it at "
        f"{root / MOTIONSENSE_ZIP}, or unzip it to {root / MOTIONSENSE_DIR}/"
    )
    if not root.is_dir():
        if not root.parent.is_dir():
            return f"motionsense: data folder {root.parent} {_not_a_folder(root.parent)}; {FIX_DIR}, or {get}"
        hint = _mislaid(root, _looks_like_motionsense)
        if hint:
            return f"motionsense: no {root}; {hint}"
        return f"motionsense: no data at {root}; {get}"
    if not _entries(root):
        return f"motionsense: {root} is empty; {get}"
    inner = root / MOTIONSENSE_DIR
    if inner.is_dir() and not _entries(inner):
        return f"motionsense: {inner} is empty; {get}"
    deeper = _search_below(root, lambda d: _has_trial_dirs(d) or (d / MOTIONSENSE_ZIP).is_file(), depth=3)
    if deeper is not None:
        if _has_trial_dirs(deeper):
            found, target = deeper, root / MOTIONSENSE_DIR
        else:
            found, target = deeper / MOTIONSENSE_ZIP, root / MOTIONSENSE_ZIP
        return f"motionsense: the data is nested too deep at {found}; move it to {target}"
    if inner.is_dir():
        return (
            f"motionsense: {inner} holds no <act>_<trial>/sub_<n>.csv folders (found: {_listing(inner)}); "
            f"extract {MOTIONSENSE_ZIP} again"
        )
    return (
        f"motionsense: {root} holds no {MOTIONSENSE_DIR}/ folder or {MOTIONSENSE_ZIP} (found: {_listing(root)}); {get}"
    )


# ----------------------------------------------------------------------------------------- ExtraSensory


@dataclass
class ExtraSensorySource:
    root: Path  # <data_dir>/extrasensory
    location: Path  # the folder holding the user files
    files: dict[str, Path] = field(default_factory=dict)  # full UUID (upper case) -> file

    @property
    def users(self) -> list[str]:
        return sorted(self.files)


def _user_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return files
    for name in names:
        m = USER_FILE.match(name)
        if m and (folder / name).is_file():
            uuid = m.group(1).upper()
            if uuid not in files or name.endswith(".gz"):  # prefer the .gz when both are present
                files[uuid] = folder / name
    return files


def find_extrasensory(root: Path) -> ExtraSensorySource:
    """Find ExtraSensory user files in `root` (= <data_dir>/extrasensory), or raise a DataError.

    Accepted: ``root/<UUID>.features_labels.csv.gz`` (or uncompressed ``.csv``), and the same inside
    one folder named ``ExtraSensory.per_uuid_features_labels*`` (the official zip extracted into a folder
    of its name).
    """
    root = Path(root)
    files = _user_files(root)
    if files:
        return ExtraSensorySource(root, root, files)
    for child in _subdirs(root):
        if child.name.lower().startswith("extrasensory.per_uuid_features_labels"):
            files = _user_files(child)
            if files:
                return ExtraSensorySource(root, child, files)
    raise DataError(_extrasensory_problem(root))


def _extrasensory_problem(root: Path) -> str:
    get = (
        f"download {EXTRASENSORY_ZIP} (the per-user features_labels files) from {EXTRASENSORY_URL} and "
        f"extract its <UUID>.features_labels.csv.gz files into {root}/"
    )
    if not root.is_dir():
        if not root.parent.is_dir():
            return f"extrasensory: data folder {root.parent} {_not_a_folder(root.parent)}; {FIX_DIR}, or {get}"
        hint = _mislaid(root, lambda d: bool(_user_files(d)))
        if hint:
            return f"extrasensory: no {root}; {hint}"
        return f"extrasensory: no data at {root}; {get}"
    if not _entries(root):
        return f"extrasensory: {root} is empty; {get}"
    if (root / EXTRASENSORY_ZIP).is_file():
        return f"extrasensory: {root / EXTRASENSORY_ZIP} must be extracted: unzip it in {root}/"
    deeper = _search_below(root, lambda d: bool(_user_files(d)), depth=3)
    if deeper is not None:
        return (
            f"extrasensory: the user files are nested too deep in {deeper}; move the "
            f"*.features_labels.csv.gz files to {root}/"
        )
    return f"extrasensory: {root} holds no <UUID>.features_labels.csv.gz files (found: {_listing(root)}); {get}"


# -------------------------------------------------------------------------------------------- describe

MOTIONSENSE_LAYOUT = (
    "<data_dir>/motionsense/A_DeviceMotion_data/<act>_<trial>/sub_<n>.csv "
    "+ <data_dir>/motionsense/data_subjects_info.csv, "
    "or <data_dir>/motionsense/A_DeviceMotion_data.zip"
)
EXTRASENSORY_LAYOUT = "<data_dir>/extrasensory/<UUID>.features_labels.csv.gz"


# What a MotionSense device-motion file starts with (the loader, engine.worker.data.motionsense,
# parses against it; `joulelab data` checks it).
MOTIONSENSE_HEADER = (
    ",attitude.roll,attitude.pitch,attitude.yaw,gravity.x,gravity.y,gravity.z,"
    "rotationRate.x,rotationRate.y,rotationRate.z,userAcceleration.x,userAcceleration.y,userAcceleration.z"
)
MOTIONSENSE_COLUMNS = MOTIONSENSE_HEADER.split(",")[1:]  # the 12 measured columns, file order


def _count_lines(data: bytes) -> int:
    n = data.count(b"\n")
    return n + (1 if data and not data.endswith(b"\n") else 0)


def _csv_shape_problem(first: bytes, row: bytes | None, fields: int | None, header: str | None) -> str | None:
    """What is wrong with a CSV's header and first data row, read as a loader would, or None:
    empty, another header, no data rows, or a first row of the wrong width."""
    text = first.rstrip(b"\r").decode("utf-8-sig", errors="replace")
    if not text.strip():
        return "empty"
    if header is not None and text != header:
        shown = text if len(text) <= 40 else text[:37] + "..."
        return f"line 1 is {shown!r}, not the expected header"
    if row is None or not row.strip():
        return "no data rows below the header"
    width = fields if fields is not None else text.count(",") + 1
    if row.count(b",") + 1 != width:
        return f"line 2 has {row.count(b',') + 1} fields, the header {width}"
    return None


def _first_lines(data: bytes) -> tuple[bytes, bytes | None]:
    first, newline, rest = data.partition(b"\n")
    return first, rest.partition(b"\n")[0] if newline else None


def _describe_motionsense(data_dir: Path) -> dict[str, Any]:
    root = data_dir / "motionsense"
    entry = {
        "name": "motionsense",
        "looked_in": str(root),
        "found": False,
        "get": f"{MOTIONSENSE_URL} (data/{MOTIONSENSE_ZIP})",
        "expected": MOTIONSENSE_LAYOUT,
    }
    try:
        src = find_motionsense(root)
        rows, problems = 0, []
        for key, data in src.read(sorted(src.files)):
            rows += max(0, _count_lines(data) - 1)  # minus the header
            problem = _csv_shape_problem(*_first_lines(data), fields=13, header=MOTIONSENSE_HEADER)
            if problem:
                problems.append(f"{src.display(key)}: {problem}")
    except DataError as exc:
        entry["problem"] = str(exc)
        return entry
    entry.update(
        {
            "found": True,
            "problem": _joined(problems),
            "layout": "zip" if src.kind == "zip" else "directory",
            "location": str(src.location),
            "subjects": len(src.subjects),
            "trials": src.trials,
            "trial_folders": src.folders,
            "files": len(src.files),
            "rows": rows,
            "subjects_info": str(src.subjects_info) if src.subjects_info else None,
        }
    )
    return entry


def _describe_extrasensory(data_dir: Path) -> dict[str, Any]:
    root = data_dir / "extrasensory"
    entry = {
        "name": "extrasensory",
        "looked_in": str(root),
        "found": False,
        "get": f"{EXTRASENSORY_URL} ({EXTRASENSORY_ZIP}, the per-user features_labels files)",
        "expected": EXTRASENSORY_LAYOUT,
    }
    try:
        src = find_extrasensory(root)
    except DataError as exc:
        entry["problem"] = str(exc)
        return entry
    rows, problems = 0, []
    for _uuid, path in sorted(src.files.items()):
        try:
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rb") as fh:
                head = fh.read(1 << 20)
                n = head.count(b"\n") + sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
            rows += max(0, n - 1)
            first, row = _first_lines(head)
            problem = _csv_shape_problem(first, row, fields=None, header=None)
            if problem is None and not first.startswith(b"timestamp,"):
                problem = "line 1 does not start with the 'timestamp' column"
            if problem:
                problems.append(f"{path.name}: {problem}")
        except (OSError, EOFError, zlib.error) as exc:
            problems.append(f"{path.name}: unreadable ({exc})")
    entry.update(
        {
            "found": True,
            "problem": _joined(problems),
            "location": str(src.location),
            "users": len(src.files),
            "files": len(src.files),
            "rows": rows,
        }
    )
    return entry


def _joined(problems: list[str], shown: int = 3) -> str | None:
    """The files that cannot be used, the first few named, on one line."""
    if not problems:
        return None
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return "; ".join(problems[:shown]) + more


def describe_datasets(data_dir: Path) -> list[dict[str, Any]]:
    """One dict per dataset for ``joulelab data``: where it looked, what it found, how to get what is missing.

    Keys: name, looked_in, found, problem (a DataError's line, or None), get (where to download),
    expected (the layout), and when found: location, subjects/users, trials, files, rows. Then
    one entry per dataset of the user's own (<data_dir>/custom/<name>/, custom: True; see
    engine.worker.data.custom.describe).
    Rows are counted from line counts (the gzip files are decompressed, not parsed); each file's
    header and first data row are read as its loader would, so an empty file or one with another
    header is named here rather than in a worker after its idle baseline.
    """
    from engine.worker.data import custom, synthetic

    data_dir = Path(data_dir)
    return [
        {
            "name": "synthetic",
            "looked_in": None,
            "found": True,
            "problem": None,
            "layout": "generated",
            "subjects": 24,
            "channels": len(synthetic.CHANNELS),
            "note": "embedded generator (per-subject gait signatures); results are labelled synthetic",
        },
        _describe_motionsense(data_dir),
        _describe_extrasensory(data_dir),
        *custom.describe(data_dir),
    ]


def format_descriptions(entries: list[dict[str, Any]]) -> str:
    """Plain text for a terminal: one block per dataset."""
    from engine.worker.data import custom

    lines = []
    for e in entries:
        if e.get("custom"):
            lines += custom.format_entry(e)
            continue
        if e["name"] == "synthetic":
            lines.append(f"synthetic      available  {e['subjects']} subjects, {e['note']}")
            continue
        if e["found"]:
            what = (
                f"{e['subjects']} subjects, trials {', '.join(map(str, e['trials']))}"
                if e["name"] == "motionsense"
                else f"{e['users']} users"
            )
            # A found dataset with an unreadable file is not fine: a run would refuse it.
            status = "damaged" if e.get("problem") else "found"
            lines.append(
                f"{e['name']:<14} {status:<10} {what}, {e['files']} files, {e['rows']:,} rows in {e['location']}"
            )
            if e.get("problem"):
                lines.append(f"{'':<14} problem    {e['problem']}")
        else:
            lines.append(f"{e['name']:<14} not found  looked in {e['looked_in']}")
            lines.append(f"{'':<14} problem    {e['problem']}")
            lines.append(f"{'':<14} get it     {e['get']}")
            lines.append(f"{'':<14} layout     {e['expected']}")
    return "\n".join(lines)
