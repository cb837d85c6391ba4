"""The machine's noise floor: one configuration run against itself (A/A), paired by seed.

Two identical arms, A and B, run the same specs in counterbalanced order (AB, BA, AB, ...) so
that drift over the session (temperature, caches, background load) falls on both. Whatever
separates them is the machine and the meters, not a mechanism. From the pairs:

- the coefficient of variation of each metered phase's net energy over all runs;
- the A/B ratio of training energy and of energy per inference, with its 95 % interval (it must
  contain 1.0: a calibration that finds a "difference" between identical runs says the machine
  was not steady, and says so);
- sd of the log A/B ratios, from which the smallest ratio n pairs can tell from 1.0 follows:
  exp(t(n-1) x sd / sqrt(n)) - 1 (stats.NoiseFloor).

The result is saved per machine in the user cache, and verdicts on this machine's runs use it;
a saved file is validated on read (SavedFloor), and a damaged one is named and ignored.
"""

from __future__ import annotations

import math
import socket
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal, TypedDict

import msgspec

from engine.analysis.stats import (
    Estimate,
    EstimateDict,
    NoiseFloor,
    VerdictContext,
    contended_phases,
    inference_energy,
    meter_error,
    ratio_ci,
    training_energy,
    verdict,
)
from engine.core.energy import weakest_source
from engine.core.errors import JouleLabError
from engine.core.records import METERED_PHASES, TRAINING_PHASES, RunSummary
from engine.core.run_files import atomic_write_json
from engine.core.settings import env_var, settings
from engine.core.timestamps import now_stamp
from engine.orchestrate.presets import PlannedRun, Preset

ARMS = ("A", "B")
MIN_PAIRS = 5
FLOOR_AT = (3, 5, 10)


def calibration_path(host: str | None = None) -> Path:
    return settings().cache_root() / "calibration" / f"{host or socket.gethostname()}.json"


def calibration_plan(preset: Preset, keys: list[str], pairs: int) -> list[PlannedRun]:
    """A/A runs of the first of `keys` (configuration keys of the preset), counterbalanced."""
    config = next(c for c in preset.configs if c.key == keys[0])
    base = preset.specs[config.key]
    plan = []
    for i in range(pairs):
        for arm in ARMS if i % 2 == 0 else ARMS[::-1]:
            spec = replace(base, seed=base.seed + i, preset="calibrate", config=f"{config.key}#{arm}")
            plan.append(PlannedRun(config, i, spec))
    return plan


def arm_of(summary: RunSummary) -> str | None:
    config = summary.config or ""
    arm = config.rpartition("#")[2]
    return arm if arm in ARMS else None


class CalibrationRecord(TypedDict):
    """What `joulelab calibrate` saves per machine (JSON), and its table shows."""

    host: str
    measured: str
    config: str
    pairs: int
    runs: list[str]
    cv: dict[str, float]  # metered phase -> coefficient of variation of its net joules
    ratio: dict[str, EstimateDict]  # quantity ("train", "test") -> the A/B ratio
    sd_log: dict[str, float]
    floors: dict[str, dict[str, float | None]]  # quantity -> pairs (as text) -> relative floor
    contended_runs: int
    verdict: str


def analyse(summaries: list[RunSummary]) -> CalibrationRecord:
    """The calibration record (see the module doc) from complete A/A runs."""
    runs = [s for s in summaries if s.complete and arm_of(s)]
    by_arm = {arm: {s.seed: s for s in runs if arm_of(s) == arm} for arm in ARMS}
    seeds = sorted(set(by_arm["A"]) & set(by_arm["B"]))
    pairs = [(by_arm["A"][seed], by_arm["B"][seed]) for seed in seeds]
    if len(pairs) < 2:
        raise ValueError(f"calibration needs at least 2 complete A/A pairs, got {len(pairs)}")

    cv: dict[str, float] = {}
    for phase in METERED_PHASES:
        values = [t.net_j for s in runs if (t := s.total(phase)) is not None]
        if len(values) >= 2 and statistics.fmean(values) > 0:
            cv[phase] = statistics.stdev(values) / statistics.fmean(values)

    quantities: dict[str, Callable[[RunSummary], tuple[float, str] | None]] = {
        "train": training_energy,
        "test": inference_energy,
    }
    ratios: dict[str, Estimate] = {}
    sd_log: dict[str, float] = {}
    for name, fn in quantities.items():
        vals = [(ea, eb) for a, b in pairs if (ea := fn(a)) and (eb := fn(b)) and ea[0] > 0 and eb[0] > 0]
        if len(vals) >= 2:
            source = weakest_source([a[1] for a, _ in vals] + [b[1] for _, b in vals])
            ratio = ratio_ci([a[0] for a, _ in vals], [b[0] for _, b in vals], source)
            if ratio is not None:
                ratios[name] = ratio
            sd_log[name] = statistics.stdev([math.log(a[0] / b[0]) for a, b in vals])
    all_runs = [x for pair in pairs for x in pair]
    contended = sum(1 for x in all_runs if contended_phases(x))
    context = VerdictContext(
        max(meter_error(x, TRAINING_PHASES) for x in all_runs),
        max(meter_error(x, ("test",)) for x in all_runs),
        contended_runs=contended,
    )
    floor = NoiseFloor(
        socket.gethostname(),
        sd_log,
        len(pairs),
        now_stamp(),
        (runs[0].config or "").rpartition("#")[0],
    )
    return {
        "host": floor.host,
        "measured": floor.measured,
        "config": floor.config,
        "pairs": len(pairs),
        "runs": [x.run_id for x in all_runs],
        "cv": cv,
        "ratio": {k: v.as_dict() for k, v in ratios.items()},
        "sd_log": sd_log,
        "floors": {k: {str(n): floor.floor(k, n) for n in FLOOR_AT} for k in sd_log},
        "contended_runs": contended,
        "verdict": verdict("A", "B", ratios.get("train"), None, test_ratio=ratios.get("test"), context=context),
    }


class CalibrationError(JouleLabError):
    """The calibration cannot be saved where the cache setting says."""


# The standard deviation of log A/A ratios a saved floor may claim. At 0.5, identical runs would
# differ by a factor of 1.65 typically (a floor of +-100 % at 5 pairs): no machine fit to measure
# on does that, so a file claiming more is damaged, not a calibration.
MAX_SD_LOG = 0.5
MAX_FILE_BYTES = 1 << 20


class SavedFloor(msgspec.Struct):
    """The part of a saved calibration that verdicts use, validated on read (msgspec)."""

    host: str
    measured: str
    config: str
    pairs: Annotated[int, msgspec.Meta(ge=2)]
    sd_log: dict[Literal["train", "test"], Annotated[float, msgspec.Meta(ge=0, le=MAX_SD_LOG)]]


def check_saveable(host: str | None = None) -> Path:
    """Where the calibration will be saved, checked before the first run: the folder can be made
    and written, else one line with the reason and the setting to change."""
    path = calibration_path(host)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".probe-"):
            pass
    except OSError as exc:
        raise CalibrationError(
            f"cannot save a calibration in {path.parent} ({exc.strerror or exc}); "
            f"point {env_var('cache')} at a writable directory"
        ) from None
    return path


def save(record: CalibrationRecord) -> Path:
    """Write the record for its host; an OSError says why it could not be saved."""
    path = calibration_path(record["host"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
    return path


def read_noise_floor(host: str | None = None) -> tuple[NoiseFloor | None, str | None]:
    """This machine's saved noise floor and, when a file is there but cannot be used, why (one
    line naming the file). Never calibrated: (None, None)."""
    path = calibration_path(host)
    fix = "verdicts ignore it; run `joulelab calibrate` to measure the floor again"
    try:
        if not path.is_file():
            return None, (f"calibration {path} is not a regular file; {fix}" if path.exists() else None)
        if path.stat().st_size > MAX_FILE_BYTES:
            return None, f"calibration {path} is damaged (larger than {MAX_FILE_BYTES} bytes); {fix}"
        saved = msgspec.json.decode(path.read_bytes(), type=SavedFloor)
    except OSError as exc:
        return None, f"calibration {path} cannot be read ({exc.strerror or exc}); {fix}"
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return None, f"calibration {path} is damaged ({exc}); {fix}"
    sd_log = {str(quantity): sd for quantity, sd in saved.sd_log.items()}
    floor = NoiseFloor(saved.host, sd_log, saved.pairs, saved.measured, saved.config)
    return floor, None


def load_noise_floor(host: str | None = None, on_problem: Callable[[str], None] | None = None) -> NoiseFloor | None:
    """This machine's saved noise floor, or None (never calibrated, or damaged: `on_problem` is
    told why, in one line)."""
    floor, problem = read_noise_floor(host)
    if problem is not None and on_problem is not None:
        on_problem(problem)
    return floor
