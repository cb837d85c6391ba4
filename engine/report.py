"""Rich tables of results, shared by every command that prints them (run, compare, show).

Every energy cell carries its provenance: modelled values are marked with "~" and the table says
what that means, so an estimate is never read as a measurement.
"""

from __future__ import annotations

import math

from rich.console import Group
from rich.table import Table
from rich.text import Text

from engine.stats import Comparison, ConfigStats, Estimate

SOURCE_MARK = {"counter": "", "polled": "", "modelled": "~"}
SOURCE_NOTE = {
    "counter": "counter = read from a hardware energy counter (RAPL, NVML)",
    "polled": "polled = power readings integrated over time",
    "modelled": "~ modelled = estimated from CPU time x TDP per core and resident memory; not a measurement",
}
from engine.protocol import PHASES as PHASE_ORDER


def fmt_number(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if math.isinf(x):
        return "never"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def fmt_estimate(e: Estimate | None, scale: float = 1.0, digits: int = 3, suffix: str = "",
                 symmetric: bool = False) -> str:
    """mean [low, high], or mean ± half-width for symmetric (Student's t) intervals; '~' marks
    a modelled value."""
    if e is None:
        return "-"
    mark = SOURCE_MARK.get(e.source or "", "")
    text = f"{mark}{fmt_number(e.mean * scale, digits)}{suffix}"
    if e.has_interval and symmetric:
        text += f" ± {fmt_number((e.high - e.mean) * scale, 2)}"
    elif e.has_interval:
        text += f" [{fmt_number(e.low * scale, digits)}, {fmt_number(e.high * scale, digits)}]"
    return text


def sources_in(stats: list[ConfigStats]) -> set[str]:
    found = set()
    for s in stats:
        for e in (s.train_j, s.pretrain_j, s.test_j_per_inference, *s.phase_net_j.values()):
            if e is not None and e.source:
                found.add(e.source)
    return found


def _table(title: str, headers: list[str], rows: list[list[str]], labels: int) -> Table:
    """A table whose number columns never truncate: on a narrow terminal the label columns wrap."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for i, header in enumerate(headers):
        if i < labels:
            table.add_column(header, overflow="fold")
        else:
            widest = max([len(r[i]) for r in rows] + [max(len(w) for w in header.split())])
            table.add_column(header, justify="right", min_width=widest)
    for row in rows:
        table.add_row(*row)
    return table


def short_key(key: str, synthetic: bool) -> str:
    """dataset/size/mode[/mechanism], with the baseline mechanism left implicit; * = synthetic."""
    if key.endswith("/baseline"):
        key = key[: -len("/baseline")]
    return key + ("*" if synthetic else "")


def config_table(stats: list[ConfigStats], title: str = "Energy and accuracy per configuration") -> Table:
    phases = [p for p in PHASE_ORDER if p not in ("idle", "warmup", "pretrain") and any(p in s.phase_net_j for s in stats)]
    pretrain = any(s.pretrain_j is not None for s in stats)
    headers = ["configuration", "n", *(["pretrain J"] if pretrain else []), *[f"{p} J" for p in phases],
               "mJ/inf", "acc %", "F1"]
    rows = [[short_key(s.key, s.synthetic), str(s.n),
             *([fmt_estimate(s.pretrain_j, symmetric=True) + ("°" if s.cached_sources else "")] if pretrain else []),
             *[fmt_estimate(s.phase_net_j.get(p), symmetric=True) for p in phases],
             fmt_estimate(s.test_j_per_inference, 1000, symmetric=True),
             fmt_estimate(s.accuracy, 100, 3, symmetric=True), fmt_estimate(s.f1, 1, 2, symmetric=True)]
            for s in stats]
    table = _table(title, headers, rows, labels=1)
    table.caption = caption(sources_in(stats), any(s.synthetic for s in stats))
    if any(s.cached_sources for s in stats):
        table.caption += ("\n° pretrain J: the energy that trained the source network, measured once and "
                          "reused from the cache by later transfer runs")
    table.caption_justify = "left"
    return table


def caption(sources: set[str], synthetic: bool = False) -> str:
    notes = ["J: net joules (gross minus the idle baseline); mean ± 95 % CI half-width (Student's t) over trials"]
    if synthetic:
        notes.append("* synthetic data (generated, not recorded from people)")
    notes += [SOURCE_NOTE[s] for s in ("counter", "polled", "modelled") if s in sources]
    return "\n".join(notes)


def comparison_table(comparisons: list[Comparison], title: str = "Comparison (paired by seed)") -> Table:
    rows = []
    for c in comparisons:
        be = "-" if c.break_even_runs is None else (
            "never" if math.isinf(c.break_even_runs) else f"{c.break_even_runs:.1f} runs")
        group = c.group[: -len("/baseline")] if c.group.endswith("/baseline") else c.group
        rows.append([group + ("*" if c.synthetic else ""), f"{c.treatment} vs {c.reference}", str(c.pairs),
                     fmt_estimate(c.train_ratio, suffix="x"), fmt_estimate(c.test_ratio, suffix="x"),
                     fmt_estimate(c.accuracy_diff_points, digits=2), be])
    headers = ["held fixed", "comparison", "n", "train energy", "inference energy", "accuracy pts", "pays back"]
    table = _table(title, headers, rows, labels=2)
    table.caption = ("energy: treatment/reference ratio, geometric mean [95 % CI]; accuracy: change in points; "
                     "pays back: transfers before pretraining's energy is recovered")
    table.caption_justify = "left"
    return table


def verdicts(comparisons: list[Comparison]) -> Group:
    lines = [Text.assemble((f"{c.group}: ", "bold"), c.verdict + ".") for c in comparisons]
    return Group(*lines)


def run_table(summary: dict) -> Table:
    """One run's phases, per domain, with provenance."""
    table = Table(title=f"Run {summary['run_id']}: {summary.get('config')} ({summary.get('status')})",
                  title_justify="left", header_style="bold")
    for col in ("phase", "domain", "seconds", "gross J", "idle J", "net J", "source", "method"):
        table.add_column(col, justify="right" if col.endswith(("J", "seconds")) else "left")
    for phase in PHASE_ORDER:
        record = summary.get("phases", {}).get(phase)
        if not record:
            continue
        label = phase + (" (partial)" if record.get("partial") else "")
        for i, (domain, e) in enumerate(record["energy"].items()):
            mark = SOURCE_MARK.get(e["source"], "")
            table.add_row(label if i == 0 else "", domain, f"{record['duration_s']:.2f}" if i == 0 else "",
                          mark + fmt_number(e["gross_j"]), mark + fmt_number(e["idle_j"]),
                          mark + fmt_number(e["net_j"]) + (" (gap)" if e.get("gap") else ""),
                          e["source"], e["method"])
    return table
