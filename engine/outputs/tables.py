"""Rich tables of results, shared by every command that prints them (run, compare, show).

Every energy cell carries its provenance: modelled values are marked with "~" and the table says
what that means, so an estimate is never read as a measurement.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, TypedDict

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from engine.analysis.stats import Comparison, ConfigStats, Estimate, Speedup, target_text
from engine.core.energy import CONTENDED_SHARE
from engine.core.events import PHASES as PHASE_ORDER
from engine.core.records import BASELINE_PHASES, PhaseTotal, RunSummary

if TYPE_CHECKING:
    from engine.analysis.calibrate import CalibrationRecord

SOURCE_MARK = {"counter": "", "polled": "", "modelled": "~"}
CONTENDED_MARK = "!"  # measured while other processes used the machine (see meters.contention)
SOURCE_NOTE = {
    "counter": "counter = read from a hardware energy counter (RAPL, NVML)",
    "polled": "polled = power readings integrated over time",
    "modelled": "~ modelled = estimated from CPU time x TDP per core and resident memory; not a measurement",
}


# The one style of each status, wherever a status is shown (the lab's History and Live tabs too).
STATUS_STYLE: dict[str, str] = {
    "complete": "green",
    "running": "bold cyan",
    "cancelled": "yellow",
    "failed": "red",
    "crashed": "bold red",
    "stalled": "bold red",
    "damaged": "bold red",
    "queued": "dim",
}


def fmt_number(x: float | None, digits: int = 3, *, fixed: bool = False) -> str:
    """The one number format of what people read: `digits` significant digits in plain decimal
    notation, never an exponent (13.4, 0.044, 0.0000604); whole from 100 up, with thousands
    separators from 1000. Trailing zeros go (2.5), unless `fixed` keeps them (2.50), so a number
    that changes as it is watched keeps its width (the lab)."""
    if x is None or math.isnan(x):
        return "-"
    if math.isinf(x):
        return "never"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    rounded = float(f"{x:.{digits}g}")  # round first: 9.996 is 10.0, not 10.00
    if abs(rounded) >= 100:
        return f"{rounded:.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    text = f"{rounded:.{decimals}f}"
    return text if fixed or "." not in text else text.rstrip("0").rstrip(".")


def energy_cell(total: PhaseTotal | None) -> str:
    """A phase's net joules in a listing (`joulelab runs`, the lab's History), never a bare number
    that is not a measurement: marked modelled (~), incomplete (gap) or below the idle baseline."""
    if total is None or total.source is None:
        return "-"
    why = " (gap)" if total.gap else " (below idle)" if total.net_j < 0 else ""
    return f"{SOURCE_MARK.get(total.source, '')}{fmt_number(total.net_j)}{why}"


class _EstimateStyle(TypedDict):
    """The layout arguments of fmt_estimate that a whole table shares."""

    symmetric: bool
    stacked: bool


def fmt_estimate(
    e: Estimate | None,
    scale: float = 1.0,
    digits: int = 3,
    suffix: str = "",
    symmetric: bool = False,
    flags: str = "",
    stacked: bool = False,
) -> str:
    """mean [low, high], or mean ± half-width for symmetric (Student's t) intervals; '~' marks
    a modelled value; `flags` follow the mean. Stacked (narrow tables): the interval on a second
    line, without spaces."""
    if e is None:
        return "-"
    mark = SOURCE_MARK.get(e.source or "", "")
    text = f"{mark}{fmt_number(e.mean * scale, digits)}{suffix}{flags}"
    sep, gap = ("\n", "") if stacked else (" ", " ")
    if e.low is not None and e.high is not None:
        if symmetric:
            text += f"{sep}±{gap}{fmt_number((e.high - e.mean) * scale, 2)}"
        else:
            text += f"{sep}[{fmt_number(e.low * scale, digits)},{gap}{fmt_number(e.high * scale, digits)}]"
    return text


# Below this many columns, tables take the compact layout: abbreviated configuration keys, short
# headers, intervals under their means and no vertical rules, so every column fits in 80.
WIDE_COLUMNS = 120
DATASET_ABBREV = {"motionsense": "MS", "extrasensory": "ES", "synthetic": "SYN"}
MODE_ABBREV = {
    "scratch": "scr",
    "transfer": "tr",
    "transfer-extend": "tr-ext",
    "finetune": "ft",
    "finetune-extend": "ft-ext",
}
MECHANISM_ABBREV = {"no-normalization": "no-norm", "no-batchnorm": "no-bn", "augmentation": "aug"}
ABBREV_NOTE = (
    "MS MotionSense, ES ExtraSensory, SYN synthetic; scr scratch, tr transfer, tr-ext transfer with an "
    "extended head, ft fine-tune; no-norm, no-bn, aug: without normalization, without batch-norm, "
    "augmentation"
)


def fitted(console: Console, build: Callable[[bool], Table]) -> Table:
    """The wide table when it fits the console, else the compact one: `build(narrow)` makes either.
    Piped output gets a wide console (see engine.cli), so files keep the full layout."""
    wide = build(False)
    # measured unbounded: a measure bounded by the console would always "fit"
    if console.measure(wide, options=console.options.update_width(1_000_000)).maximum <= console.width:
        return wide
    return build(True)


def abbreviate(name: str) -> str:
    """One part of a configuration key (dataset, mode, mechanism, or a '+'-joined set), short."""
    return "+".join(DATASET_ABBREV.get(p, MODE_ABBREV.get(p, MECHANISM_ABBREV.get(p, p))) for p in name.split("+"))


def sources_in(stats: list[ConfigStats]) -> set[str]:
    found = set()
    for s in stats:
        for e in (s.train_j, s.pretrain_j, s.test_j_per_inference, *s.phase_net_j.values()):
            if e is not None and e.source:
                found.add(e.source)
    return found


def _table(title: str, headers: list[str], rows: list[list[str]], labels: int, narrow: bool = False) -> Table:
    """A table whose number columns never truncate: on a narrow terminal the label columns wrap."""
    if narrow:
        table = Table(
            title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False
        )
    else:
        table = Table(title=title, title_justify="left", header_style="bold")
    for i, header in enumerate(headers):
        if i < labels:
            table.add_column(header, overflow="fold")
        else:
            widest = max([len(line) for r in rows for line in r[i].split("\n")] + [max(len(w) for w in header.split())])
            table.add_column(header, justify="right", min_width=widest)
    for row in rows:
        table.add_row(*row)
    return table


def short_key(key: str, synthetic: bool, narrow: bool = False) -> str:
    """dataset/size/mode[/mechanism], with the baseline mechanism left implicit; * = synthetic.
    Narrow: each part abbreviated (ABBREV_NOTE)."""
    if key.endswith("/baseline"):
        key = key[: -len("/baseline")]
    if narrow:
        key = "/".join(abbreviate(p) for p in key.split("/"))
    return key + ("*" if synthetic else "")


def config_table(
    stats: list[ConfigStats], title: str = "Energy and accuracy per configuration", narrow: bool = False
) -> Table:
    phases = [
        p for p in PHASE_ORDER if p not in (*BASELINE_PHASES, "pretrain") and any(p in s.phase_net_j for s in stats)
    ]
    pretrain = any(s.pretrain_j is not None for s in stats)
    headers = [
        "configuration",
        "n",
        *(["pretrain J"] if pretrain else []),
        *[f"{p} J" for p in phases],
        "mJ/inf",
        "acc %",
        "F1",
    ]
    if narrow:
        headers = ["config", "n", *(["pre J"] if pretrain else []), *[f"{p} J" for p in phases], "mJ/inf", "acc%", "F1"]
    est = _EstimateStyle(symmetric=True, stacked=narrow)
    rows = [
        [
            short_key(s.key, s.synthetic, narrow),
            str(s.n),
            *(
                [fmt_estimate(s.pretrain_j, flags=("°" if s.cached_sources else "") + _busy(s, "pretrain"), **est)]
                if pretrain
                else []
            ),
            *[fmt_estimate(s.phase_net_j.get(p), flags=_busy(s, p), **est) for p in phases],
            fmt_estimate(s.test_j_per_inference, 1000, **est),
            fmt_estimate(s.accuracy, 100, 3, **est),
            fmt_estimate(s.f1, 1, 2, **est),
        ]
        for s in stats
    ]
    table = _table(title, headers, rows, labels=1, narrow=narrow)
    table.caption = caption(sources_in(stats), any(s.synthetic for s in stats))
    if narrow:
        table.caption += "\n" + ABBREV_NOTE
    if any(s.cached_sources for s in stats):
        table.caption += (
            "\n° pretrain J: the energy that trained the source network, measured once and "
            "reused from the cache by later transfer runs"
        )
    if any(s.gap_runs for s in stats):
        table.caption += (
            "\nmeter gaps (a failed read, a counter reset, lost wraps) left the energy of "
            f"{sum(s.gap_runs for s in stats)} run(s) unknown: left out of the energy columns"
        )
    if any(s.contended for s in stats):
        table.caption += (
            f"\n{CONTENDED_MARK} measured while other processes used more than "
            f"{100 * CONTENDED_SHARE:.0f} % of the machine's CPU (in some of the trials): unreliable"
        )
    table.caption_justify = "left"
    return table


def _busy(s: ConfigStats, phase: str) -> str:
    return CONTENDED_MARK if s.contended.get(phase) else ""


def caption(sources: set[str], synthetic: bool = False) -> str:
    notes = ["J: net joules (gross minus the idle baseline); mean ± 95 % CI half-width (Student's t) over trials"]
    if synthetic:
        notes.append("* synthetic data (generated, not recorded from people)")
    notes += [SOURCE_NOTE[s] for s in ("counter", "polled", "modelled") if s in sources]
    return "\n".join(notes)


def comparison_table(
    comparisons: list[Comparison], title: str = "Comparison (paired by seed)", narrow: bool = False
) -> Table:
    rows = []
    for c in comparisons:
        be = (
            "-"
            if c.break_even_runs is None
            else ("never" if math.isinf(c.break_even_runs) else f"{c.break_even_runs:.1f} runs")
        )
        group = short_key(c.group, c.synthetic, narrow)
        busy = CONTENDED_MARK if c.contended_runs else ""
        what = (
            f"{abbreviate(c.treatment)}\nvs {abbreviate(c.reference)}" if narrow else f"{c.treatment} vs {c.reference}"
        )
        rows.append(
            [
                group,
                what,
                str(c.pairs),
                fmt_estimate(c.train_interval, suffix="x", flags=busy, stacked=narrow),
                fmt_estimate(c.test_interval, suffix="x", flags=busy, stacked=narrow),
                fmt_estimate(c.accuracy_diff_points, digits=2, stacked=narrow),
                be,
            ]
        )
    headers = ["held fixed", "comparison", "n", "train energy", "inference energy", "accuracy pts", "pays back"]
    if narrow:
        headers = ["group", "compared", "n", "train E", "infer E", "acc pts", "payback"]
    table = _table(title, headers, rows, labels=2, narrow=narrow)
    table.caption = (
        "energy: treatment/reference ratio, geometric mean [95 % CI widened by the meters' error]; "
        "accuracy: change in points; pays back: transfers before pretraining's energy is recovered"
    )
    if any(c.contended_runs for c in comparisons):
        table.caption += f"\n{CONTENDED_MARK} some runs were measured on a busy machine: unreliable"
    if narrow:
        table.caption += "\n" + ABBREV_NOTE
    table.caption_justify = "left"
    return table


def speedup_table(speedups: list[Speedup], narrow: bool = False) -> Table:
    """Data-parallel scaling: per configuration (each mode its own row), N processes per node
    against one, paired by seed on the same node set: speed-up and energy per training sample."""
    rows = [
        [
            short_key(s.group, s.synthetic, narrow),
            f"{s.procs} vs 1",
            str(s.pairs),
            fmt_estimate(s.speedup, suffix="x", flags=_busy_runs(s), stacked=narrow),
            fmt_estimate(s.j_per_sample_one, 1000, stacked=narrow, symmetric=True),
            fmt_estimate(s.j_per_sample, 1000, stacked=narrow, symmetric=True),
            fmt_estimate(s.energy_ratio, suffix="x", flags=_busy_runs(s), stacked=narrow),
        ]
        for s in speedups
    ]
    headers = ["configuration", "processes", "n", "speed-up", "mJ/sample at 1", "mJ/sample at N", "energy/sample"]
    if narrow:
        headers = ["config", "procs", "n", "speed-up", "mJ/smp 1", "mJ/smp N", "E/smp"]
    table = _table("Data-parallel scaling (paired by seed)", headers, rows, labels=2, narrow=narrow)
    sources = {e.source for s in speedups for e in (s.j_per_sample, s.j_per_sample_one) if e is not None and e.source}
    table.caption = "\n".join(
        [
            "speed-up: training wall time at 1 process / at N processes per node, geometric mean [95 % CI] "
            "over the pairs; mJ/sample: net training energy per sample trained on (all processes), mean ± 95 % CI; "
            "energy/sample: N/1 ratio [95 % CI widened by the meters' error]",
            *[SOURCE_NOTE[x] for x in ("counter", "polled", "modelled") if x in sources],
            *(
                [f"{CONTENDED_MARK} some runs were measured on a busy machine: unreliable"]
                if any(s.contended_runs for s in speedups)
                else []
            ),
            *([ABBREV_NOTE] if narrow else []),
        ]
    )
    table.caption_justify = "left"
    return table


def _busy_runs(s: Speedup) -> str:
    return CONTENDED_MARK if s.contended_runs else ""


def verdicts(comparisons: list[Comparison]) -> Group:
    lines = [Text.assemble((f"{c.group}: ", "bold"), c.verdict + ".") for c in comparisons]
    lines += [Text.assemble((f"{c.group}: ", "bold"), c.to_target.verdict + ".") for c in comparisons if c.to_target]
    return Group(*lines)


def target_table(stats: list[ConfigStats], narrow: bool = False) -> Table:
    """Energy to a target accuracy per configuration (the stats made with one): how many trials
    reached it, the mean and interval of their joules; the runs that did not are named under it."""
    targets = [(s, t) for s in stats if (t := s.to_target) is not None]
    est = _EstimateStyle(symmetric=True, stacked=narrow)
    rows = [
        [short_key(s.key, s.synthetic, narrow), f"{len(t.reached)} of {len(t.runs)}", fmt_estimate(t.joules, **est)]
        for s, t in targets
    ]
    headers = ["configuration", "reached", "gross J to target"] if not narrow else ["config", "reached", "J to target"]
    title = f"Energy to {target_text(targets[0][1].target) if targets else 'a target'} validation accuracy"
    table = _table(title, headers, rows, labels=1, narrow=narrow)
    notes = [
        "J: gross joules of training (train, then pruning's fine-tuning) until validation accuracy first "
        "reached the target, linear between the epochs that bracket it; mean ± 95 % CI half-width over the "
        "trials that reached it (the others are named, never counted as zero)"
    ]
    for s, t in targets:
        key = short_key(s.key, s.synthetic, narrow)
        if t.not_reached:
            notes.append(f"{key}: not reached by " + ", ".join(f"{r.run_id} (seed {r.seed})" for r in t.not_reached))
        if t.unknown:
            notes.append(f"{key}: energy unknown for " + ", ".join(f"{r.run_id} ({r.unknown})" for r in t.unknown))
    sources = {t.joules.source for _, t in targets if t.joules is not None and t.joules.source}
    notes += [SOURCE_NOTE[x] for x in ("counter", "polled", "modelled") if x in sources]
    if narrow:
        notes.append(ABBREV_NOTE)
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    return table


def target_comparison_table(comparisons: list[Comparison], narrow: bool = False) -> Table:
    """Energy to a target accuracy, treatment against reference, paired by seed: the ratio over
    the pairs where both runs reached it, and how many trials of each side did."""
    targets = [(c, t) for c in comparisons if (t := c.to_target) is not None]
    rows = []
    for c, t in targets:
        what = (
            f"{abbreviate(c.treatment)}\nvs {abbreviate(c.reference)}" if narrow else f"{c.treatment} vs {c.reference}"
        )
        if t.ratio is not None:
            ratio = fmt_estimate(t.interval, suffix="x", stacked=narrow)
        else:
            ratio = "not reached" if t.treatment.not_reached or t.reference.not_reached else "unknown"
        rows.append(
            [
                short_key(c.group, c.synthetic, narrow),
                what,
                str(t.pairs),
                ratio,
                f"{len(t.treatment.reached)} of {len(t.treatment.runs)}",
                f"{len(t.reference.reached)} of {len(t.reference.runs)}",
            ]
        )
    headers = ["held fixed", "comparison", "n", "energy to target", "treatment reached", "reference reached"]
    if narrow:
        headers = ["group", "compared", "n", "E to target", "treat reached", "ref reached"]
    title = f"Energy to {target_text(targets[0][1].target) if targets else 'a target'} (paired by seed)"
    table = _table(title, headers, rows, labels=2, narrow=narrow)
    table.caption = (
        "energy to target: treatment/reference ratio of the gross joules of training until validation accuracy "
        "first reached it, geometric mean [95 % CI widened by the meters' error], over the n pairs where both "
        "runs reached it; pairs where one did not are named in the verdicts"
    )
    if narrow:
        table.caption += "\n" + ABBREV_NOTE
    table.caption_justify = "left"
    return table


def run_table(summary: RunSummary) -> Table:
    """One run's phases, per domain, with provenance."""
    table = Table(
        title=f"Run {summary.run_id}: {summary.config} ({summary.status})",
        title_justify="left",
        header_style="bold",
    )
    for col in ("phase", "domain", "seconds", "gross J", "idle J", "net J", "source", "method"):
        table.add_column(col, justify="right" if col.endswith(("J", "seconds")) else "left")
    # the study's phases in their order, then any a user's run named (the API's, `measure`'s unattributed)
    for phase in [*PHASE_ORDER, *(p for p in summary.phases if p not in PHASE_ORDER)]:
        record = summary.phase(phase)
        if record is None:
            continue
        label = phase + (" (partial)" if record.partial else "") + (CONTENDED_MARK if record.contended else "")
        for i, (domain, e) in enumerate(record.energy.items()):
            mark = SOURCE_MARK.get(e.source, "")
            flags = (" (gap)" if e.gap else "") + (" (short)" if e.short else "")
            if e.net_j < 0 and not e.gap and phase != "idle":
                flags += " (below idle)"  # drew less than the idle baseline: noise, not negative energy
            table.add_row(
                label if i == 0 else "",
                domain,
                f"{record.duration_s:.2f}" if i == 0 else "",
                mark + fmt_number(e.gross_j),
                mark + fmt_number(e.idle_j),
                mark + fmt_number(e.net_j) + flags,
                e.source,
                e.method,
            )
    table.caption = "\n".join(run_notes(summary))
    table.caption_justify = "left"
    return table


def run_notes(summary: RunSummary) -> list[str]:
    """What a reader of one run must know beside its joules: warm-up, contention, short phases,
    how a reused source network's pretraining energy was carried over, and what went wrong with
    the source-network cache (a cached network discarded, or the new one not saved)."""
    notes = []
    phases = summary.phases
    w = summary.phase("warmup")
    if w is not None:
        notes.append(
            f"warmup: {w.steps if w.steps is not None else '?'} unmetered training steps before the first "
            f"metered phase ({w.duration_s:.2f} s), so no phase pays start-up costs; in no figure"
        )
    for phase in PHASE_ORDER:
        record = summary.phase(phase)
        c = record.contention if record is not None else None
        if c is not None:
            state = f"{CONTENDED_MARK} contended" if c.contended else "quiet"
            notes.append(
                f"{phase}: other processes used {100 * (c.others_cpu_share or 0.0):.0f} % of the CPU "
                f"(steal {100 * c.steal_share:.0f} %), {state}"
            )
    if any(e.short for p in phases.values() for e in p.energy.values()):
        notes.append(
            "(short): the phase lasted under ten of the meter's update periods; its edges alone may be "
            "off by more than 10 %"
        )
    for n in summary.nodes:  # a run over several nodes: its phases above are their sum
        if not n.reported:
            notes.append(f"node{n.node_rank}: no record arrived; its energy is unknown (a gap in every phase)")
            continue
        train = n.phases.get("train")
        part = f", train {SOURCE_MARK.get(train.source or '', '')}{fmt_number(train.net_j)} J net" if train else ""
        notes.append(f"node{n.node_rank} ({n.host}): metered by rank {n.rank}, {n.source or 'no meter'}{part}")
    if summary.nodes_note:
        notes.append(summary.nodes_note)
    pretrain = summary.pretrain
    if pretrain is not None and pretrain.cached:
        how = (
            "re-modelled under this run's TDP"
            if pretrain.remodelled
            else pretrain.incomparable or pretrain.basis_unknown or "same basis as this run"
        )
        notes.append(
            f"pretrain: source network reused from the cache (trained by run {pretrain.run_id}); its energy: {how}"
        )
    if pretrain is not None:
        notes += [f"pretrain: {problem}" for problem in (pretrain.cache_discarded, pretrain.cache_problem) if problem]
    return notes


def calibration_table(record: CalibrationRecord) -> Table:
    """`joulelab calibrate`: how much identical runs differ here, and the smallest ratio n pairs resolve."""
    table = Table(
        title=f"Noise floor of {record['host']}: {record['config']} against itself, {record['pairs']} A/A pairs",
        title_justify="left",
        header_style="bold",
    )
    for col in ("quantity", "CV per run", "A/B ratio [95 % CI]", *[f"floor at n={n}" for n in (3, 5, 10)]):
        table.add_column(col, justify="left" if col == "quantity" else "right")
    names = {"train": "train energy", "test": "energy per inference"}
    for key, label in names.items():
        ratio = record["ratio"].get(key)
        floors = record["floors"].get(key, {})
        est = Estimate(ratio["mean"], ratio["low"], ratio["high"], ratio["n"], ratio["source"]) if ratio else None
        cv = record["cv"].get(key)
        table.add_row(
            label,
            f"{100 * cv:.1f} %" if cv is not None else "-",
            fmt_estimate(est, suffix="x"),
            *[f"±{100 * f:.1f} %" if (f := floors.get(str(n))) is not None else "-" for n in (3, 5, 10)],
        )
    for phase, cv in record["cv"].items():
        if phase not in names:
            table.add_row(f"{phase} phase energy", f"{100 * cv:.1f} %", "", "", "", "")
    table.caption = (
        "CV: coefficient of variation of net joules over all runs; floor: the smallest ratio "
        "n pairs of such runs can tell from 1.0 (95 %), used by verdicts on this machine"
    )
    if record.get("contended_runs"):
        table.caption += (
            f"\n{CONTENDED_MARK} {record['contended_runs']} runs were measured on a busy machine: "
            "this floor includes other processes' noise"
        )
    table.caption_justify = "left"
    return table
