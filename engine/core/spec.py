"""The run spec: everything one worker needs to run one configuration, validated in one place."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.core.errors import JouleLabError
from engine.core.records.config_key import ConfigKey, mode_label, with_power_limit
from engine.core.run_files import RUN_ID_RE
from engine.core.timestamps import compact_stamp

# auto, cpu, cuda or cuda:N (engine.worker.device resolves it on the worker's machine)
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")

DATASETS = ("synthetic", "motionsense", "extrasensory")
# A dataset of the user's own: <data_dir>/custom/<name>/data.npz (engine.worker.data.custom).
# Lower case, digits, "-" and "_", short: the name is the first part of every configuration key.
CUSTOM_DATASET = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")
SIZES = ("small", "big")
# A network of the user's own: "package.module:factory", factory(input_shape, n_classes, size, width)
MODEL_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
MODES = ("scratch", "transfer", "finetune")
# How transfer/finetune turn the source network into the target network: "replace" swaps its
# head for a new one; "extend" keeps the whole source network and adds layers on top (the study).
TRANSFER_HEADS = ("replace", "extend")


TDP_MAX_W = 2000.0  # tdp_w (and --tdp): above 0, at most this
# power_limit_w: above 0, at most this (today's largest boards allow about 1.2 kW); the GPU's own
# allowed range is checked by the worker, which reads it through NVML
POWER_LIMIT_MAX_W = 5000.0
# power_limit_fraction: of the GPU's default limit, above 0 and at most this (some boards allow
# more than their default); again the GPU's range decides
POWER_LIMIT_MAX_FRACTION = 2.0


class SpecError(JouleLabError):
    """An invalid spec value. The message is one line: what, where, and what is allowed."""


@dataclass(frozen=True)
class RunSpec:
    # What to run
    dataset: str = "synthetic"
    size: str = "small"
    mode: str = "scratch"
    # Training
    epochs: int = 3
    pretrain_epochs: int | None = None  # None: same as epochs
    batch_size: int = 64
    lr: float = 1e-3
    finetune_lr_factor: float = 0.1  # fine-tune trains the whole pretrained net at lr * this
    reuse_source: bool = True  # transfer/finetune start from a saved source network when one exists
    transfer_head: str = "replace"  # see TRANSFER_HEADS; ignored by scratch
    # A network of the user's own instead of JouleLab's ("package.module:factory", see
    # MODEL_PATTERN); None: the built-in network of `size`. Imported by the worker from
    # `model_dir` (the preset's folder; None: the current directory), never from a log or cache.
    model: str | None = None
    model_dir: str | None = None
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None leaves torch's default
    # Data parallel: train with DistributedDataParallel over this many processes on each node
    # (torch's elastic agent starts them; one GPU each on CUDA). 1 is the single-process run.
    procs_per_node: int = 1
    # Flush denormal floats to zero. Without it, some inputs (ExtraSensory's source users) drive
    # activations into denormals and training runs up to 20x slower on x86: an artefact, not a
    # property of the mechanism being measured.
    flush_denormal: bool = True
    # Where to train: "auto" (the first visible CUDA GPU if torch sees one, else the CPU), "cpu",
    # "cuda" or "cuda:N"; resolved by engine.worker.device, recorded in run.json
    device: str = "auto"
    # A multiplier of every layer's channels/units (1 = the study's network), to see how a
    # mechanism's savings scale with network size
    width: float = 1.0
    # Mechanisms (each measured)
    normalize: bool = True
    batchnorm: bool = True
    augment: bool = False
    prune: float = 0.0  # target global sparsity; 0 disables pruning
    prune_epochs: int = 1  # fine-tuning epochs after pruning
    amp: bool = False  # mixed precision (bf16 autocast, or fp16 with a grad scaler); CUDA only
    # The GPU's power limit for the run, set through NVML and restored afterwards (CUDA only):
    # in watts, or as a fraction of the GPU's default limit; at most one of the two
    power_limit_w: float | None = None
    power_limit_fraction: float | None = None
    # Measurement
    sample_hz: float = 10.0
    idle_s: float = 2.0
    test_min_s: float = 2.0  # inference repeats until it has run at least this long
    tdp_w: float | None = None  # CPU package TDP for the model meter; None: table or default
    # Before its idle baseline, wait up to this long for the GPU to cool back to the previous
    # run's idle temperature and power (0: do not wait; a warm start is still recorded)
    cooldown_s: float = 0.0
    # Data
    data_dir: str | None = None
    window: int = 128
    stride: int = 10
    val_fraction: float = 0.1
    synthetic_subjects: int = 24
    synthetic_seconds: float = 60.0
    source_group: tuple[str, ...] | None = None  # subject/user ids; None: the dataset's default
    target_group: tuple[str, ...] | None = None
    trials: tuple[int, ...] | None = None  # MotionSense trials; None: all present
    channels: str = "default"  # MotionSense: "default" (6) or "all" (12)
    label_filter: str | None = None  # ExtraSensory: e.g. "label:PHONE_IN_POCKET"
    # Bookkeeping
    run_id: str = ""
    logs_dir: str = "logs"
    preset: str | None = None
    config: str | None = None  # the configuration's key within a preset matrix
    batch: str | None = None  # id shared by the runs of one `joulelab run` (for `compare --last`)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        # Fields newer than most logs are written only when set, so a run that does not use them
        # has the spec it had before they existed (and no empty MLflow params)
        for key, default in WRITTEN_WHEN_SET.items():
            if out[key] == default:
                del out[key]
        for key in ("source_group", "target_group", "trials"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @property
    def effective_pretrain_epochs(self) -> int:
        return self.pretrain_epochs if self.pretrain_epochs is not None else self.epochs

    @property
    def mechanism(self) -> str:
        """The mechanisms switched on, by name ("baseline" when none; "+"-joined when several)."""
        names = [
            name
            for name, change in MECHANISMS.items()
            if change and all(getattr(self, k) == v if k != "prune" else self.prune > 0 for k, v in change.items())
        ]
        return with_power_limit("+".join(names) or "baseline", self.power_limit_w, self.power_limit_fraction)

    @property
    def mode_label(self) -> str:
        """The mode as configuration keys show it: "transfer", or "transfer-extend" for the
        extended head (replace is the default and stays implicit, as in older logs)."""
        return mode_label(self.mode, self.transfer_head)

    @property
    def network_name(self) -> str | None:
        """A user network's short name in keys and tables: its factory's name; None: built in."""
        return model_name(self.model)

    def describe(self) -> str:
        """The configuration key: dataset/size/mode/mechanism."""
        return str(
            ConfigKey.of(
                self.dataset,
                self.size,
                self.mode,
                self.mechanism,
                self.width,
                self.transfer_head,
                self.network_name,
                self.procs_per_node,
            )
        )


# Each mechanism is a named change to the plain baseline, so it can be measured against it.
MECHANISMS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "no-normalization": {"normalize": False},
    "no-batchnorm": {"batchnorm": False},
    "augmentation": {"augment": True},
    "pruning": {"prune": 0.5},
    "amp": {"amp": True},  # mixed precision on a CUDA GPU; refused (exit 2) on the CPU
    # The GPU's power limit: its value (power_limit_w or power_limit_fraction) comes from the
    # preset's matrix or settings, and the key names it ("power-limit-x0.8", "power-limit-250W");
    # refused (exit 2) on the CPU, without permission, or outside the GPU's range
    "power-limit": {},
}


FIELDS = {f.name: f for f in dataclasses.fields(RunSpec)}
WRITTEN_WHEN_SET: dict[str, Any] = {
    "procs_per_node": 1,
    "model": None,
    "model_dir": None,
    "power_limit_w": None,
    "power_limit_fraction": None,
}


def new_run_id() -> str:
    return compact_stamp() + "-" + secrets.token_hex(3)


def suggest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SpecError(
            f"{name}: {value!r} is not one of {', '.join(allowed)}"
            + (suggest(str(value), allowed) if isinstance(value, str) else "")
        )


def model_name(model: str | None) -> str | None:
    """ "package.module:factory" -> "factory" (how keys, labels and tables name a user network)."""
    return model.rpartition(":")[2] if model else None


def is_custom_dataset(name: str) -> bool:
    return name not in DATASETS and bool(CUSTOM_DATASET.match(name))


def _number(
    name: str, value: Any, kind: type, low: float | None = None, high: float | None = None, low_open: bool = False
) -> None:
    ok_type = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
    if isinstance(value, bool) or not ok_type:
        raise SpecError(f"{name}: expected {'a number' if kind is float else 'an integer'}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{name}: {value!r} is not a finite number")
    if low is not None and (value <= low if low_open else value < low):
        raise SpecError(f"{name}: {value!r} must be {'>' if low_open else '>='} {low:g}")
    if high is not None and value > high:
        raise SpecError(f"{name}: {value!r} must be <= {high:g}")


def target_problem(target: float) -> str | None:
    """Why a target accuracy is not usable, in one line; None when it is a fraction in (0, 1].
    Shared by `compare --target-accuracy`, a preset's target_accuracy and the lab's Results tab."""
    if 0 < target <= 1:
        return None
    hint = f" (for {target:g} % write {target / 100:g})" if 1 < target <= 100 else ""
    return f"expected a fraction of 1 in (0, 1], such as 0.9 for 90 %; got {target:g}{hint}"


def validate(spec: RunSpec) -> None:
    if not isinstance(spec.dataset, str) or not (spec.dataset in DATASETS or CUSTOM_DATASET.match(spec.dataset)):
        raise SpecError(
            f"dataset: {spec.dataset!r} is not one of {', '.join(DATASETS)}"
            + (suggest(spec.dataset, DATASETS) if isinstance(spec.dataset, str) else "")
            + ", nor a name of your own (lower case letters, digits, - and _, up to 24 characters: "
            "<data_dir>/custom/<name>/data.npz)"
        )
    if spec.model is not None and (not isinstance(spec.model, str) or not MODEL_PATTERN.match(spec.model)):
        raise SpecError(
            f"model: {spec.model!r} is not an import path 'package.module:factory' of a function "
            "factory(input_shape, n_classes, size, width) that returns a torch.nn.Module"
        )
    if spec.model_dir is not None and (not isinstance(spec.model_dir, str) or not spec.model_dir):
        raise SpecError(f"model_dir: expected a folder, got {spec.model_dir!r}")
    if spec.model is not None and spec.batchnorm is False:
        # JouleLab cannot take batch norm out of a network it did not build: the "mechanism"
        # would be measured against an identical network
        raise SpecError(
            f"batchnorm = false (no-batchnorm) with model {spec.model!r}: JouleLab removes batch norm from its "
            "own networks only; build your network without it in its factory instead"
        )
    _choice("size", spec.size, SIZES)
    _choice("mode", spec.mode, MODES)
    _choice("channels", spec.channels, ("default", "all"))
    _choice("transfer_head", spec.transfer_head, TRANSFER_HEADS)
    if not isinstance(spec.device, str) or not DEVICE_PATTERN.match(spec.device):
        raise SpecError(f"device: {spec.device!r} is not one of auto, cpu, cuda, cuda:N")
    _number("width", spec.width, float, 0, 64, low_open=True)
    _number("cooldown_s", spec.cooldown_s, float, 0, 3600)
    _number("epochs", spec.epochs, int, 1, 10_000)
    if spec.pretrain_epochs is not None:
        _number("pretrain_epochs", spec.pretrain_epochs, int, 1, 10_000)
    _number("batch_size", spec.batch_size, int, 1, 1 << 20)
    _number("lr", spec.lr, float, 0, 10, low_open=True)
    _number("finetune_lr_factor", spec.finetune_lr_factor, float, 0, 1, low_open=True)
    _number("seed", spec.seed, int, 0)
    if spec.threads is not None:
        _number("threads", spec.threads, int, 1, 1024)
    _number("procs_per_node", spec.procs_per_node, int, 1, 1024)
    if spec.procs_per_node > 1 and (spec.power_limit_w is not None or spec.power_limit_fraction is not None):
        # every rank would limit its own GPU, and the run would record and restore only rank 0's
        raise SpecError(
            f"power-limit with procs_per_node = {spec.procs_per_node}: a power limit applies to "
            "one-process runs only for now; sweep the limit at procs_per_node = 1"
        )
    if spec.procs_per_node > 1 and spec.device.startswith("cuda:"):
        raise SpecError(
            f"procs_per_node: {spec.procs_per_node} processes take one GPU each (cuda:0, cuda:1, ...); "
            f'device {spec.device!r} names one: use device = "cuda" or "auto"'
        )
    _number("prune", spec.prune, float, 0, 0.99)
    _number("prune_epochs", spec.prune_epochs, int, 0, 1000)
    _number("sample_hz", spec.sample_hz, float, 0.1, 100)
    _number("idle_s", spec.idle_s, float, 0, 3600)
    _number("test_min_s", spec.test_min_s, float, 0, 3600)
    if spec.tdp_w is not None:
        _number("tdp_w", spec.tdp_w, float, 0, TDP_MAX_W, low_open=True)
    if spec.power_limit_w is not None and spec.power_limit_fraction is not None:
        raise SpecError("power_limit_w and power_limit_fraction: set one of them, not both")
    if spec.power_limit_w is not None:
        _number("power_limit_w", spec.power_limit_w, float, 0, POWER_LIMIT_MAX_W, low_open=True)
    if spec.power_limit_fraction is not None:
        _number("power_limit_fraction", spec.power_limit_fraction, float, 0, POWER_LIMIT_MAX_FRACTION, low_open=True)
    _number("window", spec.window, int, 8, 100_000)
    _number("stride", spec.stride, int, 1, 100_000)
    _number("val_fraction", spec.val_fraction, float, 0, 0.5)
    _number("synthetic_subjects", spec.synthetic_subjects, int, 4, 1000)
    _number("synthetic_seconds", spec.synthetic_seconds, float, 10, 100_000)
    for bool_field in ("normalize", "batchnorm", "augment", "reuse_source", "flush_denormal", "amp"):
        if not isinstance(getattr(spec, bool_field), bool):
            raise SpecError(f"{bool_field}: expected true or false, got {getattr(spec, bool_field)!r}")
    for group in ("source_group", "target_group"):
        value = getattr(spec, group)
        if value is not None and len(value) == 0:
            raise SpecError(f"{group}: an empty group has no one to identify; list at least two ids")
    if spec.run_id and not RUN_ID_RE.match(spec.run_id):
        raise SpecError(
            f"run_id: {spec.run_id!r} may hold only ASCII letters, digits, '-' and '_' "
            "and must start with a letter or digit"
        )


def parse_power_limit(text: str, where: str = "--power-limit") -> dict[str, float]:
    """A power limit as a person writes it: "250W" (watts) or "0.7" (of the GPU's default limit),
    as the spec field it sets."""
    value = text.strip()
    key = "power_limit_w" if value[-1:] in ("W", "w") else "power_limit_fraction"
    try:
        number = float(value[:-1] if key == "power_limit_w" else value)
    except ValueError:
        raise SpecError(
            f"{where} {text!r}: expected watts such as 250W, or a fraction of the GPU's default limit such as 0.7"
        ) from None
    spec_from_dict({key: number}, where)
    return {key: number}


def spec_from_dict(data: dict[str, Any], where: str = "spec") -> RunSpec:
    """Build a spec from plain data (JSON, TOML), with one-line errors naming `where` and the key."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a table of settings, got {type(data).__name__}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in FIELDS:
            raise SpecError(f"{where}: unknown key {key!r}{suggest(key, FIELDS)}")
        if key in ("source_group", "target_group") and value is not None:
            if not isinstance(value, list):
                raise SpecError(f"{where}: {key}: expected a list of ids, got {value!r}")
            value = tuple(str(v) for v in value)
        elif key == "trials" and value is not None:
            if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise SpecError(f"{where}: trials: expected a list of trial numbers, got {value!r}")
            value = tuple(value)
        elif (
            key
            in (
                "lr",
                "finetune_lr_factor",
                "prune",
                "sample_hz",
                "idle_s",
                "test_min_s",
                "tdp_w",
                "val_fraction",
                "synthetic_seconds",
                "width",
                "cooldown_s",
                "power_limit_w",
                "power_limit_fraction",
            )
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            value = float(value)
        kwargs[key] = value
    try:
        return RunSpec(**kwargs)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None
