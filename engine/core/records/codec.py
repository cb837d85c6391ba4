"""One JSON encoding and decoding of the run records, validated on read, with the readers of
older log schemas.

Log schema 1 is every log written before the key existed; schema 2 renamed fields so that
names carry their units and meaning (see `_V1_RENAMES`). A log newer than LOG_SCHEMA is refused
with one line that says to upgrade.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from engine.core.errors import EXIT_RUN_FAILED, JouleLabError
from engine.core.records.summary import LOG_SCHEMA, SCHEMA_KEY, Metrics, PretrainRecord, RunManifest, RunSummary

T = TypeVar("T", RunSummary, RunManifest)


class RecordError(JouleLabError):
    """A run record that cannot be read: damaged, not of its schema, or newer than this code."""

    exit_code = EXIT_RUN_FAILED


class NewerSchemaError(RecordError):
    """A log written by a newer JouleLab than this one."""


# Schema 1 name -> schema 2 name, per object.
_V1_METRICS = {
    "accuracy": "accuracy_frac",
    "f1_macro": "f1_macro_frac",
    "train_samples": "train_samples_seen",
    "source_accuracy": "source_accuracy_frac",
}
_V1_CURVE = {"val_accuracy": "val_accuracy_frac"}
_V1_PRETRAIN = {"source_accuracy": "source_accuracy_frac"}
_V1_PRUNING = {"accuracy_before_pruning": "accuracy_before_pruning_frac"}
SYNTHETIC_SUFFIX = " (synthetic)"  # schema 1 wrote the dataset's label, "synthetic (synthetic)"


def schema_of(data: dict[str, Any], what: str) -> int:
    """A log's schema version (1 when it has none); a newer one than this code reads is refused."""
    version = data.get(SCHEMA_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordError(f"{what} has a log schema of {version!r}, not a version number")
    if version > LOG_SCHEMA:
        raise NewerSchemaError(
            f"{what} was written by a newer JouleLab (schema {version}, this one reads up to {LOG_SCHEMA}): "
            "upgrade JouleLab to read it"
        )
    return version


def _renamed(obj: Any, names: dict[str, str]) -> Any:
    if not isinstance(obj, dict):
        return obj
    # a name already new (a stalled run's summary written from schema 2 events) is kept
    return {names.get(k, k) if names.get(k, k) not in obj else k: v for k, v in obj.items()}


def _metrics_from_v1(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = _renamed(metrics, _V1_METRICS)
    if isinstance(out.get("pruning"), dict):
        out["pruning"] = _renamed(out["pruning"], _V1_PRUNING)
    return out


def _summary_from_v1(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out["metrics"] = _metrics_from_v1(out.get("metrics") or {})
    out["curve"] = [_renamed(p, _V1_CURVE) for p in out.get("curve") or []]
    if isinstance(out.get("pretrain"), dict):
        out["pretrain"] = _renamed(out["pretrain"], _V1_PRETRAIN)
    # the oldest logs kept the idle baseline as bare watts
    out["idle_watts"] = {
        name: {"w": v} if isinstance(v, (int, float)) else v for name, v in (out.get("idle_watts") or {}).items()
    }
    dataset = out.get("dataset")
    if isinstance(dataset, str) and dataset.endswith(SYNTHETIC_SUFFIX):
        out["dataset"] = dataset.removesuffix(SYNTHETIC_SUFFIX)
    for key in ("phases", "network", "spec"):
        if out.get(key) is None:
            out[key] = {}
    for key in ("meters", "missing_meters", "meter_gaps"):
        if out.get(key) is None:
            out[key] = []
    out[SCHEMA_KEY] = LOG_SCHEMA
    return out


def _convert(data: dict[str, Any], kind: type[T], what: str) -> T:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise RecordError(f"{what} does not match log schema {LOG_SCHEMA}: {exc}") from None


def summary_from_json(data: dict[str, Any], what: str = "summary.json") -> RunSummary:
    """A summary from its decoded JSON object, of any schema this code reads."""
    if schema_of(data, what) == 1:
        data = _summary_from_v1(data)
    return _convert(data, RunSummary, what)


def metrics_from_json(data: dict[str, Any], what: str = "result event") -> Metrics:
    """A run's metrics as a `result` event carries them: schema 2 names from workers that write
    log schema 2, schema 1 names from the workers before (mapped; a name already new is kept)."""
    try:
        return msgspec.convert(_metrics_from_v1(data), Metrics)
    except msgspec.ValidationError as exc:
        raise RecordError(f"{what}: metrics do not match log schema {LOG_SCHEMA}: {exc}") from None


def manifest_from_json(data: dict[str, Any], what: str = "run.json") -> RunManifest:
    """run.json from its decoded JSON object (schema 1 differs only in not saying so)."""
    schema_of(data, what)
    return _convert({**data, SCHEMA_KEY: LOG_SCHEMA}, RunManifest, what)


def to_json_object(record: msgspec.Struct) -> dict[str, Any]:
    """A record as plain JSON types (for json.dump, and for events that carry one)."""
    out = msgspec.to_builtins(record)
    assert isinstance(out, dict)
    return out


def pretrain_from_json(data: dict[str, Any], what: str = "source cache record") -> PretrainRecord:
    """A saved pretraining record (the source cache keeps one beside each network; older ones use
    schema 1 names)."""
    try:
        return msgspec.convert(_renamed(data, _V1_PRETRAIN), PretrainRecord)
    except msgspec.ValidationError as exc:
        raise RecordError(f"{what} is not a pretraining record: {exc}") from None
