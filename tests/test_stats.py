import math

import pytest

from engine.analysis.stats import compare, config_stats, mean_ci, ratio_ci, t_quantile
from tests.helpers import golden_summary, make_summary


@pytest.mark.parametrize(
    ("df", "expected"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423), (1000, 1.9623)]
)
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_mean_ci_by_hand():
    e = mean_ci([1.0, 2.0, 3.0])
    half = 4.302653 * 1.0 / math.sqrt(3)
    assert e.mean == 2.0
    assert e.low == pytest.approx(2 - half, abs=1e-5) and e.high == pytest.approx(2 + half, abs=1e-5)


def test_one_trial_has_no_interval_and_identical_values_a_zero_width_one():
    one = mean_ci([5.0])
    assert one.mean == 5.0 and not one.has_interval and not one.spans(5.0)
    same = mean_ci([2.0, 2.0, 2.0])
    assert same.low == same.high == 2.0


def test_ratio_is_geometric_and_paired():
    r = ratio_ci([1.0, 4.0], [2.0, 2.0])
    assert r.mean == pytest.approx(math.sqrt(0.5 * 2.0))
    assert r.has_interval and r.spans(1.0)


def summary(mode, seed, train_j, acc, pretrain_j=None, source="modelled", j_inf=0.001, status="complete"):
    return make_summary(
        f"synthetic/small/{mode}/baseline",
        seed,
        train_j,
        acc,
        pretrain_j=pretrain_j,
        source=source,
        j_per_inference=j_inf,
        status=status,
    )


def test_transfer_vs_scratch_verdict_ratio_and_break_even():
    runs = []
    for seed, (tj, sj, ta, sa) in enumerate([(10, 50, 0.90, 0.92), (11, 52, 0.89, 0.92), (9, 49, 0.90, 0.93)]):
        runs += [summary("transfer", seed, tj, ta, pretrain_j=80), summary("scratch", seed, sj, sa)]
    runs.append(summary("scratch", 9, 1, 1, status="crashed"))  # ignored
    (c,) = compare(runs)
    assert c.treatment == "transfer" and c.reference == "scratch" and c.pairs == 3
    expected = math.exp(sum(math.log(t / s) for t, s in [(10, 50), (11, 52), (9, 49)]) / 3)
    assert c.train_ratio.mean == pytest.approx(expected)
    assert c.train_ratio.high < 1 and c.train_ratio.source == "modelled"
    assert c.accuracy_diff_points.mean == pytest.approx(-2.6666667)
    assert c.break_even_runs == pytest.approx(80 / ((40 + 41 + 40) / 3))
    assert c.verdict.startswith("transfer used 0.20x the training energy of scratch (95 % CI")
    assert "lost 2.7 points of accuracy" in c.verdict
    assert c.verdict.endswith("[energy modelled, not measured]")
    stats = {s.key: s for s in config_stats(runs)}
    assert stats["synthetic/small/scratch/baseline"].n == 3


def test_no_clear_difference_when_the_interval_spans_one():
    runs = []
    for seed, (tj, sj) in enumerate([(10, 12), (12, 10), (11, 11)]):
        runs += [summary("transfer", seed, tj, 0.9), summary("scratch", seed, sj, 0.9)]
    (c,) = compare(runs)
    assert "no clear difference in training energy" in c.verdict
    assert "no clear difference in accuracy" in c.verdict


def test_one_trial_says_so_and_counter_values_are_not_called_modelled():
    (c,) = compare(
        [summary("transfer", 0, 10, 0.9, source="counter"), summary("scratch", 0, 20, 0.8, source="counter")]
    )
    assert "no interval: one trial" in c.verdict
    assert "modelled" not in c.verdict
    assert c.train_ratio.mean == pytest.approx(0.5)


def test_training_too_short_to_resolve_is_said_not_hidden():
    (c,) = compare([summary("transfer", 0, 0.0, 0.9), summary("scratch", 0, 2.0, 0.8)])
    assert c.train_ratio is None
    assert "too short for the meter to resolve" in c.verdict


def test_a_phase_with_a_meter_gap_is_left_out_of_energy_figures_and_counted():
    from engine.outputs.tables import config_table

    scratch = golden_summary("golden-scratch")
    second = golden_summary("golden-scratch")
    second.run_id, second.spec["seed"] = "gap-run", 1
    second.phases["train"].total.gap = ["cpu"]
    (stats,) = config_stats([scratch, second])
    assert stats.n == 2 and stats.gap_runs == 1
    assert stats.train_j.n == 1 and stats.train_j.mean == scratch.phases["train"].total.net_j
    assert "left out of the energy columns" in config_table([stats]).caption
