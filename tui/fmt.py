"""Small formatting helpers shared by the lab's views (numbers, durations, provenance notes)."""

from __future__ import annotations

import math

from engine.core.records import PerUnitEnergy
from engine.outputs.tables import SOURCE_MARK, SOURCE_NOTE, fmt_number

SHORT_NOTE = {
    "counter": "counter: hardware energy counter",
    "polled": "polled: power readings integrated",
    "modelled": "~ modelled: an estimate, not a measurement",
}


def number(value: float | None) -> str:
    """The engine's one number format (engine.outputs.tables.fmt_number) with its trailing zeros
    kept, so the lab's live joules and watts keep their width (13.4, 2.50, 0.0000604)."""
    return fmt_number(value, fixed=True)


def joules(value: float | None, source: str | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return SOURCE_MARK.get(source or "", "") + number(value)


def per_unit(energy: PerUnitEnergy | None) -> str:
    """Joules per sample or per inference, marked like any joules."""
    return joules(energy.value, energy.source) if energy is not None else "-"


def carbon_setting(value: float | None = None) -> tuple[float, str]:
    """The grid's carbon intensity (g CO2e per kWh) and where it comes from (engine.core.settings),
    so the lab's gCO2e and an export's emissions agree."""
    from engine.core.settings import settings

    return settings().carbon(value)


def energy_units(value_j: float | None, source: str | None, g_per_kwh: float) -> str:
    """One energy three ways: J, Wh and gCO2e at the given carbon intensity, each marked like J."""
    if value_j is None:
        return "-"
    mark = SOURCE_MARK.get(source or "", "")
    return (
        f"{mark}{si(value_j, 'J')} · {mark}{si(value_j / 3600, 'Wh')} · "
        f"{mark}{si(value_j / 3.6e6 * g_per_kwh, 'gCO2e')}"
    )


def si(value: float, unit: str) -> str:
    """Three significant digits with a metric prefix (k, m, µ) that keeps them short: 6.93 mWh."""
    for prefix, scale in (("k", 1e3), ("", 1.0), ("m", 1e-3), ("µ", 1e-6)):
        if abs(value) >= scale or prefix == "µ":
            return f"{number(value / scale)} {prefix}{unit}"
    return f"{number(value)} {unit}"


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def source_notes(sources: set[str], long: bool = False) -> str:
    notes = SOURCE_NOTE if long else SHORT_NOTE
    return "; ".join(notes[s] for s in ("counter", "polled", "modelled") if s in sources)
