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

The result is saved per machine in the user cache, and verdicts on this machine's runs use it.
"""

from __future__ import annotations

import json
import math
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypedDict

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
from engine.core.records import METERED_PHASES, TRAINING_PHASES, RunSummary
from engine.orchestrate.presets import PlannedRun, Preset
from engine.worker.data.cache import cache_root
from engine.worker.meters.base import weakest_source

ARMS = ("A", "B")
MIN_PAIRS = 5
FLOOR_AT = (3, 5, 10)


def calibration_path(host: str | None = None) -> Path:
    return cache_root() / "calibration" / f"{host or socket.gethostname()}.json"


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
        time.strftime("%Y-%m-%dT%H:%M:%S%z"),
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


def save(record: CalibrationRecord) -> Path:
    path = calibration_path(record["host"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    return path


def load_noise_floor(host: str | None = None) -> NoiseFloor | None:
    """This machine's saved noise floor, or None (never calibrated, or the file is unreadable)."""
    try:
        record = json.loads(calibration_path(host).read_text())
        return NoiseFloor(
            record["host"],
            {k: float(v) for k, v in record["sd_log"].items()},
            int(record["pairs"]),
            str(record["measured"]),
            str(record["config"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
