"""What the lab will run: the form's choices (or a preset) turned into specs, one worker each.

Pure logic, no widgets: the lab form produces a `LabChoice`, `lab_plan` validates it through
engine.core.spec (the one place specs are checked) and returns the runs in order. "transfer vs scratch"
is a paired comparison: for each trial, a transfer run then a scratch run with the same seed, so
engine.analysis.stats can pair them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.core.records import ConfigKey
from engine.core.spec import RunSpec, model_name, new_run_id, spec_from_dict

if TYPE_CHECKING:
    from engine.orchestrate.plan_files import InterruptedPlan

PAIRED = "paired"
# (label shown, value); the first is the default.
MODE_CHOICES = (
    ("transfer vs scratch", PAIRED),
    ("scratch", "scratch"),
    ("transfer", "transfer"),
    ("fine-tune", "finetune"),
)
MODE_RUNS = {
    PAIRED: ("transfer", "scratch"),
    "scratch": ("scratch",),
    "transfer": ("transfer",),
    "finetune": ("finetune",),
}
SIZE_CHOICES = (("small", "small"), ("big", "big"))
DEVICE_CHOICES = (("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"))  # auto: the GPU when torch sees one
DATASET_LABELS = {"synthetic": "synthetic", "motionsense": "MotionSense", "extrasensory": "ExtraSensory"}


@dataclass(frozen=True)
class LabChoice:
    dataset: str = "synthetic"
    size: str = "small"
    mode: str = PAIRED
    normalize: bool = True
    batchnorm: bool = True
    augment: bool = False
    prune: bool = False
    epochs: int = 3
    trials: int = 1
    sample_hz: float = 10.0
    device: str = "auto"  # engine.worker.device: auto is the GPU when torch sees one, else the CPU
    # A network of the user's own (networks.toml, engine.orchestrate.presets.load_networks):
    # its factory "package.module:factory" and the folder its module is imported from
    model: str | None = None
    model_dir: str | None = None
    procs_per_node: int = 1  # data-parallel processes (DDP ranks); 1: the single-process run

    @property
    def mechanism(self) -> str:
        """One token naming the mechanisms changed from the baseline (engine.core.spec's names)."""
        return RunSpec(
            normalize=self.normalize, batchnorm=self.batchnorm, augment=self.augment, prune=0.5 if self.prune else 0.0
        ).mechanism


@dataclass(frozen=True)
class PlanItem:
    spec: RunSpec
    label: str  # what this run is within its plan, e.g. "transfer · seed 0"
    config: str  # dataset/size/mode/mechanism, the key engine.analysis.stats groups by
    pair: str | None = None  # runs with the same pair are shown side by side while they accumulate
    follow: bool = False  # a run already going (started elsewhere): followed through its log, not started
    plan_index: int | None = None  # its place in the plan file (engine.orchestrate.plan_files), when the plan has one


@dataclass(frozen=True)
class RunPlan:
    title: str
    items: tuple[PlanItem, ...]
    source: str = "lab"  # lab | preset | attached | resumed | followed
    paired: bool = False
    plan_file: Path | None = None  # a resumed plan's record (engine.orchestrate.plan_files); None: a new plan
    # A plan another process runs, followed from its plan file (read only): the lab follows its
    # runs from `first` on; the ones before ended before the lab looked, with these statuses.
    followed_file: Path | None = None
    first: int = 0
    ended_before: tuple[str, ...] = ()
    target_accuracy: float | None = None  # a preset's target: Results shows the energy to it

    @property
    def followed(self) -> bool:
        return self.followed_file is not None

    def pair_members(self, index: int) -> list[int]:
        """Indexes of the runs shown beside run `index` (itself included), in plan order."""
        pair = self.items[index].pair
        if pair is None:
            return [index]
        return [i for i, item in enumerate(self.items) if item.pair == pair]


def lab_plan(
    choice: LabChoice,
    *,
    defaults: dict[str, Any] | None = None,
    logs_dir: Path,
    data_dir: str | None = None,
    run_id: Callable[[], str] = new_run_id,
) -> RunPlan:
    """The runs for one press of Run. Raises engine.core.spec.SpecError (one line) on a bad value."""
    defaults = dict(defaults or {})
    base_seed = int(defaults.pop("seed", 0))
    modes = MODE_RUNS[choice.mode]
    items = []
    for trial in range(choice.trials):
        for mode in modes:
            network = model_name(choice.model)
            config = str(
                ConfigKey.of(
                    choice.dataset,
                    choice.size,
                    mode,
                    choice.mechanism,
                    network=network,
                    procs_per_node=choice.procs_per_node,
                )
            )
            fields = {
                **defaults,
                "dataset": choice.dataset,
                "size": choice.size,
                "mode": mode,
                "epochs": choice.epochs,
                "sample_hz": float(choice.sample_hz),
                "device": choice.device,
                "procs_per_node": choice.procs_per_node,
                "normalize": choice.normalize,
                "batchnorm": choice.batchnorm,
                "augment": choice.augment,
                "prune": 0.5 if choice.prune else 0.0,
                "seed": base_seed + trial,
                "logs_dir": str(logs_dir),
                "config": config,
                "run_id": run_id(),
            }
            if data_dir is not None:
                fields["data_dir"] = str(data_dir)
            if choice.model is not None:  # the user chose their own network in the form
                fields["model"] = choice.model
                fields["model_dir"] = choice.model_dir
            spec = spec_from_dict(fields, "lab")
            items.append(
                PlanItem(
                    spec, f"{mode} · seed {spec.seed}", config, pair=f"trial {trial + 1}" if len(modes) > 1 else None
                )
            )
    mech = "" if choice.mechanism == "baseline" else f" {choice.mechanism}"
    what = "transfer vs scratch" if choice.mode == PAIRED else choice.mode
    title = (
        f"{DATASET_LABELS.get(choice.dataset, choice.dataset)} "
        f"{f'{model_name(choice.model)} ' if choice.model else ''}{choice.size} {what}{mech}, "
        f"{choice.trials} trial{'s' if choice.trials != 1 else ''}"
    )
    return RunPlan(title, tuple(items), "lab", paired=len(modes) > 1)


def preset_plan(
    path: str | Path,
    *,
    logs_dir: Path,
    data_dir: str | None = None,
    run_id: Callable[[], str] = new_run_id,
    trials: int | None = None,
) -> RunPlan:
    """A preset's matrix, one worker at a time. Raises engine.orchestrate.presets.PresetError (one line)."""
    from engine.orchestrate import presets

    overrides: dict[str, Any] = {"logs_dir": str(logs_dir)}
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    loaded = presets.load(str(path), overrides)
    items = []
    for planned in loaded.plan(trials):
        spec = replace(planned.spec, run_id=run_id())
        items.append(PlanItem(spec, planned.label, planned.config.key, pair=planned.pair))
    groups: dict[str, int] = {}
    for c in loaded.configs:
        groups[c.group] = groups.get(c.group, 0) + 1
    return RunPlan(
        loaded.title(len(items)),
        tuple(items),
        "preset",
        paired=any(n > 1 for n in groups.values()),
        target_accuracy=loaded.target_accuracy,
    )


def attached_plan(run_path: Path) -> RunPlan:
    """A run started elsewhere and still going, as a plan of one run to follow."""
    import json

    from engine.core.run_files import RUN_JSON
    from engine.core.spec import spec_from_dict

    spec = spec_from_dict(json.loads((Path(run_path) / RUN_JSON).read_text())["spec"], str(run_path))
    config = spec.config or spec.describe()
    return RunPlan(
        f"attached to {spec.run_id} (started elsewhere)",
        (PlanItem(spec, f"{spec.mode_label} · seed {spec.seed}", config, follow=True),),
        "attached",
    )


def followed_plan(run_path: Path, logs_dir: Path) -> RunPlan | None:
    """The recorded plan that run `run_path` belongs to, followed from that run on (another
    process runs it: the CLI, another lab); None when no running plan names the run."""
    from engine.core.spec import spec_from_dict
    from engine.orchestrate.logs_watch import recorded_plan_of

    recorded = recorded_plan_of(logs_dir, Path(run_path).name)
    first = recorded.index_of(Path(run_path).name) if recorded is not None else None
    if recorded is None or first is None:
        return None
    items = []
    for index, item in enumerate(recorded.items):
        # the lab's logs directory, whatever the other process called it (a relative --logs)
        where = {"run_id": item.run_id or "", "logs_dir": str(logs_dir)}
        spec = spec_from_dict({**item.spec, **where}, str(recorded.path))
        label = item.label or f"{spec.mode_label} · seed {spec.seed}"
        config = item.config or spec.config or spec.describe()
        pair = item.pair
        items.append(PlanItem(spec, label, config, pair, follow=True, plan_index=index))
    pairs = {i.pair for i in items if i.pair}
    return RunPlan(
        recorded.title,
        tuple(items),
        "followed",
        paired=any(sum(1 for i in items if i.pair == p) > 1 for p in pairs),
        followed_file=recorded.path,
        first=first,
        ended_before=tuple(item.status or "ended" for item in recorded.items[:first]),
    )


def resumed_plan(interrupted: InterruptedPlan, run_id: Callable[[], str]) -> RunPlan:
    """An interrupted plan's remaining runs: follow those still
    going, start the others with new run ids."""
    from engine.core.spec import spec_from_dict

    items = []
    for rest in interrupted.remaining:
        fields = dict(rest.item.spec)
        if not rest.follow:
            fields["run_id"] = run_id()
        spec = spec_from_dict(fields, str(interrupted.path))
        items.append(
            PlanItem(
                spec,
                rest.item.label,
                rest.item.config,
                rest.item.pair,
                follow=rest.follow,
                plan_index=rest.index,
            )
        )
    pairs = {i.pair for i in items if i.pair}
    return RunPlan(
        f"resumed {interrupted.title}",
        tuple(items),
        "resumed",
        paired=any(sum(1 for i in items if i.pair == p) > 1 for p in pairs),
        plan_file=interrupted.path,
    )
