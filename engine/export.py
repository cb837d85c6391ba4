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

import csv
import json
import math
import os
import platform
import tempfile
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from engine.store import EVENTS, FILE_MODE, RunRecord, read_events
from engine.stats import Comparison, ConfigStats

FORMATS = ("csv", "json", "parquet", "codecarbon")
TABLES = ("runs", "phases", "samples", "curve")

# Grid carbon intensity for --format codecarbon, in g CO2eq per kWh. The default is the world
# average electricity intensity reported by Ember for 2023 (~480 g/kWh); pass your grid's figure.
DEFAULT_CARBON_INTENSITY = 480.0

CODECARBON_COLUMNS = (
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate",
    "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed",
    "country_name", "country_iso_code", "region", "cloud_provider", "cloud_region", "os", "python_version",
    "codecarbon_version", "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude", "latitude",
    "ram_total_size", "tracking_mode", "on_cloud", "pue",
)


class ExportError(ValueError):
    """An export that cannot be written; one line with the path and the reason."""


def _config_parts(record: RunRecord) -> dict:
    spec = record.spec
    summary = record.summary or {}
    key = summary.get("config") or spec.get("config") or ""
    mechanism = key.split("/")[3] if key.count("/") == 3 else "baseline"
    return {"run_id": record.run_id, "preset": spec.get("preset"), "config": key,
            "dataset": spec.get("dataset"), "size": spec.get("size"), "mode": spec.get("mode"),
            "mechanism": mechanism, "seed": spec.get("seed")}


def runs_table(records: list[RunRecord]) -> pd.DataFrame:
    rows = []
    for r in records:
        s = r.summary or {}
        m = s.get("metrics", {})
        row = {**_config_parts(r), "status": r.status, "started": r.started, "synthetic": s.get("synthetic"),
               "last_phase": r.last_phase, "duration_s": s.get("duration_s"),
               "accuracy": m.get("accuracy"), "f1_macro": m.get("f1_macro"),
               "train_samples": m.get("train_samples"), "inferences": m.get("inferences"),
               "j_per_train_sample": (m.get("j_per_train_sample") or {}).get("value"),
               "j_per_inference": (m.get("j_per_inference") or {}).get("value")}
        sources = set()
        for phase in ("idle", "pretrain", "train", "prune", "test"):
            total = s.get("phases", {}).get(phase, {}).get("total")
            row[f"{phase}_net_j"] = total["net_j"] if total else None
            if total and total.get("source"):
                sources.add(total["source"])
        from engine.meters.base import weakest_source

        row["energy_source"] = weakest_source(sources) if sources else None
        row["energy_methods"] = ";".join(sorted({mth for p in s.get("phases", {}).values()
                                                 for mth in p.get("total", {}).get("methods", [])}))
        rows.append(row)
    return pd.DataFrame(rows)


def phases_table(records: list[RunRecord]) -> pd.DataFrame:
    rows = []
    for r in records:
        for phase, record in ((r.summary or {}).get("phases") or {}).items():
            for domain, e in record["energy"].items():
                rows.append({"run_id": r.run_id, "phase": phase, "domain": domain, "kind": e.get("kind"),
                             "duration_s": record["duration_s"], "gross_j": e["gross_j"], "idle_j": e["idle_j"],
                             "net_j": e["net_j"], "source": e["source"], "method": e["method"],
                             "partial": bool(record.get("partial")), "gap": bool(e.get("gap"))})
    return pd.DataFrame(rows, columns=["run_id", "phase", "domain", "kind", "duration_s", "gross_j", "idle_j",
                                       "net_j", "source", "method", "partial", "gap"])


def samples_table(records: list[RunRecord]) -> pd.DataFrame:
    rows = []
    for r in records:
        events, _ = read_events(r.path / EVENTS)
        t0 = events[0]["t"] if events else 0.0
        for e in events:
            if e["type"] != "sample":
                continue
            for domain, d in e["domains"].items():
                rows.append({"run_id": r.run_id, "t_s": e["t"] - t0, "domain": domain, "watts": d["w"],
                             "joules": d["j"], "source": d["source"], "method": d["method"]})
    return pd.DataFrame(rows, columns=["run_id", "t_s", "domain", "watts", "joules", "source", "method"])


def curve_table(records: list[RunRecord]) -> pd.DataFrame:
    rows = [{"run_id": r.run_id, **point} for r in records for point in (r.summary or {}).get("curve", [])]
    return pd.DataFrame(rows, columns=["run_id", "phase", "epoch", "val_accuracy", "cumulative_j", "source"])


def tables(records: list[RunRecord]) -> dict[str, pd.DataFrame]:
    return {"runs": runs_table(records), "phases": phases_table(records), "samples": samples_table(records),
            "curve": curve_table(records)}


def codecarbon_table(records: list[RunRecord], carbon_intensity_g_per_kwh: float = DEFAULT_CARBON_INTENSITY) -> pd.DataFrame:
    """One row per run in CodeCarbon's emissions.csv layout (energies in kWh, emissions in kg).

    Gross energy of the measured phases (idle baseline excluded), since that is what CodeCarbon
    reports. The extra `joulelab_energy_source` column keeps the provenance.
    """
    rows = []
    for r in records:
        s = r.summary or {}
        env = r.manifest.get("environment", {})
        by_kind = {"cpu": 0.0, "gpu": 0.0, "dram": 0.0}
        sources = set()
        duration = 0.0
        for phase, record in s.get("phases", {}).items():
            if phase == "idle":
                continue
            duration += record["duration_s"]
            for e in record["energy"].values():
                if e.get("kind") in by_kind:
                    by_kind[e["kind"]] += e["gross_j"]
                    sources.add(e["source"])
        kwh = {k: v / 3.6e6 for k, v in by_kind.items()}
        total_kwh = sum(kwh.values())
        emissions = total_kwh * carbon_intensity_g_per_kwh / 1000
        gpus = [m for m in s.get("meters", []) if m.get("kind") == "gpu"]
        from engine.meters.base import weakest_source

        rows.append({
            "timestamp": (s.get("ended") or r.started)[:19], "project_name": f"joulelab:{r.spec.get('preset') or 'run'}",
            "run_id": r.run_id, "experiment_id": s.get("config"), "duration": duration, "emissions": emissions,
            "emissions_rate": emissions / duration if duration else 0.0,
            "cpu_power": by_kind["cpu"] / duration if duration else 0.0,
            "gpu_power": by_kind["gpu"] / duration if duration else 0.0,
            "ram_power": by_kind["dram"] / duration if duration else 0.0,
            "cpu_energy": kwh["cpu"], "gpu_energy": kwh["gpu"], "ram_energy": kwh["dram"],
            "energy_consumed": total_kwh, "country_name": "", "country_iso_code": "", "region": "",
            "cloud_provider": "", "cloud_region": "", "os": env.get("platform", platform.platform()),
            "python_version": env.get("python", ""), "codecarbon_version": "", "cpu_count": env.get("logical_cpus"),
            "cpu_model": env.get("cpu_model", ""), "gpu_count": len(gpus), "gpu_model": "",
            "longitude": "", "latitude": "", "ram_total_size": env.get("memory_gb"), "tracking_mode": "process",
            "on_cloud": "N", "pue": 1.0,
            "joulelab_energy_source": weakest_source(sources) if sources else "",
        })
    return pd.DataFrame(rows, columns=[*CODECARBON_COLUMNS, "joulelab_energy_source"])


def write(records: list[RunRecord], fmt: str, out: Path,
          carbon_intensity: float = DEFAULT_CARBON_INTENSITY) -> list[Path]:
    """Write the export; `out` is a directory for csv/parquet (one file per table) and a file for
    json and codecarbon. Returns the paths written."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    try:
        if fmt == "codecarbon":
            path = out if out.suffix else out / "emissions.csv"
            _atomic(path, lambda p: codecarbon_table(records, carbon_intensity).to_csv(p, index=False,
                                                                                       quoting=csv.QUOTE_MINIMAL))
            return [path]
        data = tables(records)
        if fmt == "json":
            path = out if out.suffix else out / "joulelab.json"
            payload = {name: json.loads(df.to_json(orient="records")) for name, df in data.items()}
            _atomic(path, lambda p: Path(p).write_text(json.dumps(payload, indent=1)))
            return [path]
        written = []
        for name, df in data.items():
            path = out / f"{name}.{fmt}"
            if fmt == "csv":
                _atomic(path, lambda p, df=df: df.to_csv(p, index=False))
            else:
                _atomic(path, lambda p, df=df: df.to_parquet(p, index=False))
            written.append(path)
        return written
    except OSError as exc:
        raise ExportError(f"cannot write the export to {out}: {exc.strerror or exc}; "
                          "choose a writable path with -o") from None


def _atomic(path: Path, write_fn) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def comparison_records(stats: list[ConfigStats], comparisons: list[Comparison]) -> dict:
    """Stats and comparisons as plain data, for --format json (and anything else that wants it)."""
    def est(e):
        return e.as_dict() if e is not None else None

    return {
        "configs": [{"config": s.key, "dataset": s.dataset, "size": s.size, "mode": s.mode,
                     "mechanism": s.mechanism, "synthetic": s.synthetic, "trials": s.n, "seeds": s.seeds,
                     "train_net_j": est(s.train_j), "pretrain_net_j": est(s.pretrain_j),
                     "test_j_per_inference": est(s.test_j_per_inference),
                     "accuracy": est(s.accuracy), "f1_macro": est(s.f1),
                     "phase_net_j": {p: est(e) for p, e in s.phase_net_j.items()},
                     "phase_duration_s": {p: est(e) for p, e in s.durations.items()}} for s in stats],
        "comparisons": [{**{k: v for k, v in asdict(c).items()
                            if k not in ("train_ratio", "test_ratio", "accuracy_diff_points", "pretrain_j")},
                         "train_energy_ratio": est(c.train_ratio), "inference_energy_ratio": est(c.test_ratio),
                         "accuracy_change_points": est(c.accuracy_diff_points), "pretrain_net_j": est(c.pretrain_j),
                         # JSON has no infinity: "never pays back" is null with pays_back false
                         "break_even_runs": None if c.break_even_runs is None or math.isinf(c.break_even_runs)
                         else c.break_even_runs,
                         "pays_back": None if c.break_even_runs is None else not math.isinf(c.break_even_runs)}
                        for c in comparisons],
    }
