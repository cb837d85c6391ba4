"""What every meter is: named domains, each read as cumulative joules, each with its provenance."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

from engine.core.energy import Domain
from engine.core.errors import EXIT_RUN_FAILED, JouleLabError


class MeterError(JouleLabError):
    """A meter could not be read. The message says why and, where there is one, the fix."""

    exit_code = EXIT_RUN_FAILED  # the machine's, not the user's input


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
