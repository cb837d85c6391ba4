"""spec -> real dataset: finds the data folder and calls the MotionSense, ExtraSensory or custom loader."""

from __future__ import annotations

from engine.core.spec import RunSpec, is_custom_dataset
from engine.worker.data import DataError, PreparedData
from engine.worker.data.locate import resolve_data_dir_with_origin

# Spec fields that apply to one dataset only; set on the other they are recorded as ignored.
MOTIONSENSE_ONLY = ("trials", "channels", "window", "stride")
EXTRASENSORY_ONLY = ("label_filter",)


def load_real(spec: RunSpec) -> PreparedData:
    """The spec's real dataset as source and target tasks (not standardised: prepare() does that)."""
    data_dir, origin = resolve_data_dir_with_origin(spec.data_dir)
    defaults = RunSpec()
    if spec.dataset == "motionsense":
        from engine.worker.data import motionsense

        data = motionsense.load(
            data_dir,
            trials=spec.trials,
            channels=spec.channels,
            window=spec.window,
            stride=spec.stride,
            source_group=spec.source_group,
            target_group=spec.target_group,
        )
        ignored = [f for f in EXTRASENSORY_ONLY if getattr(spec, f) != getattr(defaults, f)]
    elif spec.dataset == "extrasensory":
        from engine.worker.data import extrasensory

        data = extrasensory.load(
            data_dir, label_filter=spec.label_filter, source_group=spec.source_group, target_group=spec.target_group
        )
        ignored = [f for f in MOTIONSENSE_ONLY if getattr(spec, f) != getattr(defaults, f)]
    elif is_custom_dataset(spec.dataset):
        from engine.worker.data import custom

        data = custom.load(data_dir, spec.dataset, source_group=spec.source_group, target_group=spec.target_group)
        ignored = [f for f in (*MOTIONSENSE_ONLY, *EXTRASENSORY_ONLY) if getattr(spec, f) != getattr(defaults, f)]
    else:
        raise DataError(f"dataset {spec.dataset!r} has no real-data loader (motionsense, extrasensory)")
    data.info["data_dir"] = str(data_dir)
    data.info["data_dir_from"] = origin
    if ignored:
        data.info["ignored_settings"] = ignored
    return data
