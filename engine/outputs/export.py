"""The one exporter: run logs -> tidy tables -> CSV, JSON, Parquet or CodeCarbon's emissions.csv.

Used by `joulelab export`, `joulelab run --format json` and the TUI's export action. Every table
that holds joules or watts has `source` and `method` columns; nothing is exported without them.

Tables (one row per ...):
    runs     run: configuration, status, accuracy, energies per phase (net), provenance
    phases   run x phase x domain: duration, gross/idle/net joules, source, method, partial, gap
    samples  run x sample x domain: time since start, watts, cumulative joules, source, method
    curve    run x epoch: validation accuracy and cumulative joules (energy-to-accuracy curve)
"""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import psutil

from engine.analysis.stats import Comparison, ConfigStats, Estimate, EstimateDict, Speedup
from engine.core.errors import JouleLabError
from engine.core.events import FAILED_STATUSES, PHASES, AnyEvent, RunStatus, Sample
from engine.core.records import ConfigKey
from engine.core.records.config_key import BASELINE
from engine.core.run_files import EVENTS, FILE_MODE
from engine.core.settings import DEFAULT_CARBON_INTENSITY
from engine.store.run_log import RunRecord, read_events

if TYPE_CHECKING:  # both untyped: these names only document what flows
    import pyarrow as pa
    from mlflow.tracking import MlflowClient
    from rich.console import Console

    from engine.orchestrate.worker_process import RunOutcome

FORMATS = ("csv", "json", "parquet", "codecarbon")
TABLES = ("runs", "phases", "samples", "curve")

# CodeCarbon 3.x's emissions.csv columns, in the order of its EmissionsData dataclass
# (codecarbon/output_methods/emissions_data.py, checked against codecarbon 3.3.2).
CODECARBON_COLUMNS = (
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
)


ENERGY_QUANTITIES = ("gross_j", "idle_j", "net_j")


class ExportError(JouleLabError):
    """An export that cannot be written; one line with the path and the reason."""


# Every table's columns and their types, fixed, so that chunks written one after another (CSV
# appends, Parquet row groups) agree even when a chunk has only missing values in a column.
_PHASE_NAMES = tuple(p for p in PHASES if p != "warmup")  # warmup is in no figure
COLUMNS: dict[str, dict[str, str]] = {
    "runs": {
        "run_id": "str",
        "preset": "str",
        "config": "str",
        "dataset": "str",
        "size": "str",
        "mode": "str",
        "mechanism": "str",
        "seed": "int",
        "status": "str",
        "started": "str",
        "synthetic": "bool",
        "last_phase": "str",
        "duration_s": "float",
        "accuracy": "float",
        "f1_macro": "float",
        "train_samples": "int",
        "inferences": "int",
        "j_per_train_sample": "float",
        "j_per_inference": "float",
        **{f"{p}_net_j": "float" for p in _PHASE_NAMES},
        "energy_source": "str",
        "energy_methods": "str",
    },
    "phases": {
        "run_id": "str",
        "phase": "str",
        "domain": "str",
        "kind": "str",
        "duration_s": "float",
        "gross_j": "float",
        "idle_j": "float",
        "net_j": "float",
        "source": "str",
        "method": "str",
        "partial": "bool",
        "gap": "bool",
        "error_rel": "float",
        "short": "bool",
        "others_cpu_share": "float",
        "contended": "bool",
    },
    "samples": {
        "run_id": "str",
        "t_s": "float",
        "domain": "str",
        "watts": "float",
        "joules": "float",
        "source": "str",
        "method": "str",
    },
    "curve": {
        "run_id": "str",
        "phase": "str",
        "epoch": "int",
        "val_accuracy": "float",
        "cumulative_j": "float",
        "source": "str",
    },
}
# One row of a table: column -> value (COLUMNS gives each column's type).
Row = dict[str, Any]
# Runs whose rows are built and written together: memory holds one chunk, never the history.
CHUNK_RUNS = 100


def _frame(rows: list[Row], columns: dict[str, str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(columns))
    for name, kind in columns.items():
        if kind == "int":
            df[name] = df[name].astype("Int64")
        elif kind == "float":
            df[name] = df[name].astype("float64")
        elif kind == "bool":
            df[name] = df[name].astype("boolean")
    return df


def _arrow_schema(columns: dict[str, str]) -> pa.Schema:
    import pyarrow as pa

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    return pa.schema([(name, types[kind]) for name, kind in columns.items()])


def _config_parts(record: RunRecord) -> Row:
    spec = record.spec
    key = (record.summary.config if record.summary is not None else None) or spec.get("config") or ""
    mechanism = ConfigKey.parse(key).mechanism if key.count("/") == 3 else BASELINE
    return {
        "run_id": record.run_id,
        "preset": spec.get("preset"),
        "config": key,
        "dataset": spec.get("dataset"),
        "size": spec.get("size"),
        "mode": spec.get("mode"),
        "mechanism": mechanism,
        "seed": spec.get("seed"),
    }


def _run_rows(r: RunRecord) -> list[Row]:
    from engine.core.energy import weakest_source

    s = r.summary
    row: Row = {**_config_parts(r), "status": r.status, "started": r.started, "last_phase": r.last_phase}
    if s is None:  # crashed or still running: no figures (an empty methods cell, as always)
        row["energy_methods"] = ""
        return [row]
    m = s.metrics
    # the export's column names are its own (documented in the README's log schema section)
    row.update(
        {
            "synthetic": s.synthetic,
            "duration_s": s.duration_s,
            "accuracy": m.accuracy_frac,
            "f1_macro": m.f1_macro_frac,
            "train_samples": m.train_samples_seen,
            "inferences": m.inferences,
            "j_per_train_sample": m.j_per_train_sample.value if m.j_per_train_sample else None,
            "j_per_inference": m.j_per_inference.value if m.j_per_inference else None,
        }
    )
    sources = set()
    for phase in _PHASE_NAMES:
        total = s.total(phase)
        row[f"{phase}_net_j"] = total.net_j if total is not None else None
        if total is not None and total.source:
            sources.add(total.source)
    row["energy_source"] = weakest_source(sources) if sources else None
    row["energy_methods"] = ";".join(sorted({mth for p in s.phases.values() for mth in p.total.methods}))
    return [row]


def _phase_rows(r: RunRecord) -> list[Row]:
    if r.summary is None:
        return []
    return [
        {
            "run_id": r.run_id,
            "phase": phase,
            "domain": domain,
            "kind": e.kind,
            "duration_s": record.duration_s,
            "gross_j": e.gross_j,
            "idle_j": e.idle_j,
            "net_j": e.net_j,
            "source": e.source,
            "method": e.method,
            "partial": record.partial,
            "gap": e.gap,
            # the meter's documented error and the machine's state (absent from older logs)
            "error_rel": e.error_rel,
            "short": e.short,
            "others_cpu_share": record.contention.others_cpu_share if record.contention else None,
            "contended": record.contended,
        }
        for phase, record in r.summary.phases.items()
        for domain, e in record.energy.items()
    ]


def _sample_rows(r: RunRecord) -> list[Row]:
    events, _ = read_events(r.path / EVENTS)
    t0 = events[0].t if events else 0.0
    return [
        {
            "run_id": r.run_id,
            "t_s": e.t - t0,
            "domain": domain,
            "watts": d["w"],
            "joules": d["j"],
            "source": d["source"],
            "method": d["method"],
        }
        for e in events
        if isinstance(e, Sample)
        for domain, d in e.domains.items()
    ]


def _curve_rows(r: RunRecord) -> list[Row]:
    if r.summary is None:
        return []
    # the export keeps its column name val_accuracy (a fraction, as in the summary's val_accuracy_frac)
    return [
        {
            "run_id": r.run_id,
            "phase": p.phase,
            "epoch": p.epoch,
            "val_accuracy": p.val_accuracy_frac,
            "cumulative_j": p.cumulative_j,
            "source": p.source,
        }
        for p in r.summary.curve
    ]


_ROWS = {"runs": _run_rows, "phases": _phase_rows, "samples": _sample_rows, "curve": _curve_rows}


def _table(records: list[RunRecord], name: str) -> pd.DataFrame:
    return _frame([row for r in records for row in _ROWS[name](r)], COLUMNS[name])


def runs_table(records: list[RunRecord]) -> pd.DataFrame:
    return _table(records, "runs")


def phases_table(records: list[RunRecord]) -> pd.DataFrame:
    return _table(records, "phases")


def samples_table(records: list[RunRecord]) -> pd.DataFrame:
    return _table(records, "samples")


def curve_table(records: list[RunRecord]) -> pd.DataFrame:
    return _table(records, "curve")


def tables(records: list[RunRecord]) -> dict[str, pd.DataFrame]:
    return {name: _table(records, name) for name in TABLES}


def _codecarbon_row(r: RunRecord, carbon_intensity_g_per_kwh: float) -> Row:
    from engine.core.energy import weakest_source

    s = r.summary
    assert s is not None  # codecarbon_table passes runs with a summary only
    env = r.manifest.environment
    by_kind = {"cpu": 0.0, "gpu": 0.0, "dram": 0.0}
    sources = set()
    duration = 0.0
    for phase, record in s.phases.items():
        if phase == "idle":
            continue
        duration += record.duration_s
        for e in record.energy.values():
            if e.kind in by_kind:
                by_kind[e.kind] += e.gross_j
                sources.add(e.source)
    kwh = {k: v / 3.6e6 for k, v in by_kind.items()}
    total_kwh = sum(kwh.values())
    emissions = total_kwh * carbon_intensity_g_per_kwh / 1000
    gpus = [m for m in s.meters if m.kind == "gpu"]
    return {
        "timestamp": (s.ended or r.started)[:19],
        "project_name": f"joulelab:{r.spec.get('preset') or 'run'}",
        "run_id": r.run_id,
        "experiment_id": s.config,
        "duration": duration,
        "emissions": emissions,
        "emissions_rate": emissions / duration if duration else 0.0,
        "cpu_power": by_kind["cpu"] / duration if duration else 0.0,
        "gpu_power": by_kind["gpu"] / duration if duration else 0.0,
        "ram_power": by_kind["dram"] / duration if duration else 0.0,
        "cpu_energy": kwh["cpu"],
        "gpu_energy": kwh["gpu"],
        "ram_energy": kwh["dram"],
        "energy_consumed": total_kwh,
        "country_name": "",
        "country_iso_code": "",
        "region": "",
        "cloud_provider": "",
        "cloud_region": "",
        "os": env.get("platform", platform.platform()),
        "python_version": env.get("python", ""),
        "codecarbon_version": "",
        "cpu_count": env.get("logical_cpus"),
        "cpu_model": env.get("cpu_model", ""),
        "gpu_count": len(gpus),
        "gpu_model": "",
        "longitude": "",
        "latitude": "",
        "ram_total_size": env.get("memory_gb"),
        "tracking_mode": "process",
        "on_cloud": "N",
        "pue": 1.0,
        "joulelab_energy_source": weakest_source(sources) if sources else "",
    }


def codecarbon_table(
    records: list[RunRecord], carbon_intensity_g_per_kwh: float = DEFAULT_CARBON_INTENSITY
) -> pd.DataFrame:
    """One row per run in CodeCarbon's emissions.csv layout (energies in kWh, emissions in kg).

    Gross energy of the measured phases (idle baseline excluded), since that is what CodeCarbon
    reports. The extra `joulelab_energy_source` column keeps the provenance. A run with no
    measured phase (it crashed before any) has no row: zero kWh would be a false measurement.
    """
    rows = [
        _codecarbon_row(r, carbon_intensity_g_per_kwh)
        for r in records
        if r.summary is not None and set(r.summary.phases) - {"idle"}
    ]
    return pd.DataFrame(rows, columns=[*CODECARBON_COLUMNS, "joulelab_energy_source"])


def _chunks(records: list[RunRecord]) -> Iterator[list[RunRecord]]:
    """The records to export, whole (a listing may hold light records), CHUNK_RUNS at a time.
    Damaged runs are never exported as data (the caller names them)."""
    from engine.store.run_log import load_run

    for i in range(0, len(records), CHUNK_RUNS):
        full = [load_run(r.path) for r in records[i : i + CHUNK_RUNS]]
        yield [r for r in full if r.problem is None]


def write(
    records: list[RunRecord], fmt: str, out: Path, carbon_intensity: float = DEFAULT_CARBON_INTENSITY
) -> list[Path]:
    """Write the export; `out` is a directory for csv/parquet (one file per table) and a file for
    json and codecarbon. Returns the paths written. Runs are read and written a chunk at a time,
    so memory stays flat however long the history is."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt in ("csv", "parquet") and out.suffix and not out.is_dir():
        raise ExportError(
            f"-o {out}: a {fmt} export is one file per table ({', '.join(f'{n}.{fmt}' for n in TABLES)}) "
            f"in a directory; give a directory (e.g. -o {out.with_suffix('')}/)"
        )
    try:
        if fmt == "codecarbon":
            path = out if out.suffix else out / "emissions.csv"

            def write_cc(p: str) -> None:
                with open(p, "w", newline="") as f:
                    for n, chunk in enumerate(_chunks(records)):
                        codecarbon_table(chunk, carbon_intensity).to_csv(
                            f, index=False, header=n == 0, quoting=csv.QUOTE_MINIMAL
                        )
                    if not records:
                        codecarbon_table([], carbon_intensity).to_csv(f, index=False)

            _atomic(path, write_cc)
            return [path]
        if fmt == "json":
            path = out if out.suffix else out / "joulelab.json"
            _atomic(path, lambda p: _write_json(records, p))
            return [path]
        paths = {name: out / f"{name}.{fmt}" for name in TABLES}
        _atomic_many(list(paths.values()), lambda tmps: _write_tables(records, fmt, dict(zip(TABLES, tmps))))
        return list(paths.values())
    except OSError as exc:
        raise ExportError(
            f"cannot write the export to {out}: {exc.strerror or exc}; choose a writable path with -o"
        ) from None


def _write_tables(records: list[RunRecord], fmt: str, tmps: dict[str, str]) -> None:
    """One pass over the runs, appending each chunk to every table (CSV rows, Parquet row groups)."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        writers = {name: pq.ParquetWriter(tmps[name], _arrow_schema(COLUMNS[name])) for name in TABLES}
        try:
            for chunk in _chunks(records):
                for name in TABLES:
                    df = _table(chunk, name)
                    writers[name].write_table(
                        pa.Table.from_pandas(df, schema=_arrow_schema(COLUMNS[name]), preserve_index=False)
                    )
        finally:
            for w in writers.values():
                w.close()
        return
    files = {name: open(tmps[name], "w", newline="") for name in TABLES}
    try:
        for name in TABLES:
            _frame([], COLUMNS[name]).to_csv(files[name], index=False)  # the header, once
        for chunk in _chunks(records):
            for name in TABLES:
                _table(chunk, name).to_csv(files[name], index=False, header=False)
    finally:
        for f in files.values():
            f.close()


def _write_json(records: list[RunRecord], path: str) -> None:
    """{"runs": [...], "phases": [...], ...}: each table's rows go to a part file as the chunks
    pass, then the parts are joined, so only one chunk is ever in memory."""
    # the parts' folder is named like the file's temporary, so a killed export's is removed too
    parts_prefix = Path(path).name.rpartition(".part-")[0] + ".part-parts-"
    with tempfile.TemporaryDirectory(dir=Path(path).parent, prefix=parts_prefix) as tmp:
        parts = {name: open(Path(tmp) / name, "w+") for name in TABLES}
        try:
            for chunk in _chunks(records):
                for name in TABLES:
                    for row in json.loads(_table(chunk, name).to_json(orient="records")):
                        f = parts[name]
                        f.write((",\n" if f.tell() else "") + json.dumps(row))
            with open(path, "w") as out:
                out.write("{")
                for i, name in enumerate(TABLES):
                    parts[name].seek(0)
                    out.write(("," if i else "") + f"\n{json.dumps(name)}: [\n")
                    while block := parts[name].read(1 << 20):
                        out.write(block)
                    out.write("\n]")
                out.write("\n}\n")
        finally:
            for f in parts.values():
                f.close()


def _temp_prefix(path: Path) -> str:
    """A temporary's name says whose it is: `.NAME.PID.part-`, so a later export can tell an
    export killed mid-write (its pid gone) from one still writing."""
    return f".{path.name}.{os.getpid()}.part-"


def _remove_stale_temporaries(path: Path) -> None:
    """Remove what an export of `path` killed mid-write left (hidden temporaries, up to MBs)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.part-*"):
        pid = stale.name[len(path.name) + 2 :].partition(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
            with contextlib.suppress(OSError):
                if stale.is_dir():
                    shutil.rmtree(stale)
                else:
                    stale.unlink()


def _atomic_many(paths: list[Path], write_fn: Callable[[list[str]], None]) -> None:
    """Write several files through temporaries; all are renamed into place only once all exist."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
    tmps = []
    try:
        for path in paths:
            fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=path.parent)
            os.close(fd)
            tmps.append(tmp)
        write_fn(tmps)
        for tmp, path in zip(tmps, paths, strict=True):
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise


def _atomic(path: Path, write_fn: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def comparison_records(
    stats: list[ConfigStats], comparisons: list[Comparison], speedups: list[Speedup] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Stats and comparisons as plain data, for --format json (and anything else that wants it);
    data-parallel scaling under "scaling" when the runs have any."""

    def est(e: Estimate | None) -> EstimateDict | None:
        return e.as_dict() if e is not None else None

    return {
        "configs": [
            {
                "config": s.key,
                "dataset": s.dataset,
                "size": s.size,
                "mode": s.mode,
                "mechanism": s.mechanism,
                "synthetic": s.synthetic,
                "trials": s.n,
                "seeds": s.seeds,
                "train_net_j": est(s.train_j),
                "pretrain_net_j": est(s.pretrain_j),
                "test_j_per_inference": est(s.test_j_per_inference),
                "accuracy": est(s.accuracy),
                "f1_macro": est(s.f1),
                "phase_net_j": {p: est(e) for p, e in s.phase_net_j.items()},
                "phase_duration_s": {p: est(e) for p, e in s.durations.items()},
                **({"energy_to_target": s.to_target.as_dict()} if s.to_target is not None else {}),
            }
            for s in stats
        ],
        "comparisons": [
            {
                **{
                    k: v
                    for k, v in asdict(c).items()
                    if k not in ("train_ratio", "test_ratio", "accuracy_diff_points", "pretrain_j", "to_target")
                },
                "train_energy_ratio": est(c.train_ratio),
                "inference_energy_ratio": est(c.test_ratio),
                "accuracy_change_points": est(c.accuracy_diff_points),
                "pretrain_net_j": est(c.pretrain_j),
                # JSON has no infinity: "never pays back" is null with pays_back false
                "break_even_runs": None
                if c.break_even_runs is None or math.isinf(c.break_even_runs)
                else c.break_even_runs,
                "pays_back": None if c.break_even_runs is None else not math.isinf(c.break_even_runs),
                **({"energy_to_target": c.to_target.as_dict()} if c.to_target is not None else {}),
            }
            for c in comparisons
        ],
        **(
            {
                "scaling": [
                    {
                        **{
                            k: v
                            for k, v in asdict(x).items()
                            if k not in ("speedup", "j_per_sample", "j_per_sample_one", "energy_ratio")
                        },
                        "speedup": est(x.speedup),
                        "j_per_train_sample": est(x.j_per_sample),
                        "j_per_train_sample_one_process": est(x.j_per_sample_one),
                        "energy_per_sample_ratio": est(x.energy_ratio),
                    }
                    for x in speedups
                ]
            }
            if speedups
            else {}
        ),
    }


# --- MLflow --------------------------------------------------------------------------------------
# `joulelab export --format mlflow` and a preset's `mlflow = true` log each run as an MLflow run.
# mlflow is imported only here, lazily: it takes seconds to import and is an optional extra.

MLFLOW_INSTALL = "pip install 'joulelab[mlflow]'"
MLFLOW_RUN_ID_TAG = "joulelab.run_id"  # finds a run already logged, so a second export adds nothing
DEFAULT_MLFLOW_EXPERIMENT = "joulelab"
_MLFLOW_STATUS: dict[RunStatus, str] = {
    "complete": "FINISHED",
    "cancelled": "KILLED",
    **dict.fromkeys(FAILED_STATUSES, "FAILED"),
}
_MLFLOW_BATCH = 100  # MLflow accepts at most 100 params or tags per batch


@dataclass(frozen=True)
class MlflowTarget:
    tracking_uri: str | None = None  # None: MLflow's own default (MLFLOW_TRACKING_URI, else ./mlflow.db)
    experiment: str = DEFAULT_MLFLOW_EXPERIMENT


@dataclass(frozen=True)
class MlflowLogged:
    run_id: str
    mlflow_run_id: str | None
    created: bool  # False: already logged (unchanged), or skipped (see note)
    note: str = ""


def mlflow_payload(record: RunRecord) -> tuple[dict[str, str], list[tuple[str, float, int]], dict[str, str]]:
    """A run as MLflow params (the spec), metrics (key, value, step) and tags (provenance)."""
    s = record.summary
    params = {k: "" if v is None else str(v) for k, v in sorted(record.spec.items())}
    synthetic = s.synthetic if s is not None else None
    tags = {
        "joulelab.status": record.status,
        "joulelab.config": _config_parts(record)["config"],
        "joulelab.dataset": str(record.spec.get("dataset")),
        "joulelab.synthetic": "unknown" if synthetic is None else str(bool(synthetic)).lower(),
    }
    metrics: list[tuple[str, float, int]] = []
    if s is None:
        return params, metrics, tags
    for phase, rec in s.phases.items():
        metrics.append((f"duration/{phase}_s", rec.duration_s, 0))
        total = rec.total
        metrics += [(f"energy/{phase}/{q}", getattr(total, q), 0) for q in ENERGY_QUANTITIES]
        tags[f"energy/{phase}.source"] = str(total.source)
        tags[f"energy/{phase}.methods"] = ";".join(total.methods)
        if rec.partial:
            tags[f"energy/{phase}.partial"] = "true"
        for domain, e in rec.energy.items():
            metrics += [(f"energy/{phase}/{domain}/{q}", getattr(e, q), 0) for q in ENERGY_QUANTITIES]
            tags[f"energy/{phase}/{domain}.source"] = e.source
            tags[f"energy/{phase}/{domain}.method"] = e.method
            if e.gap:
                tags[f"energy/{phase}/{domain}.gap"] = "true"
    pretrain = s.pretrain
    if pretrain is not None and pretrain.total is not None and "pretrain" not in s.phases:
        # the source network came from the cache: its (earlier) cost still counts for break-even
        metrics += [(f"pretrain_cost/{q}", getattr(pretrain.total, q), 0) for q in ENERGY_QUANTITIES]
        tags["pretrain_cost.source"] = str(pretrain.total.source)
        tags["pretrain_cost.run_id"] = str(pretrain.run_id)
    m = s.metrics
    # MLflow metric names stay as they were logged before log schema 2
    for key, value in (
        ("accuracy", m.accuracy_frac),
        ("f1_macro", m.f1_macro_frac),
        ("source_accuracy", m.source_accuracy_frac),
        ("train_samples", m.train_samples_seen),
        ("test_samples", m.test_samples),
        ("inferences", m.inferences),
    ):
        if value is not None:
            metrics.append((key, float(value), 0))
    for key, per in (("j_per_train_sample", m.j_per_train_sample), ("j_per_inference", m.j_per_inference)):
        if per is not None and per.value is not None:
            metrics.append((key, per.value, 0))
            tags[f"{key}.source"] = str(per.source)
            tags[f"{key}.basis"] = per.basis
    for point in s.curve:  # the energy-to-accuracy curve: one step per epoch
        phase, epoch = point.phase, point.epoch
        metrics.append((f"curve/{phase}/val_accuracy", point.val_accuracy_frac, epoch))
        metrics.append((f"curve/{phase}/cumulative_j", point.cumulative_j, epoch))
        tags[f"curve/{phase}.source"] = str(point.source)
    return params, metrics, tags


def _epoch_ms(stamp: str | None) -> int | None:
    from engine.core.timestamps import parse_stamp

    when = parse_stamp(stamp)
    return int(when.timestamp() * 1000) if when is not None else None


def _mlflow_client_class() -> type[MlflowClient]:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ExportError(
            f"--format mlflow needs MLflow, which is not installed; install it with: {MLFLOW_INSTALL}"
        ) from None
    return MlflowClient


def _mlflow_error(target: MlflowTarget, exc: Exception) -> ExportError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return ExportError(f"cannot log to MLflow at {target.tracking_uri or 'its default tracking URI'}: {first}")


def log_mlflow(records: list[RunRecord], target: MlflowTarget = MlflowTarget()) -> list[MlflowLogged]:
    """Log each run as an MLflow run in `target`. A run logged before (found by its run-id tag) is
    left unchanged; a run still running is skipped. Raises ExportError (one line)."""
    client_class = _mlflow_client_class()
    from mlflow.exceptions import MlflowException

    try:
        client = client_class(target.tracking_uri)
        experiment = client.get_experiment_by_name(target.experiment)
        experiment_id = (
            experiment.experiment_id if experiment is not None else client.create_experiment(target.experiment)
        )
        return [_log_one(client, experiment_id, r) for r in records]
    except (MlflowException, OSError) as exc:
        raise _mlflow_error(target, exc) from None


def _log_one(client: MlflowClient, experiment_id: str, record: RunRecord) -> MlflowLogged:
    from mlflow.entities import Metric, Param, RunTag

    if record.status == "running":
        return MlflowLogged(record.run_id, None, False, "still running; export it when it has ended")
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{MLFLOW_RUN_ID_TAG}` = '{record.run_id}'", max_results=1
    )
    if found:
        return MlflowLogged(record.run_id, found[0].info.run_id, False, "already logged; unchanged")
    params, metrics, tags = mlflow_payload(record)
    start_ms = _epoch_ms(record.started)
    end_ms = _epoch_ms(record.summary.ended if record.summary else None) or start_ms
    run = client.create_run(experiment_id, start_time=start_ms, run_name=record.run_id)
    rid = run.info.run_id
    try:
        stamp = end_ms or 0
        param_entities = [Param(k, v) for k, v in params.items()]
        metric_entities = [Metric(k, float(v), stamp, step) for k, v, step in metrics]
        tag_entities = [RunTag(k, v) for k, v in tags.items()]
        most = max(len(param_entities), len(metric_entities), len(tag_entities))
        for i in range(0, most, _MLFLOW_BATCH):  # up to a batch of each kind per call
            window = slice(i, i + _MLFLOW_BATCH)
            client.log_batch(
                rid, params=param_entities[window], metrics=metric_entities[window], tags=tag_entities[window]
            )
        for name in ("run.json", "summary.json"):
            if (record.path / name).exists():
                client.log_artifact(rid, str(record.path / name))
        # the run-id tag last: a run whose logging broke off is deleted below, never found as done
        client.set_tag(rid, MLFLOW_RUN_ID_TAG, record.run_id)
        client.set_terminated(rid, _MLFLOW_STATUS.get(record.status, "FAILED"), end_time=end_ms)
    except BaseException:
        client.delete_run(rid)
        raise
    return MlflowLogged(record.run_id, rid, True)


class MlflowLogger:
    """A preset's `mlflow = true`: each run logged to MLflow as soon as it has ended (a
    PlanObserver of engine.orchestrate.plan_runner). A failure to log is one line and the plan
    goes on (the run's own log is complete either way)."""

    url = None  # serves nothing

    def __init__(self, target: MlflowTarget, console: Console | None = None) -> None:
        self.target, self.console = target, console

    def start(self) -> MlflowLogger:
        return self

    def stop(self) -> None:
        pass

    def begin(self, run_id: str, configuration: str, sample_hz: float) -> None:
        pass

    def observe(self, event: AnyEvent) -> None:
        pass

    def end(self, outcome: RunOutcome) -> None:
        from engine.store.run_log import load_run

        try:
            (logged,) = log_mlflow([load_run(outcome.run_path)], self.target)
        except ExportError as exc:
            print(f"warning: run {outcome.run_id} was not logged to MLflow: {exc}", file=sys.stderr)
            return
        if self.console is not None and logged.created:
            self.console.print(
                f"logged {outcome.run_id} to MLflow (run {logged.mlflow_run_id}, "
                f"experiment {self.target.experiment!r})",
                highlight=False,
            )
