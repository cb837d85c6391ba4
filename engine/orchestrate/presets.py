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
    dataset = ["synthetic"]           # or a dataset of your own: <data_dir>/custom/<name>/data.npz
    size = ["small", "big"]
    mode = ["transfer", "scratch"]
    mechanism = ["baseline"]          # see MECHANISMS
    model = ["mynets:tiny_cnn"]       # optional: networks of your own ("package.module:factory",
                                      #   imported from the preset's folder; keys say "tiny_cnn-small")
    width = [1, 16]                   # optional: network width multipliers (keys say "big-x16")
    power_limit_fraction = [0.8, 0.6] # optional, with mechanism "power-limit": the GPU power limits
                                      #   it runs at (or power_limit_w = [250, 200]); keys say
                                      #   "power-limit-x0.8"; the other mechanisms keep the GPU's limit
    procs_per_node = [1, 2]           # optional: data-parallel processes per node (keys say "small-p2")

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
from engine.core.records.config_key import POWER_LIMIT, ConfigKey, with_power_limit
from engine.core.spec import (
    DATASETS,
    FIELDS,
    MECHANISMS,
    MODEL_PATTERN,
    MODES,
    SIZES,
    TRANSFER_HEADS,
    RunSpec,
    SpecError,
    is_custom_dataset,
    model_name,
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
    "model": (),  # open: see OPEN_AXES
}
# Axes whose values are open: a dataset or network of the user's own is named, not listed here.
OPEN_AXES = {
    "dataset": (is_custom_dataset, "a dataset name of your own (<data_dir>/custom/<name>/data.npz)"),
    "model": (lambda v: bool(MODEL_PATTERN.match(v)), "an import path 'package.module:factory'"),
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
# Numeric axes of the power-limit mechanism: [matrix] power_limit_w = [250, 200] (watts) or
# power_limit_fraction = [0.8, 0.6] (of the GPU's default limit); each value is checked as the
# spec checks it.
POWER_LIMIT_AXES = ("power_limit_w", "power_limit_fraction")
# Keys the matrix and the preset itself own; settings may not set them.
RESERVED = {"dataset", "size", "mode", "transfer_head", "model_dir", "seed", "run_id", "preset", "config", "batch"}


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
    model: str | None = None  # a user network "package.module:factory"; keys say "factory-size"
    power_limit_w: float | None = None  # the GPU power limit it runs at (part of the mechanism in keys)
    power_limit_fraction: float | None = None
    procs_per_node: int = 1  # data-parallel processes per node; part of the size in keys ("small-p2")

    @property
    def config_key(self) -> ConfigKey:
        mechanism = with_power_limit(self.mechanism, self.power_limit_w, self.power_limit_fraction)
        return ConfigKey.of(
            self.dataset,
            self.size,
            self.mode,
            mechanism,
            self.width,
            self.transfer_head,
            model_name(self.model),
            self.procs_per_node,
        )

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
        mechanism = self.config.config_key.mechanism  # with its power limit, if any
        mech = "" if mechanism == "baseline" else f" {mechanism}"
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
        if key in NUMBER_AXES:
            axes[key] = _number_axis(key, values, where)
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
            problem = value_problem(key, v)
            if problem:
                raise PresetError(f"{where}: [matrix] {key}: {problem}")
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
    model_axis: list[str | None] = axes.pop("model", []) or [None]
    by_name: dict[str | None, str] = {}
    for model in model_axis:
        other = by_name.setdefault(model_name(model), str(model))
        if other != str(model):  # keys name a network by its factory: two of one name would merge
            raise PresetError(
                f"{where}: [matrix] model: {other!r} and {model!r} have the same factory name, which is how "
                "keys name a network; give one factory another name"
            )
    limit_axes = [k for k in POWER_LIMIT_AXES if k in axes]
    if len(limit_axes) > 1:
        raise PresetError(f"{where}: [matrix] power_limit_w and power_limit_fraction: give one of them, not both")
    if limit_axes and POWER_LIMIT not in axes["mechanism"]:
        raise PresetError(f"{where}: [matrix] {limit_axes[0]} needs mechanism = [..., {POWER_LIMIT!r}] to vary")
    # (axis name, value) per power limit; one entry of None where the matrix does not vary it
    limits: list[tuple[str, float] | None] = [(limit_axes[0], v) for v in axes[limit_axes[0]]] if limit_axes else [None]

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
                problem = value_problem(k, item)
                if problem:
                    raise PresetError(f"{where}: override #{i} match: {k}: {problem}")
        _check_settings({k: v for k, v in ov.items() if k != "match"}, where, f"override #{i}")

    if overrides:
        _check_settings(overrides, where, "command line")
    elsewhere = [
        section
        for section, table in (("[settings]", settings), ("the command line (--power-limit)", overrides or {}))
        if any(table.get(k) is not None for k in POWER_LIMIT_AXES)
    ] + [f"override #{i}" for i, ov in enumerate(override_list, 1) if any(k in ov for k in POWER_LIMIT_AXES)]
    if limit_axes and elsewhere:
        raise PresetError(
            f"{where}: [matrix] {limit_axes[0]} sweeps the power limit, and {elsewhere[0]} sets one too; "
            "give the limits in one place"
        )

    configs, specs = [], {}
    axes_in_order = (
        axes["dataset"],
        axes["size"],
        axes["mode"],
        axes["mechanism"],
        axes["transfer_head"],
        axes.get("width", [None]),
        model_axis,
        limits,
        axes.get("procs_per_node", [None]),
    )
    for dataset, size, mode, mechanism, transfer_head, width, model, limit, procs in itertools.product(*axes_in_order):
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
        if model is not None:
            fields["model"] = model
        if fields.get("model"):
            # the user's network is imported from the preset's folder: the preset names it
            fields["model_dir"] = str(path.resolve().parent)
        if limit is not None and mechanism == POWER_LIMIT:  # the axis varies the power-limit mechanism only
            fields[limit[0]] = limit[1]
        if mechanism == POWER_LIMIT and all(fields.get(k) is None for k in POWER_LIMIT_AXES):
            raise PresetError(
                f"{where}: mechanism {POWER_LIMIT!r} needs a limit: power_limit_w or power_limit_fraction "
                "in [matrix] or [settings]"
            )
        if procs is not None:
            fields["procs_per_node"] = procs
        config = replace(
            config,
            width=float(fields.get("width", 1.0)),
            model=fields.get("model"),
            power_limit_w=fields.get("power_limit_w"),
            power_limit_fraction=fields.get("power_limit_fraction"),
            procs_per_node=int(fields.get("procs_per_node", 1)),
        )
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


def value_problem(key: str, value: Any) -> str | None:
    """Why `value` cannot be on the matrix axis `key` (one of MATRIX_KEYS), or None."""
    if value in MATRIX_KEYS[key]:
        return None
    allowed = ", ".join(MATRIX_KEYS[key])
    if key in OPEN_AXES:
        accepts, what = OPEN_AXES[key]
        if isinstance(value, str) and accepts(value):
            return None
        return f"{value!r} is not one of {allowed}{suggest(str(value), MATRIX_KEYS[key])}, nor {what}"
    return f"{value!r} is not one of {allowed}{suggest(str(value), MATRIX_KEYS[key])}"


# Matrix axes of numbers, not names: each value is checked as the spec checks that field (one home
# for the ranges), and the axis gives the values as the spec's type
NUMBER_AXES: dict[str, type] = {
    "width": float,
    "power_limit_w": float,
    "power_limit_fraction": float,
    "procs_per_node": int,
}


def _number_axis(key: str, values: Any, where: str) -> list[Any]:
    values = values if isinstance(values, list) else [values]
    if not values:
        raise PresetError(f"{where}: [matrix] {key}: expected a non-empty list of numbers")
    for v in values:
        try:
            spec_from_dict({key: v}, f"{where}: [matrix]")
        except SpecError as exc:
            raise PresetError(str(exc)) from None
    if len(set(values)) != len(values):
        raise PresetError(f"{where}: [matrix] {key}: repeated values in {values!r}")
    return [NUMBER_AXES[key](v) for v in values]


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
    from engine.worker.data import DataError, custom
    from engine.worker.data.locate import find_extrasensory, find_motionsense, resolve_data_dir

    finders = {"motionsense": find_motionsense, "extrasensory": find_extrasensory}
    needs: dict[tuple[str, str | None], int] = {}
    for p in plan:
        if p.spec.dataset in finders or is_custom_dataset(p.spec.dataset):
            key = (p.spec.dataset, p.spec.data_dir)
            needs[key] = needs.get(key, 0) + 1
    for (dataset, data_dir), runs in needs.items():
        try:
            if dataset in finders:
                finders[dataset](resolve_data_dir(data_dir) / dataset)
            else:  # the user's own: found, and its arrays usable (one line naming the file and the fix)
                custom.read(custom.find(resolve_data_dir(data_dir), dataset))
        except DataError as exc:
            many = runs > 1
            raise PresetError(
                f"{exc} ({runs} run{'s' if many else ''} of the plan need{'' if many else 's'} it; none was started)"
            ) from None


NETWORKS_FILE = "networks.toml"


@dataclass(frozen=True)
class UserNetwork:
    """A network of the user's own that the lab's form offers (from networks.toml)."""

    name: str  # what the form shows
    model: str  # "package.module:factory"
    folder: str | None  # where its module is imported from; None: the current directory


def networks_file() -> Path:
    from engine.core.settings import settings

    return settings().config_root() / NETWORKS_FILE


def load_networks(path: Path | None = None) -> list[UserNetwork]:
    """The networks the lab's form offers beside small and big, from networks.toml in the lab's
    configuration folder (absent: none). Data, never code: the factory is imported only by the
    worker of a run the user starts with it.

        [networks.tiny]
        model = "mynets:tiny_cnn"        # package.module:factory
        path = "/home/me/nets"           # optional: the folder of the module (default: the current one)
    """
    path = path or networks_file()
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PresetError(f"{path}: cannot read ({exc})") from None
    table = data.get("networks", {})
    if not isinstance(table, dict) or set(data) - {"networks"}:
        raise PresetError(f'{path}: expected only [networks.<name>] tables with model = "package.module:factory"')
    out = []
    for name, entry in table.items():
        model = entry.get("model") if isinstance(entry, dict) else None
        if not isinstance(model, str) or not MODEL_PATTERN.match(model):
            raise PresetError(f'{path}: [networks.{name}] model: expected "package.module:factory", got {model!r}')
        folder = entry.get("path")
        if folder is not None and not isinstance(folder, str):
            raise PresetError(f"{path}: [networks.{name}] path: expected a folder, got {folder!r}")
        out.append(UserNetwork(name, model, str(Path(folder).expanduser()) if folder else None))
    return out


def user_networks(specs: Iterable[RunSpec]) -> list[str]:
    """What the CLI says before a plan that runs user code: each network's import path and the
    folders its module is imported from (the user named it; see engine.worker.networks)."""
    seen: dict[str, str | None] = {}
    for spec in specs:
        if spec.model is not None:
            seen.setdefault(spec.model, spec.model_dir)
    return [
        f"network {model_name(model)}: your code, {model}, imported by each worker from "
        f"{folder or 'the current directory'} (then the current directory and installed packages)"
        for model, folder in seen.items()
    ]


def parse_only(items: list[str]) -> dict[str, set[str]]:
    """`--only KEY=VALUE` filters: keep only configurations whose KEY is one of the VALUEs given
    (`--only mode=a --only mode=b` keeps both modes; different keys must all match)."""
    out: dict[str, set[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in MATRIX_KEYS:
            raise PresetError(f"--only {item!r}: expected KEY=VALUE with KEY one of {', '.join(MATRIX_KEYS)}")
        problem = value_problem(key, value)
        if problem:
            raise PresetError(f"--only {item!r}: {problem}")
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
