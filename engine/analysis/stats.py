"""The one stats module: means and intervals over trials, paired ratios, verdicts, break-even,
energy to a target accuracy.

Intervals are Student's t 95 % intervals. A ratio of energies is paired by seed and computed on
the log scale (the interval of a geometric mean ratio), so 0.5x and 2x are symmetric. Accuracy
differences are paired by seed too, in percentage points. With one trial there is no interval,
and the verdict says so instead of guessing. Every number carries the weakest provenance of its
inputs: if any input was modelled, it is modelled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict, overload

from engine.core.energy import weakest_source
from engine.core.records import METERED_PHASES, TRAINING_PHASES, ConfigKey, RunSummary
from engine.core.records.config_key import BASELINE

CONFIDENCE = 0.95


# -- Student's t ----------------------------------------------------------------------------
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (Lentz's method)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse of t_cdf by bisection (exact to ~1e-12; called a handful of times per table)."""
    if not 0 < p < 1:
        raise ValueError("p must be in (0, 1)")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


# -- estimates -------------------------------------------------------------------------------
class EstimateDict(TypedDict):
    """An Estimate as JSON (calibration records)."""

    mean: float
    low: float | None
    high: float | None
    n: int
    source: str | None


@dataclass(frozen=True)
class Estimate:
    """A mean over n trials with its 95 % interval (None when n < 2), and its provenance."""

    mean: float
    low: float | None
    high: float | None
    n: int
    source: str | None = None  # counter | polled | modelled; None for non-energy quantities

    @property
    def has_interval(self) -> bool:
        return self.low is not None

    def spans(self, value: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= value <= self.high

    def as_dict(self) -> EstimateDict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "source": self.source}


def mean_ci(values: list[float], source: str | None = None, confidence: float = CONFIDENCE) -> Estimate:
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n < 2:
        return Estimate(mean, None, None, n, source)
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * math.sqrt(var / n)
    return Estimate(mean, mean - half, mean + half, n, source)


def ratio_ci(numerators: list[float], denominators: list[float], source: str | None = None) -> Estimate | None:
    """Geometric-mean ratio of paired values, with its interval from the log ratios."""
    pairs = [(a, b) for a, b in zip(numerators, denominators) if a > 0 and b > 0]
    if not pairs:
        return None
    logs = mean_ci([math.log(a / b) for a, b in pairs])
    exp = math.exp
    return Estimate(
        exp(logs.mean),
        exp(logs.low) if logs.low is not None else None,
        exp(logs.high) if logs.high is not None else None,
        logs.n,
        source,
    )


def diff_ci(a: list[float], b: list[float]) -> Estimate:
    """Mean of paired differences a - b, with its interval."""
    return mean_ci([x - y for x, y in zip(a, b)])


# -- summaries -> comparison -----------------------------------------------------------------
def pretrain_energy(summary: RunSummary) -> tuple[float, str] | None:
    """Net joules that trained the source network: measured in this run, or in the run that first
    trained it when this run reused it from the cache."""
    if summary.pretrain is not None and summary.pretrain.incomparable:
        return None  # measured by another kind of meter: no sum or break-even with this run's joules
    total = summary.pretrain_total
    if total is None or total.source is None:
        return None
    return total.net_j, total.source


def training_energy(summary: RunSummary) -> tuple[float, str] | None:
    """Net joules to train the target task: the train phase plus pruning's fine-tuning."""
    parts = [p for p in (summary.phase_net(phase) for phase in TRAINING_PHASES) if p]
    if not parts:
        return None
    return sum(j for j, _ in parts), weakest_source(s for _, s in parts)


def inference_energy(summary: RunSummary) -> tuple[float, str] | None:
    """Net joules per inference in the test phase."""
    per = summary.metrics.j_per_inference
    if per is None or per.value is None or per.source is None or summary.phase_net("test") is None:
        return None
    return per.value, per.source


def contended_phases(summary: RunSummary, phases: tuple[str, ...] = METERED_PHASES) -> list[str]:
    """Metered phases during which other processes used the machine beyond the threshold."""
    return [p for p in phases if (r := summary.phase(p)) is not None and r.contended]


def others_cpu_share(summary: RunSummary, phase: str = "train") -> float | None:
    record = summary.phase(phase)
    return record.contention.others_cpu_share if record is not None and record.contention is not None else None


def meter_error(summary: RunSummary, phases: tuple[str, ...]) -> float:
    """The documented relative error of a run's energy over these phases (see meters.base)."""
    errors = [t.error_rel or 0.0 for p in phases if (t := summary.total(p)) is not None and t.source is not None]
    return max(errors, default=0.0)


@dataclass
class ConfigStats:
    key: str
    dataset: str
    size: str
    mode: str
    mechanism: str
    synthetic: bool
    n: int
    seeds: list[int]
    train_j: Estimate | None
    pretrain_j: Estimate | None
    test_j_per_inference: Estimate | None
    accuracy: Estimate
    f1: Estimate
    durations: dict[str, Estimate] = field(default_factory=dict)
    phase_net_j: dict[str, Estimate] = field(default_factory=dict)
    cached_sources: int = 0  # runs that reused a saved source network instead of pretraining
    contended: dict[str, int] = field(default_factory=dict)  # phase -> runs measured on a busy machine
    gap_runs: int = 0  # runs with a meter gap: their energy is left out of these figures
    to_target: TargetStats | None = None  # energy to a target accuracy, when one was asked for


def _energy_estimate(values: list[tuple[float, str] | None]) -> Estimate | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return mean_ci([j for j, _ in present], weakest_source(s for _, s in present))


def _accuracy_frac(summary: RunSummary) -> float:
    """A complete run always has its accuracy; NaN keeps a malformed one from passing for 0."""
    return summary.metrics.accuracy_frac if summary.metrics.accuracy_frac is not None else math.nan


def _f1_frac(summary: RunSummary) -> float:
    return summary.metrics.f1_macro_frac if summary.metrics.f1_macro_frac is not None else math.nan


def complete_by_key(summaries: list[RunSummary]) -> dict[ConfigKey, list[RunSummary]]:
    """The complete runs by configuration key, in the order given (what the figures group and pair)."""
    by_key: dict[ConfigKey, list[RunSummary]] = {}
    for s in summaries:
        if s.complete:
            by_key.setdefault(s.key, []).append(s)
    return by_key


def config_stats(summaries: list[RunSummary], target: float | None = None) -> list[ConfigStats]:
    """Per configuration, over the complete runs given; with a target accuracy, the energy to it."""
    by_key = complete_by_key(summaries)
    out = []
    for key, runs in by_key.items():
        phases = sorted({p for r in runs for p in r.phases})
        out.append(
            ConfigStats(
                key=str(key),
                dataset=key.dataset,
                size=key.size,
                mode=key.mode,
                mechanism=key.mechanism,
                synthetic=any(r.synthetic for r in runs),
                n=len(runs),
                seeds=[r.seed for r in runs],
                train_j=_energy_estimate([training_energy(r) for r in runs]),
                pretrain_j=_energy_estimate([pretrain_energy(r) for r in runs]),
                test_j_per_inference=_energy_estimate([inference_energy(r) for r in runs]),
                accuracy=mean_ci([_accuracy_frac(r) for r in runs]),
                f1=mean_ci([_f1_frac(r) for r in runs]),
                durations={p: mean_ci([r.phases[p].duration_s for r in runs if p in r.phases]) for p in phases},
                phase_net_j={
                    p: e for p in phases if (e := _energy_estimate([r.phase_net(p) for r in runs])) is not None
                },
                cached_sources=sum(1 for r in runs if r.pretrain is not None and r.pretrain.cached),
                contended={p: n for p in phases if (n := sum(1 for r in runs if p in contended_phases(r, (p,))))},
                gap_runs=sum(1 for r in runs if r.has_gap),
                to_target=target_stats(runs, target) if target is not None else None,
            )
        )
    return out


@dataclass(frozen=True)
class NoiseFloor:
    """How far apart identical runs land on one machine, from `joulelab calibrate` (A/A runs).

    sd_log: per quantity ("train", "test"), the standard deviation of the log of A/A ratios.
    A ratio of n pairs is below the noise floor when |log ratio| <= t(n-1) x sd / sqrt(n): it is
    the smallest difference n pairs of such runs can tell from 1.0.
    """

    host: str
    sd_log: dict[str, float]
    pairs: int
    measured: str
    config: str

    def floor(self, quantity: str, pairs: int) -> float | None:
        """Relative half-width (0.12 = +/-12 %) of the ratio identical runs give at `pairs` pairs."""
        sd = self.sd_log.get(quantity)
        if sd is None or pairs < 1:
            return None
        spread = 1.96 * sd if pairs == 1 else t_quantile(1 - (1 - CONFIDENCE) / 2, pairs - 1) * sd / math.sqrt(pairs)
        try:
            floor = math.expm1(spread)
        except OverflowError:
            return None
        return floor if math.isfinite(floor) else None  # an infinite floor says nothing: none


@overload
def widen(ratio: Estimate, error_rel: float) -> Estimate: ...
@overload
def widen(ratio: None, error_rel: float) -> None: ...
@overload
def widen(ratio: Estimate | None, error_rel: float) -> Estimate | None: ...
def widen(ratio: Estimate | None, error_rel: float) -> Estimate | None:
    """A ratio's interval widened by the meters' relative error (first order, worst case)."""
    if ratio is None or ratio.low is None or ratio.high is None or error_rel <= 0:
        return ratio
    return Estimate(ratio.mean, ratio.low / (1 + error_rel), ratio.high * (1 + error_rel), ratio.n, ratio.source)


@dataclass
class Comparison:
    """One treatment (e.g. transfer) against its reference (scratch), paired by seed."""

    group: str  # what is held fixed, e.g. "synthetic/small/baseline"
    treatment: str
    reference: str
    pairs: int
    synthetic: bool
    train_ratio: Estimate | None
    test_ratio: Estimate | None
    accuracy_diff_points: Estimate | None
    pretrain_j: Estimate | None
    break_even_runs: float | None  # transfers needed before pretraining pays for itself
    verdict: str
    keys: tuple[str, str] = ("", "")  # configuration keys of treatment and reference
    train_meter_error: float = 0.0  # relative error of the meters, carried into the interval
    test_meter_error: float = 0.0
    train_noise_floor: float | None = None  # this machine's A/A floor at this many pairs
    test_noise_floor: float | None = None
    contended_runs: int = 0  # runs of the pairs with a metered phase on a busy machine
    others_cpu_share: float | None = None  # the largest share other processes took in a train phase
    to_target: TargetComparison | None = None  # energy to a target accuracy, when one was asked for

    @property
    def train_interval(self) -> Estimate | None:
        """The train ratio with its interval widened by the meters' error."""
        return widen(self.train_ratio, self.train_meter_error)

    @property
    def test_interval(self) -> Estimate | None:
        return widen(self.test_ratio, self.test_meter_error)


Pair = tuple[RunSummary, RunSummary]


def _pair(treat: list[RunSummary], ref: list[RunSummary]) -> list[Pair]:
    by_seed = {(r.node, r.seed): r for r in ref}
    return [(t, by_seed[(t.node, t.seed)]) for t in treat if (t.node, t.seed) in by_seed]


def _node_blocks(group: str, pairs: list[Pair]) -> list[tuple[str, list[Pair]]]:
    """One block when the pairs ran on one node (or locally); else a row per node and an "all" row."""
    nodes = sorted({t.node or "local" for t, _ in pairs})
    if len(nodes) < 2:
        return [(group, pairs)]
    return [(f"{group} @{n}", [p for p in pairs if (p[0].node or "local") == n]) for n in nodes] + [
        (f"{group} @all", pairs)
    ]


def _compare(
    group: str,
    treatment: str,
    reference: str,
    pairs: list[Pair],
    pretrain: Estimate | None,
    keys: tuple[str, str] = ("", ""),
    noise: NoiseFloor | None = None,
    target: float | None = None,
) -> Comparison:
    def paired(fn: Callable[[RunSummary], tuple[float, str] | None]) -> Estimate | None:
        vals = [(a, b) for t, r in pairs if (a := fn(t)) is not None and (b := fn(r)) is not None]
        if not vals:
            return None
        source = weakest_source([a[1] for a, _ in vals] + [b[1] for _, b in vals])
        return ratio_ci([a[0] for a, _ in vals], [b[0] for _, b in vals], source)

    train_ratio = paired(training_energy)
    too_small = train_ratio is None and any(
        (e := training_energy(x)) is not None and e[0] <= 0 for pair in pairs for x in pair
    )
    test_ratio = paired(inference_energy)
    # accuracy only where both runs of a pair recorded one (a metered command records none)
    scored = [(t, r) for t, r in pairs if t.metrics.accuracy_frac is not None and r.metrics.accuracy_frac is not None]
    acc = (
        diff_ci([100 * _accuracy_frac(t) for t, _ in scored], [100 * _accuracy_frac(r) for _, r in scored])
        if scored
        else None
    )
    break_even = None
    if pretrain is not None and train_ratio is not None:
        saved = [
            er[0] - et[0] for t, r in pairs if (er := training_energy(r)) is not None and (et := training_energy(t))
        ]
        mean_saved = sum(saved) / len(saved) if saved else 0.0
        break_even = pretrain.mean / mean_saved if mean_saved > 0 else math.inf
    synthetic = any(t.synthetic or r.synthetic for t, r in pairs)
    runs = [x for pair in pairs for x in pair]
    train_error = max((meter_error(x, TRAINING_PHASES) for x in runs), default=0.0)
    test_error = max((meter_error(x, ("test",)) for x in runs), default=0.0)
    floors: tuple[float | None, float | None] = (None, None)
    if noise is not None and all(x.host == noise.host for x in runs):  # a floor speaks for its own machine only
        floors = (noise.floor("train", len(pairs)), noise.floor("test", len(pairs)))
    contended = sum(1 for x in runs if contended_phases(x))
    shares = [v for x in runs if (v := others_cpu_share(x)) is not None]
    context = VerdictContext(train_error, test_error, floors[0], floors[1], contended, max(shares, default=None))
    return Comparison(
        group,
        treatment,
        reference,
        len(pairs),
        synthetic,
        train_ratio,
        test_ratio,
        acc,
        pretrain,
        break_even,
        verdict(treatment, reference, train_ratio, acc, too_small, test_ratio, context),
        keys,
        train_error,
        test_error,
        floors[0],
        floors[1],
        contended,
        context.others_cpu_share,
        compare_to_target(treatment, reference, pairs, target) if target is not None else None,
    )


def compare(
    summaries: list[RunSummary], noise: NoiseFloor | None = None, target: float | None = None
) -> list[Comparison]:
    """Every comparison the runs allow: each mode against scratch (same data, size, mechanism),
    and each mechanism against the baseline (same data, size, mode). With this machine's noise
    floor, verdicts on its runs say when a ratio is within what identical runs do. With a target
    accuracy, each also compares the energy to reach it."""
    by_key = complete_by_key(summaries)
    out = []
    for key, runs in sorted(by_key.items(), key=lambda item: str(item[0])):
        if key.mode != "scratch":
            ref_key = key.with_mode("scratch")
            if ref_key in by_key:
                pretrain = _energy_estimate([pretrain_energy(r) for r in runs])
                group = key.across_modes
                for block, pairs in _node_blocks(group, _pair(runs, by_key[ref_key])):
                    out.append(
                        _compare(block, key.mode, "scratch", pairs, pretrain, (str(key), str(ref_key)), noise, target)
                    )
        if key.mechanism != BASELINE:
            ref_key = key.with_mechanism(BASELINE)
            if ref_key in by_key:
                group = key.across_mechanisms
                for block, pairs in _node_blocks(group, _pair(runs, by_key[ref_key])):
                    out.append(
                        _compare(block, key.mechanism, BASELINE, pairs, None, (str(key), str(ref_key)), noise, target)
                    )
    return out


# -- data-parallel scaling -------------------------------------------------------------------
def train_seconds(summary: RunSummary) -> float | None:
    """Wall time of training the target task: the train phase plus pruning's fine-tuning."""
    durations = [r.duration_s for p in TRAINING_PHASES if (r := summary.phase(p)) is not None]
    return sum(durations) if durations else None


def energy_per_sample(summary: RunSummary) -> tuple[float, str] | None:
    """Net training joules per sample trained on (every rank's samples), as the run recorded it."""
    per = summary.metrics.j_per_train_sample
    if per is None or per.value is None or per.source is None:
        return None
    return per.value, per.source


@dataclass
class Speedup:
    """A configuration at N processes per node against the same one at one process, paired by
    seed on the same node set: the speed-up of training and the energy per sample of each."""

    group: str  # the configuration with its processes left out, e.g. "synthetic/small/transfer/baseline"
    procs: int
    pairs: int
    synthetic: bool
    speedup: Estimate | None  # train wall time at 1 process / at N, geometric mean of the pairs
    j_per_sample: Estimate | None  # at N processes
    j_per_sample_one: Estimate | None  # at 1 process
    energy_ratio: Estimate | None  # energy per sample, N over 1, paired, widened by the meters' error
    keys: tuple[str, str] = ("", "")  # configuration keys at N processes and at one
    contended_runs: int = 0  # runs of the pairs with a metered phase on a busy machine


def scaling(summaries: list[RunSummary]) -> list[Speedup]:
    """Every configuration run at N > 1 processes per node whose single-process twin was run too:
    its speed-up and energy per sample, for each mode (and node set) separately."""
    by_key = complete_by_key(summaries)
    out = []
    for key, runs in sorted(by_key.items(), key=lambda item: str(item[0])):
        one = key.with_procs_per_node(1)
        if key.procs_per_node == 1 or one not in by_key:
            continue
        group = str(one)
        for block, pairs in _node_blocks(group, _pair(runs, by_key[one])):
            if not pairs:
                continue  # nothing ran on the same node set with the same seed
            timed = [(s1, sn) for t, r in pairs if (s1 := train_seconds(r)) is not None and (sn := train_seconds(t))]
            per = [
                (en, e1) for t, r in pairs if (en := energy_per_sample(t)) is not None and (e1 := energy_per_sample(r))
            ]
            ratio = None
            if per:
                source = weakest_source([a[1] for a, _ in per] + [b[1] for _, b in per])
                ratio = ratio_ci([a[0] for a, _ in per], [b[0] for _, b in per], source)
                error = max(meter_error(x, TRAINING_PHASES) for pair in pairs for x in pair)
                ratio = widen(ratio, error)
            out.append(
                Speedup(
                    group=block,
                    procs=key.procs_per_node,
                    pairs=len(pairs),
                    synthetic=any(t.synthetic or r.synthetic for t, r in pairs),
                    speedup=ratio_ci([a for a, _ in timed], [b for _, b in timed]) if timed else None,
                    j_per_sample=_energy_estimate([energy_per_sample(t) for t, _ in pairs]),
                    j_per_sample_one=_energy_estimate([energy_per_sample(r) for _, r in pairs]),
                    energy_ratio=ratio,
                    keys=(str(key), group),
                    contended_runs=sum(1 for pair in pairs for x in pair if contended_phases(x)),
                )
            )
    return out


def _interval_text(e: Estimate, fmt: str, unit: str = "") -> str:
    if not e.has_interval:
        return "no interval: one trial"
    return f"95 % CI {e.low:{fmt}}{unit} to {e.high:{fmt}}{unit}"


@dataclass(frozen=True)
class VerdictContext:
    """What a verdict must weigh besides the trials: meter error, the machine's noise, contention."""

    train_meter_error: float = 0.0
    test_meter_error: float = 0.0
    train_noise_floor: float | None = None
    test_noise_floor: float | None = None
    contended_runs: int = 0
    others_cpu_share: float | None = None


def _ratio_clause(
    ratio: Estimate, no_difference: str, differs: str, meter_error: float = 0.0, noise_floor: float | None = None
) -> str:
    """`no_difference (0.98x, CI)` when the interval spans 1, else `differs` with {x} filled in.

    The interval is the trials' interval widened by the meters' error; a ratio within this
    machine's A/A noise floor says so instead of standing as a bare number."""
    x = f"{ratio.mean:.2f}x"
    wide = widen(ratio, meter_error)
    interval = _interval_text(wide, ".2f", "x")
    if meter_error > 0 and wide.has_interval:
        interval += f" incl. meter error ±{100 * meter_error:.0f} %"
    if noise_floor is not None and abs(math.log(ratio.mean)) <= math.log1p(noise_floor):
        return f"{no_difference}: {x} is below this machine's noise floor (±{100 * noise_floor:.0f} %) ({interval})"
    if wide.has_interval and wide.spans(1.0):
        if not ratio.spans(1.0):
            return f"{no_difference}: {x} is smaller than the meters can resolve ({interval})"
        return f"{no_difference} ({x}, {interval})"
    return f"{differs.format(x=x)} ({interval})"


def verdict(
    treatment: str,
    reference: str,
    train_ratio: Estimate | None,
    acc: Estimate | None,
    too_small: bool = False,
    test_ratio: Estimate | None = None,
    context: VerdictContext | None = None,
) -> str:
    """One plain sentence a reader can paste, saying when an interval includes no difference."""
    ctx = context or VerdictContext()
    parts = []
    if train_ratio is None and too_small:
        parts.append(
            f"no training energy ratio for {treatment} vs {reference}: a net training energy was at or "
            "below zero, too short for the meter to resolve (train longer)"
        )
    elif train_ratio is None:
        parts.append(f"no training energy to compare for {treatment} and {reference}")
    else:
        parts.append(
            _ratio_clause(
                train_ratio,
                f"{treatment} and {reference}: no clear difference in training energy",
                f"{treatment} used {{x}} the training energy of {reference}",
                ctx.train_meter_error,
                ctx.train_noise_floor,
            )
        )
    if test_ratio is not None:
        parts.append(
            _ratio_clause(
                test_ratio,
                "no clear difference in energy per inference",
                "{x} the energy per inference",
                ctx.test_meter_error,
                ctx.test_noise_floor,
            )
        )
    if acc is not None:
        if acc.has_interval and acc.spans(0.0):
            parts.append(f"no clear difference in accuracy ({acc.mean:+.1f} points, {_interval_text(acc, '+.1f')})")
        else:
            word = "gained" if acc.mean >= 0 else "lost"
            parts.append(f"{word} {abs(acc.mean):.1f} points of accuracy ({_interval_text(acc, '+.1f')})")
    if len(parts) > 2:
        parts = [", ".join(parts[:-1]), parts[-1]]
    sentence = " and ".join(parts)
    if any(e is not None and e.source == "modelled" for e in (train_ratio, test_ratio)):
        sentence += " [energy modelled, not measured]"
    if ctx.contended_runs:
        share = (
            f"; other processes used up to {100 * ctx.others_cpu_share:.0f} % of the CPU"
            if ctx.others_cpu_share is not None
            else ""
        )
        sentence += (
            f" [measured on a busy machine: {ctx.contended_runs} run"
            f"{'s' if ctx.contended_runs != 1 else ''} contended{share}; treat as unreliable]"
        )
    return sentence


# -- energy to a target accuracy -------------------------------------------------------------
# MLPerf reports time to a target quality; this is its energy twin. The curve's joules are the
# meters' totals so far in the phase (gross: an epoch's point has no duration to take the idle
# share from), so energy to target is gross joules of the target task's training (train, then
# pruning's fine-tuning continuing from the train phase's total), pretraining left out (it has
# its own figure and break-even). Its verdict weighs the meters' error but not the noise floor:
# the floor was measured for whole training energy, not for a crossing that moves with accuracy.


def target_text(target: float) -> str:
    """0.9 -> "90 %"."""
    return f"{100 * target:g} %"


@dataclass(frozen=True)
class TargetReach:
    """How much energy one run spent until its validation accuracy first reached a target."""

    run_id: str
    seed: int
    target: float
    reached: bool
    joules: float | None = None  # gross J of training until the crossing; None: not reached or unknown
    source: str | None = None  # the weakest source of the curve points used
    phase: str | None = None  # the phase and epoch whose end first reached the target
    epoch: int | None = None
    unknown: str | None = None  # reached, but why its joules are not a measurement

    @property
    def measured(self) -> bool:
        return self.reached and self.joules is not None

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "seed": self.seed,
            "reached": self.reached,
            "gross_j": self.joules,
            "source": self.source,
            "phase": self.phase,
            "epoch": self.epoch,
            "unknown": self.unknown,
        }


def energy_to_target(summary: RunSummary, target: float) -> TargetReach:
    """Gross joules until validation accuracy first reached `target` (a fraction of 1).

    Linear between the two epochs that bracket the first crossing (energy and accuracy both along
    the curve). Reached at the first epoch: that point's joules; the accuracy before it was never
    measured, so nothing is interpolated from zero. Never reached: reached is False and no joules."""
    offset, offset_source = 0.0, None  # pruning's epochs continue from the train phase's total
    previous: tuple[float, float, str | None] | None = None  # (joules, accuracy, source)
    for point in summary.curve:
        if point.phase not in TRAINING_PHASES:
            continue
        if point.phase == "prune":
            train = summary.total("train")
            offset, offset_source = (train.gross_j, train.source) if train is not None else (0.0, None)
        joules, accuracy = offset + point.cumulative_j, point.val_accuracy_frac
        if accuracy < target:
            previous = (joules, accuracy, point.source)
            continue
        sources = [
            point.source,
            *([previous[2]] if previous else []),
            *([offset_source] if point.phase == "prune" else []),
        ]
        if previous is not None:  # its accuracy is below the target, this one's at or above
            joules = previous[0] + (target - previous[1]) / (accuracy - previous[1]) * (joules - previous[0])
        unknown = _target_energy_unknown(summary, point.phase, sources)
        return TargetReach(
            summary.run_id,
            summary.seed,
            target,
            True,
            None if unknown else joules,
            None if unknown else weakest_source(s for s in sources if s is not None),
            point.phase,
            point.epoch,
            unknown,
        )
    return TargetReach(summary.run_id, summary.seed, target, False)


def _target_energy_unknown(summary: RunSummary, phase: str, sources: list[str | None]) -> str | None:
    """Why the joules up to a crossing in `phase` are no measurement (a meter gap, no meter)."""
    for p in TRAINING_PHASES[: TRAINING_PHASES.index(phase) + 1]:
        total = summary.total(p)
        if total is not None and total.gap:
            return f"meter gap in {p} ({', '.join(total.gap)})"
    if any(s is None for s in sources):
        return "no meter answered"
    return None


@dataclass(frozen=True)
class TargetStats:
    """Energy to a target over one configuration's trials: the mean and interval of the runs
    that reached it, and those that did not, counted and named (never averaged as zero)."""

    target: float
    runs: list[TargetReach]
    joules: Estimate | None  # over the runs that reached it with known energy

    @property
    def reached(self) -> list[TargetReach]:
        return [r for r in self.runs if r.reached]

    @property
    def not_reached(self) -> list[TargetReach]:
        return [r for r in self.runs if not r.reached]

    @property
    def unknown(self) -> list[TargetReach]:
        return [r for r in self.runs if r.reached and r.joules is None]

    @property
    def count_text(self) -> str:
        """ "2 of 3 trials reached 90 %"."""
        n = len(self.runs)
        return f"{len(self.reached)} of {n} trial{'s' if n != 1 else ''} reached {target_text(self.target)}"

    def as_dict(self) -> dict[str, object]:
        return {
            "target_accuracy": self.target,
            "trials": len(self.runs),
            "reached": len(self.reached),
            "not_reached": [r.run_id for r in self.not_reached],
            "energy_unknown": [r.run_id for r in self.unknown],
            "gross_j": self.joules.as_dict() if self.joules is not None else None,
            "runs": [r.as_dict() for r in self.runs],
        }


def target_stats(runs: list[RunSummary], target: float) -> TargetStats:
    reaches = [energy_to_target(r, target) for r in runs]
    measured: list[tuple[float, str] | None] = [
        (r.joules, r.source) for r in reaches if r.joules is not None and r.source is not None
    ]
    return TargetStats(target, reaches, _energy_estimate(measured))


@dataclass(frozen=True)
class TargetComparison:
    """Energy to a target, treatment against reference, paired by seed over the pairs where both
    reached it with known energy; the runs of the other pairs are named in the verdict."""

    target: float
    treatment: TargetStats  # over the runs of the pairs
    reference: TargetStats
    ratio: Estimate | None
    pairs: int  # pairs in the ratio: both runs reached the target with known energy
    meter_error: float
    verdict: str

    @property
    def interval(self) -> Estimate | None:
        return widen(self.ratio, self.meter_error)

    def as_dict(self) -> dict[str, object]:
        return {
            "target_accuracy": self.target,
            "pairs": self.pairs,
            "ratio": self.ratio.as_dict() if self.ratio is not None else None,
            "meter_error": self.meter_error,
            "treatment_reached": self.treatment.count_text,
            "reference_reached": self.reference.count_text,
            "not_reached": [r.run_id for r in (*self.treatment.not_reached, *self.reference.not_reached)],
            "energy_unknown": [r.run_id for r in (*self.treatment.unknown, *self.reference.unknown)],
            "verdict": self.verdict,
        }


def _runs_text(reaches: list[TargetReach]) -> str:
    return ", ".join(f"{r.run_id} (seed {r.seed})" for r in reaches)


def compare_to_target(treatment: str, reference: str, pairs: list[Pair], target: float) -> TargetComparison:
    """The paired ratio of energy to `target` for one comparison's pairs, with its verdict."""
    treat = target_stats([t for t, _ in pairs], target)
    ref = target_stats([r for _, r in pairs], target)
    both = [
        (a.joules, b.joules, a.source, b.source)
        for a, b in zip(treat.runs, ref.runs)
        if a.joules is not None and b.joules is not None and a.source is not None and b.source is not None
    ]
    ratio = None
    if both:
        source = weakest_source(s for _, _, *sources in both for s in sources)
        ratio = ratio_ci([a for a, *_ in both], [b for _, b, *_ in both], source)
    error = max((meter_error(x, TRAINING_PHASES) for pair in pairs for x in pair), default=0.0)
    goal = f"{target_text(target)} validation accuracy"
    if ratio is None:
        sentence = (
            f"no ratio of energy to {goal} for {treatment} vs {reference}: no pair where both reached it "
            "with known energy"
        )
    else:
        sentence = _ratio_clause(
            ratio,
            f"{treatment} and {reference}: no clear difference in energy to reach {goal}",
            f"to reach {goal}, {treatment} used {{x}} the energy of {reference}",
            error,
        )
        if ratio.source == "modelled":
            sentence += " [energy modelled, not measured]"
    sentence += f"; {treatment}: {treat.count_text}, {reference}: {ref.count_text}"
    if missed := treat.not_reached + ref.not_reached:
        sentence += f"; not reached by {_runs_text(missed)}"
    if unknown := treat.unknown + ref.unknown:
        sentence += f"; energy unknown for {_runs_text(unknown)} ({'; '.join(r.unknown or '' for r in unknown)})"
    return TargetComparison(target, treat, ref, ratio, ratio.n if ratio is not None else 0, error, sentence)
