"""Presets: TOML files that describe a matrix of runs. Data, never code.

    # what this preset answers, and how long it takes here
    [preset]
    name = "quick"
    description = "..."
    trials = 2                        # seeds per configuration (seed = seed + trial index)
    mlflow = true                     # log each run to MLflow as it ends (optional:
    mlflow_tracking_uri = "..."       #   MLflow's default URI and experiment "joulelab")
    mlflow_experiment = "..."
    metrics_port = 9464               # serve live Prometheus metrics while it runs (optional;
    metrics_addr = "127.0.0.1"        #   127.0.0.1 unless given)
    target_accuracy = 0.9             # also show the energy to this validation accuracy (optional;
                                      #   the lab's Results tab, like `compare --target-accuracy`)

    [matrix]                          # every combination becomes one configuration
    dataset = ["synthetic"]
    size = ["small", "big"]
    mode = ["transfer", "scratch"]
    mechanism = ["baseline"]          # see MECHANISMS
    width = [1, 16]                   # optional: network width multipliers (keys say "big-x16")

    [settings]                        # any run-spec field, shared by every configuration
    epochs = 5

    [[override]]                      # per-configuration changes, applied in order
    match = { dataset = "extrasensory" }
    epochs = 20

Every mistake is reported in one line naming the file, the key and what is allowed.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.core.errors import JouleLabError
from engine.core.records.config_key import ConfigKey
from engine.core.spec import (
    DATASETS,
    FIELDS,
    MECHANISMS,
    MODES,
    SIZES,
    TRANSFER_HEADS,
    RunSpec,
    SpecError,
    spec_from_dict,
    suggest,
    target_problem,
)

MATRIX_KEYS = {
    "dataset": DATASETS,
    "size": SIZES,
    "mode": MODES,
    "mechanism": tuple(MECHANISMS),
    "transfer_head": TRANSFER_HEADS,
}
TOP_KEYS = ("preset", "matrix", "settings", "override")
PRESET_KEYS = (
    "name",
    "description",
    "trials",
    "mlflow",
    "mlflow_tracking_uri",
    "mlflow_experiment",
    "metrics_port",
    "metrics_addr",
    "target_accuracy",
)
MAX_TRIALS = 1000  # seeds per configuration, in a preset or on the command line
# A plan of more runs than this is started only when a person at a terminal confirms it
# (engine.cli.load_plan); without a terminal it is refused. Counting never expands the plan.
MAX_PLAN_RUNS = 1000
# What a run costs beyond its phases: starting the worker (imports, data) and writing its log, s.
RUN_OVERHEAD_S = 2.0
# Keys the matrix and the preset itself own; settings may not set them.
RESERVED = {"dataset", "size", "mode", "transfer_head", "seed", "run_id", "preset", "config", "batch"}


class PresetError(JouleLabError):
    """A preset that cannot be used; one line: file, key, what is allowed."""


@dataclass(frozen=True)
class Config:
    """One cell of the matrix: what varies, and the spec it runs (without its seed)."""

    dataset: str
    size: str
    mode: str
    mechanism: str
    transfer_head: str = "replace"  # scratch ignores it
    width: float = 1.0  # network width multiplier; part of the size in keys ("big-x16")

    @property
    def config_key(self) -> ConfigKey:
        return ConfigKey.of(self.dataset, self.size, self.mode, self.mechanism, self.width, self.transfer_head)

    @property
    def key(self) -> str:
        return str(self.config_key)

    @property
    def group(self) -> str:
        """Configurations that differ only in mode are compared with each other."""
        return self.config_key.across_modes

    def matches(self, match: dict[str, Any]) -> bool:
        return all(getattr(self, k) == v or (isinstance(v, list) and getattr(self, k) in v) for k, v in match.items())


@dataclass(frozen=True)
class PlannedRun:
    config: Config
    trial: int
    spec: RunSpec

    @property
    def label(self) -> str:
        """What this run is within its plan, e.g. "transfer augment · seed 1"."""
        mech = "" if self.config.mechanism == "baseline" else f" {self.config.mechanism}"
        return f"{self.spec.mode_label}{mech} · seed {self.spec.seed}"

    @property
    def pair(self) -> str:
        """The runs compared with each other: the configuration's group, trial by trial."""
        return f"{self.config.group} #{self.trial + 1}"


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    path: Path
    trials: int
    configs: tuple[Config, ...]
    specs: dict[str, RunSpec]  # config key -> spec with seed = the base seed
    mlflow: bool = False  # log each run to MLflow as it ends
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str | None = None
    metrics_port: int | None = None  # serve live Prometheus metrics while the plan runs
    metrics_addr: str | None = None
    target_accuracy: float | None = None  # the validation accuracy whose energy Results shows

    def title(self, runs: int) -> str:
        """How a plan of `runs` of this preset is called (the plan file, the lab's Live tab)."""
        return f"preset {self.name}: {runs} run{'s' if runs != 1 else ''}"

    def plan(self, trials: int | None = None) -> list[PlannedRun]:
        """Runs in execution order (see iter_plan), as a list."""
        return list(self.iter_plan(trials))

    def iter_plan(self, trials: int | None = None) -> Iterator[PlannedRun]:
        """Runs in execution order: per comparison group, trial by trial, every mode in turn, so
        that paired runs happen close together in time (same thermal state, same background).
        One at a time: memory does not grow with the number of runs."""
        n = trials or self.trials
        groups: dict[str, list[Config]] = {}
        for c in self.configs:
            groups.setdefault(c.group, []).append(c)
        for members in groups.values():
            for trial in range(n):
                for c in members:
                    base = self.specs[c.key]
                    yield PlannedRun(c, trial, replace(base, seed=base.seed + trial))

    def kept(self, only: dict[str, set[str]]) -> list[Config]:
        """The configurations `--only` keeps (parse_only)."""
        return [c for c in self.configs if all(getattr(c, k) in v for k, v in only.items())]

    def count(self, trials: int | None = None, only: dict[str, set[str]] | None = None) -> int:
        """How many runs plan(trials) filtered by `only` holds, without making them."""
        return len(self.kept(only or {})) * (trials or self.trials)

    def estimate(
        self, trials: int | None, only: dict[str, set[str]], past: dict[str, list[float]]
    ) -> tuple[float, str]:
        """(seconds, how that was estimated) for the plan: per configuration, the mean time of its
        past complete runs in `past` (past_run_seconds); for one never run, a floor from its
        settings (idle baseline, test time, cool-down, a run's overhead), training time unknown."""
        n = trials or self.trials
        total, guessed = 0.0, 0
        for c in self.kept(only):
            seen = past.get(c.key)
            if seen:
                total += n * sum(seen) / len(seen)
            else:
                spec = self.specs[c.key]
                total += n * (RUN_OVERHEAD_S + spec.idle_s + spec.test_min_s + spec.cooldown_s)
                guessed += 1
        kept = len(self.kept(only))
        if not guessed:
            return total, "an estimate from past runs of the same configurations in these logs"
        if guessed == kept:
            return total, "at least: an estimate from the settings, training time unknown (no past run here)"
        return total, f"at least: {guessed} of {kept} configurations never ran here, their training time unknown"


PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"


def resolve(name_or_path: str) -> Path:
    """A preset file path, or the name of one in ./presets or the bundled presets directory."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    for base in (Path("presets"), PRESETS_DIR):
        candidate = base / f"{name_or_path}.toml"
        if candidate.exists():
            return candidate
    available = sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))
    raise PresetError(
        f"no preset {name_or_path!r}{suggest(name_or_path, available)}; "
        f"available: {', '.join(available)}, or give a path to a .toml file"
    )


def available() -> list[Path]:
    return sorted(PRESETS_DIR.glob("*.toml"))


def load(name_or_path: str, overrides: dict[str, Any] | None = None) -> Preset:
    path = resolve(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PresetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{path}: not valid TOML ({exc})") from None
    return parse(data, path, overrides)


def parse(data: dict[str, Any], path: Path, overrides: dict[str, Any] | None = None) -> Preset:
    where = str(path)
    if not data:
        raise PresetError(f"{where}: empty preset; it needs at least a [matrix] table")
    for key in data:
        if key not in TOP_KEYS:
            raise PresetError(f"{where}: unknown table {key!r}{suggest(key, TOP_KEYS)}; allowed: {', '.join(TOP_KEYS)}")
    head = _table(data.get("preset", {}), where, "preset")
    for key in head:
        if key not in PRESET_KEYS:
            raise PresetError(
                f"{where}: [preset] unknown key {key!r}{suggest(key, PRESET_KEYS)}; allowed: {', '.join(PRESET_KEYS)}"
            )
    name = head.get("name", path.stem)
    description = head.get("description", "")
    trials = head.get("trials", 1)
    if not isinstance(name, str) or not isinstance(description, str):
        raise PresetError(f"{where}: [preset] name and description must be strings")
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
        raise PresetError(f"{where}: [preset] trials: expected an integer 1-{MAX_TRIALS}, got {trials!r}")
    integrations = _integrations(head, where)
    target = _target_accuracy(head.get("target_accuracy"), where)

    matrix = _table(data.get("matrix"), where, "matrix")
    axes: dict[str, list[Any]] = {}
    for key, values in matrix.items():
        if key == "width":  # numbers, not names: checked as the spec checks them
            axes["width"] = _widths(values, where)
            continue
        if key not in MATRIX_KEYS:
            raise PresetError(
                f"{where}: [matrix] unknown key {key!r}{suggest(key, MATRIX_KEYS)}; allowed: {', '.join(MATRIX_KEYS)}"
            )
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not values:
            raise PresetError(f"{where}: [matrix] {key}: expected a non-empty list, got {values!r}")
        for v in values:
            if v not in MATRIX_KEYS[key]:
                raise PresetError(
                    f"{where}: [matrix] {key}: {v!r} is not one of "
                    f"{', '.join(MATRIX_KEYS[key])}{suggest(str(v), MATRIX_KEYS[key])}"
                )
        if len(set(values)) != len(values):
            raise PresetError(f"{where}: [matrix] {key}: repeated values in {values!r}")
        axes[key] = values
    for key, default in (
        ("dataset", "synthetic"),
        ("size", "small"),
        ("mode", "scratch"),
        ("mechanism", "baseline"),
        ("transfer_head", "replace"),
    ):
        axes.setdefault(key, [default])

    settings = _table(data.get("settings", {}), where, "settings")
    _check_settings(settings, where, "[settings]")
    override_list = data.get("override", [])
    if not isinstance(override_list, list):
        raise PresetError(f"{where}: override must be an array of tables ([[override]])")
    for i, ov in enumerate(override_list, 1):
        ov = _table(ov, where, f"override #{i}")
        match = ov.get("match")
        if not isinstance(match, dict) or not match:
            raise PresetError(f"{where}: override #{i}: needs match = {{ dataset = ..., ... }}")
        for k, v in match.items():
            if k not in MATRIX_KEYS:
                raise PresetError(
                    f"{where}: override #{i} match: unknown key {k!r}{suggest(k, MATRIX_KEYS)}; "
                    f"allowed: {', '.join(MATRIX_KEYS)}"
                )
            for item in v if isinstance(v, list) else [v]:
                if item not in MATRIX_KEYS[k]:
                    raise PresetError(
                        f"{where}: override #{i} match: {k}: {item!r} is not one of {', '.join(MATRIX_KEYS[k])}"
                    )
        _check_settings({k: v for k, v in ov.items() if k != "match"}, where, f"override #{i}")

    if overrides:
        _check_settings(overrides, where, "command line")

    configs, specs = [], {}
    axes_in_order = (
        axes["dataset"],
        axes["size"],
        axes["mode"],
        axes["mechanism"],
        axes["transfer_head"],
        axes.get("width", [None]),
    )
    for dataset, size, mode, mechanism, transfer_head, width in itertools.product(*axes_in_order):
        if mode == "scratch":
            transfer_head = "replace"  # scratch has no source network: one configuration, whatever the axis says
        config = Config(dataset, size, mode, mechanism, transfer_head, width or 1.0)
        fields: dict[str, Any] = {**settings, **MECHANISMS[mechanism]}
        for ov in override_list:
            if config.matches(ov["match"]):
                fields.update({k: v for k, v in ov.items() if k != "match"})
        fields.update(overrides or {})
        if width is not None:
            fields["width"] = width  # the matrix's axis wins over settings
        config = replace(config, width=float(fields.get("width", 1.0)))
        if config.key in specs:
            continue
        fields.update(
            dataset=dataset, size=size, mode=mode, transfer_head=transfer_head, preset=name, config=config.key
        )
        try:
            specs[config.key] = spec_from_dict(fields, f"{where}: {config.key}")
        except SpecError as exc:
            raise PresetError(str(exc)) from None
        configs.append(config)
    return Preset(name, description, path, trials, tuple(configs), specs, **integrations, target_accuracy=target)


def _widths(values: Any, where: str) -> list[float]:
    values = values if isinstance(values, list) else [values]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 64 for v in values):
        raise PresetError(f"{where}: [matrix] width: expected a list of numbers > 0 and <= 64, got {values!r}")
    if len(set(values)) != len(values):
        raise PresetError(f"{where}: [matrix] width: repeated values in {values!r}")
    return [float(v) for v in values]


def _integrations(head: dict[str, Any], where: str) -> dict[str, Any]:
    """[preset] mlflow, mlflow_tracking_uri, mlflow_experiment, metrics_port, metrics_addr."""
    out: dict[str, Any] = {
        k: head[k]
        for k in ("mlflow", "mlflow_tracking_uri", "mlflow_experiment", "metrics_port", "metrics_addr")
        if k in head
    }
    if not isinstance(out.get("mlflow", False), bool):
        raise PresetError(f"{where}: [preset] mlflow: expected true or false, got {out['mlflow']!r}")
    for key in ("mlflow_tracking_uri", "mlflow_experiment", "metrics_addr"):
        if key in out and (not isinstance(out[key], str) or not out[key]):
            raise PresetError(f"{where}: [preset] {key}: expected a non-empty string, got {out[key]!r}")
    port = out.get("metrics_port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise PresetError(f"{where}: [preset] metrics_port: expected a port number 1-65535, got {port!r}")
    return out


def _target_accuracy(value: Any, where: str) -> float | None:
    """[preset] target_accuracy: a fraction in (0, 1], checked as `compare --target-accuracy` checks it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PresetError(f"{where}: [preset] target_accuracy: expected a number such as 0.9, got {value!r}")
    if problem := target_problem(value):
        raise PresetError(f"{where}: [preset] target_accuracy: {problem}")
    return float(value)


def _table(value: Any, where: str, name: str) -> dict[str, Any]:
    if value is None:
        raise PresetError(f"{where}: missing [{name}] table")
    if not isinstance(value, dict):
        raise PresetError(f"{where}: {name} must be a table, got {type(value).__name__}")
    return value


def _check_settings(settings: dict[str, Any], where: str, section: str) -> None:
    for key in settings:
        if key in RESERVED:
            raise PresetError(
                f"{where}: {section} {key!r} is set by the matrix or the preset, not here"
                + (" (use [matrix])" if key in MATRIX_KEYS else "")
            )
        if key not in FIELDS:
            raise PresetError(f"{where}: {section} unknown key {key!r}{suggest(key, FIELDS)}")
    try:
        spec_from_dict(settings, f"{where}: {section}")
    except SpecError as exc:
        raise PresetError(str(exc)) from None


def check_data(plan: list[PlannedRun]) -> None:
    """Refuse a plan whose real datasets are not where its runs will look, before the first run:
    otherwise every configuration that needs one would start and fail the same way in turn."""
    from engine.worker.data import DataError
    from engine.worker.data.locate import find_extrasensory, find_motionsense, resolve_data_dir

    finders = {"motionsense": find_motionsense, "extrasensory": find_extrasensory}
    needs: dict[tuple[str, str | None], int] = {}
    for p in plan:
        if p.spec.dataset in finders:
            key = (p.spec.dataset, p.spec.data_dir)
            needs[key] = needs.get(key, 0) + 1
    for (dataset, data_dir), runs in needs.items():
        try:
            finders[dataset](resolve_data_dir(data_dir) / dataset)
        except DataError as exc:
            many = runs > 1
            raise PresetError(
                f"{exc} ({runs} run{'s' if many else ''} of the plan need{'' if many else 's'} it; none was started)"
            ) from None


def parse_only(items: list[str]) -> dict[str, set[str]]:
    """`--only KEY=VALUE` filters: keep only configurations whose KEY is one of the VALUEs given
    (`--only mode=a --only mode=b` keeps both modes; different keys must all match)."""
    out: dict[str, set[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in MATRIX_KEYS:
            raise PresetError(f"--only {item!r}: expected KEY=VALUE with KEY one of {', '.join(MATRIX_KEYS)}")
        if value not in MATRIX_KEYS[key]:
            raise PresetError(
                f"--only {item!r}: {value!r} is not one of {', '.join(MATRIX_KEYS[key])}"
                f"{suggest(value, MATRIX_KEYS[key])}"
            )
        out.setdefault(key, set()).add(value)
    return out


def filter_plan(plan: Iterable[PlannedRun], only: dict[str, set[str]]) -> list[PlannedRun]:
    return [p for p in plan if all(getattr(p.config, k) in v for k, v in only.items())]


def past_run_seconds(logs_dir: Path) -> dict[str, list[float]]:
    """Seconds each configuration's complete runs took in these logs (their phases and a run's
    overhead), by configuration key: what Preset.estimate starts from."""
    from engine.store.run_log import list_runs

    found: dict[str, list[float]] = {}
    for r in list_runs(logs_dir, light=True):
        s = r.summary
        if r.status == "complete" and s is not None and s.config:
            phases = sum(p.duration_s for p in s.phases.values())
            found.setdefault(s.config, []).append(RUN_OVERHEAD_S + phases)
    return found


def plan_line(count: int, seconds: float, how: str) -> str:
    """What the CLI says before a plan starts: the count and the estimated time, labelled."""
    minutes = seconds / 60
    took = f"{seconds:.0f} s" if minutes < 2 else f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return f"{count} run{'s' if count != 1 else ''}, about {took} ({how})"
