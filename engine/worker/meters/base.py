"""What every meter is: named domains, each read as cumulative joules, each with its provenance."""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from engine.core.errors import EXIT_RUN_FAILED, JouleLabError
from engine.core.events import SOURCES


class MeterError(JouleLabError):
    """A meter could not be read. The message says why and, where there is one, the fix."""

    exit_code = EXIT_RUN_FAILED  # the machine's, not the user's input


@dataclass(frozen=True)
class Domain:
    """One thing that uses energy, and how its joules are obtained.

    name:   unique within a run ("package-0", "dram-0", "gpu0", "cpu", "dram")
    source: "counter" (a hardware energy counter), "polled" (power readings integrated over time)
            or "modelled" (an estimate from utilisation; never a measurement)
    method: the exact means, e.g. "rapl:package-0", "nvml:gpu0:energy-counter", "model:tdp-cpu-time"
    kind:   "cpu", "dram", "gpu", "platform" (psys: reported, never added to the others) or
            "cross-check" (a second method for a domain already counted, e.g. NVML's polled power
            beside its energy counter: reported, never added)
    """

    name: str
    source: str
    method: str
    kind: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown energy source {self.source!r}")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


# Kinds reported but never summed into a total: they would count energy twice.
PLATFORM = "platform"
CROSS_CHECK = "cross-check"
NOT_IN_TOTALS = frozenset({PLATFORM, CROSS_CHECK})


def in_totals(kind: str | None) -> bool:
    return kind not in NOT_IN_TOTALS


@dataclass(frozen=True)
class Missing:
    """A meter that is not available here, and why (shown to the user and kept in run.json)."""

    meter: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class Meter(ABC):
    """A source of cumulative energy for one or more domains.

    `read()` returns joules per domain since the meter was opened, never decreasing. Counters
    handle wraparound inside `read()`, so a caller must read at least once per wrap period; the
    sampler does. `read()` raises MeterError when the hardware stops answering.
    """

    domains: tuple[Domain, ...] = ()

    @abstractmethod
    def read(self) -> dict[str, float]: ...

    def close(self) -> None:  # noqa: B027 - most meters hold nothing to release
        pass

    def manifest(self) -> dict[str, Any]:
        """What run.json records about this meter (limits, driver versions, TDP used...): its own
        shape per meter, kept as written (free-form JSON beside the typed records)."""
        return {}

    def basis(self) -> dict[str, dict[str, float]]:
        """For modelled domains: what one joule was modelled from (see ModelMeter.basis)."""
        return {}

    def take_gaps(self) -> dict[str, str]:
        """Domains whose energy since the last call is unknown although the meter answered (a
        counter reset, wraps lost while nobody read), with why; cleared by the call."""
        return {}


class MeterUnavailable(JouleLabError):
    """A meter that cannot be opened on this machine; the message is the reason shown to users."""

    exit_code = EXIT_RUN_FAILED


# From strongest to weakest evidence. A value computed from several inputs is only as strong as
# its weakest input: a sum of a counter and a model is modelled.
SOURCE_STRENGTH = {"counter": 0, "polled": 1, "modelled": 2}


def weakest_source(sources: Iterable[str]) -> str:
    values = list(sources)
    if not values:
        raise ValueError("no sources")
    return max(values, key=SOURCE_STRENGTH.__getitem__)


@dataclass(frozen=True)
class Uncertainty:
    """What a meter cannot resolve, as documented for it (the README's table lists the sources).

    relative: error of one phase's joules that does not cancel when two runs on the same meter
              are compared (a ratio), as a fraction
    update_s: how often the value changes (counter update period, polling period or averaging
              window, CPU-time tick): each phase edge can be off by up to this much time
    """

    relative: float
    update_s: float
    basis: str


# Looked up by method pattern (fnmatch), most specific first.
UNCERTAINTY: tuple[tuple[str, Uncertainty], ...] = (
    (
        "rapl:*",
        Uncertainty(
            0.02,
            0.001,
            "RAPL: counters updated about every 1 ms (Intel SDM vol. 3B, 15.10); "
            "package energy tracks wall-plug measurements within a few percent "
            "(Khan et al., ACM TOMPECS 2018)",
        ),
    ),
    (
        "nvml:*:power-integrated",
        Uncertainty(
            0.05,
            1.0,
            "NVML power: +/-5 % (nvmlDeviceGetPowerUsage); on Ampere "
            "and newer (except GA100) a 1 s average, and on A100/H100 "
            "it samples only part of each second",
        ),
    ),
    (
        "nvml:*",
        Uncertainty(
            0.05,
            0.1,
            "NVML: power accurate to +/-5 % (nvmlDeviceGetPowerUsage); the energy "
            "counter and power readings update about every 100 ms",
        ),
    ),
    (
        "model:tdp-cpu-time*",
        Uncertainty(
            0.10,
            0.01,
            "model: CPU time is exact to a 10 ms tick; power per busy "
            "core varies by about 10 % between workloads at one clock "
            "(an assumption, not a measurement)",
        ),
    ),
    (
        "model:*",
        Uncertainty(
            0.10,
            0.0,
            "model: resident memory x 0.375 W/GB, read at every phase edge (an assumption, not a measurement)",
        ),
    ),
)

# A phase shorter than this many update periods is flagged `short`: its edges alone can be off by
# more than 10 %.
SHORT_PHASE_PERIODS = 10


def uncertainty(method: str) -> Uncertainty:
    for pattern, value in UNCERTAINTY:
        if fnmatch.fnmatchcase(method, pattern):
            return value
    return Uncertainty(0.10, 0.1, "unknown meter: assumed like the model")
