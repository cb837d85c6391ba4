"""Energy to a target accuracy: the crossing on one run's curve, and its statistics over trials."""

import math

import pytest

from engine.analysis.stats import compare, config_stats, energy_to_target
from engine.core.records import CurvePoint, PhaseTotal
from engine.core.spec import target_problem
from tests.helpers import make_summary


def point(epoch, accuracy, joules, phase="train", source="counter"):
    return CurvePoint(phase=phase, epoch=epoch, val_accuracy_frac=accuracy, cumulative_j=joules, source=source)


def run(curve, mode="scratch", seed=0, source="counter", **fields):
    return make_summary(f"synthetic/small/{mode}/baseline", seed, 100.0, 0.9, source=source, curve=curve, **fields)


# -- one run's crossing ------------------------------------------------------------------
def test_a_crossing_between_epochs_is_interpolated_linearly():
    r = run([point(1, 0.5, 10.0), point(2, 0.7, 20.0), point(3, 0.95, 30.0)])
    reach = energy_to_target(r, 0.9)
    # between epoch 2 (0.7, 20 J) and epoch 3 (0.95, 30 J): 0.2 / 0.25 of the way
    assert reach.reached and reach.joules == pytest.approx(28.0)
    assert (reach.phase, reach.epoch, reach.source) == ("train", 3, "counter")


def test_the_first_crossing_counts_not_a_later_one():
    r = run([point(1, 0.5, 10.0), point(2, 0.92, 20.0), point(3, 0.6, 30.0), point(4, 0.99, 40.0)])
    assert energy_to_target(r, 0.9).joules == pytest.approx(10.0 + 0.4 / 0.42 * 10.0)


def test_reached_at_the_first_epoch_is_that_points_joules_not_interpolated_from_zero():
    r = run([point(1, 0.93, 12.5), point(2, 0.97, 20.0)])
    reach = energy_to_target(r, 0.9)
    assert reach.reached and reach.joules == 12.5 and reach.epoch == 1


def test_exactly_on_target_is_reached_there():
    r = run([point(1, 0.5, 10.0), point(2, 0.9, 20.0)])
    assert energy_to_target(r, 0.9).joules == pytest.approx(20.0)


def test_never_reached_has_no_joules():
    r = run([point(1, 0.5, 10.0), point(2, 0.8, 20.0)])
    reach = energy_to_target(r, 0.9)
    assert not reach.reached and reach.joules is None and reach.epoch is None
    assert not energy_to_target(run([]), 0.9).reached  # a run without a curve never reached it


def test_a_missing_epoch_interpolates_between_the_points_there_are():
    r = run([point(1, 0.5, 10.0), point(4, 1.0, 40.0)])  # epochs 2 and 3 not recorded
    reach = energy_to_target(r, 0.9)
    assert reach.joules == pytest.approx(34.0) and reach.epoch == 4


def test_a_modelled_point_makes_the_figure_modelled():
    r = run([point(1, 0.5, 10.0, source="counter"), point(2, 1.0, 20.0, source="modelled")])
    assert energy_to_target(r, 0.9).source == "modelled"


def test_a_meter_gap_in_training_leaves_the_energy_unknown_but_the_crossing_reached():
    r = run([point(1, 0.5, 10.0), point(2, 1.0, 20.0)])
    r.phases["train"].total = PhaseTotal(gross_j=20.0, net_j=19.0, source="counter", gap=["package-0"])
    reach = energy_to_target(r, 0.9)
    assert reach.reached and reach.joules is None and reach.source is None
    assert reach.unknown == "meter gap in train (package-0)"


def test_an_unmetered_point_leaves_the_energy_unknown():
    reach = energy_to_target(run([point(1, 0.95, 10.0, source=None)]), 0.9)
    assert reach.reached and reach.joules is None and reach.unknown == "no meter answered"


def test_pretraining_is_left_out_and_pruning_continues_from_the_train_total():
    r = run(
        [
            point(1, 0.99, 50.0, phase="pretrain"),  # the source network's curve: not the target task
            point(1, 0.6, 30.0),
            point(2, 0.8, 60.0),
            point(1, 1.0, 5.0, phase="prune"),
        ]
    )
    r.phases["train"].total = PhaseTotal(gross_j=62.0, net_j=60.0, source="counter")
    reach = energy_to_target(r, 0.9)
    # between the last train epoch (0.8, 60 J) and prune epoch 1 (1.0, 62 + 5 J): halfway
    assert reach.phase == "prune" and reach.epoch == 1
    assert reach.joules == pytest.approx(60.0 + 0.5 * 7.0)


def test_a_target_is_a_fraction_of_one():
    assert target_problem(0.9) is None and target_problem(1.0) is None
    assert "got 90 (for 90 % write 0.9)" in (target_problem(90) or "")
    for bad in (0.0, -0.5, 1.5, 250, math.nan):
        assert target_problem(bad) is not None, bad


# -- over trials ---------------------------------------------------------------------------
def three_pairs():
    """Three seeds: transfer reaches 90 % in two of them, scratch in all three."""
    transfer = [
        [point(1, 0.8, 4.0), point(2, 1.0, 8.0)],  # 6 J
        [point(1, 0.95, 5.0)],  # 5 J, at the first epoch
        [point(1, 0.5, 4.0), point(2, 0.85, 8.0)],  # never
    ]
    scratch = [
        [point(1, 0.8, 10.0), point(2, 1.0, 20.0)],  # 15 J
        [point(1, 0.5, 10.0), point(2, 0.9, 12.5)],  # 12.5 J
        [point(1, 0.7, 10.0), point(2, 0.95, 20.0)],  # 18 J
    ]
    runs = []
    for seed, (t, s) in enumerate(zip(transfer, scratch)):
        runs += [run(t, "transfer", seed, run_id=f"tr-{seed}"), run(s, "scratch", seed, run_id=f"scr-{seed}")]
    return runs


def test_per_configuration_mean_and_interval_over_the_trials_that_reached_it():
    stats = {s.key: s.to_target for s in config_stats(three_pairs(), target=0.9)}
    transfer, scratch = stats["synthetic/small/transfer/baseline"], stats["synthetic/small/scratch/baseline"]
    assert transfer is not None and scratch is not None
    assert transfer.count_text == "2 of 3 trials reached 90 %"
    assert [r.run_id for r in transfer.not_reached] == ["tr-2"]
    assert transfer.joules is not None and transfer.joules.n == 2  # the miss is not averaged as zero
    assert transfer.joules.mean == pytest.approx(5.5) and transfer.joules.source == "counter"
    assert transfer.joules.has_interval
    assert scratch.count_text == "3 of 3 trials reached 90 %" and scratch.joules.mean == pytest.approx(45.5 / 3)
    assert all(s.to_target is None for s in config_stats(three_pairs()))  # only when asked for


def test_the_paired_ratio_uses_the_pairs_where_both_reached_and_names_the_others():
    (c,) = compare(three_pairs(), target=0.9)
    t = c.to_target
    assert t is not None and c.pairs == 3 and t.pairs == 2
    # seeds 0 and 1: 6 / 15 and 5 / 12.5, both 0.4; seed 2's pair is left out, not counted as zero
    assert t.ratio is not None and t.ratio.mean == pytest.approx(0.4) and t.ratio.has_interval
    assert t.ratio.source == "counter"
    assert t.verdict.startswith("to reach 90 % validation accuracy, transfer used 0.40x the energy of scratch (95 % CI")
    assert "transfer: 2 of 3 trials reached 90 %, scratch: 3 of 3 trials reached 90 %" in t.verdict
    assert t.verdict.endswith("not reached by tr-2 (seed 2)")
    assert compare(three_pairs())[0].to_target is None


def test_an_interval_that_spans_one_says_no_clear_difference():
    runs = []
    for seed, (t, s) in enumerate([(6.0, 15.0), (20.0, 10.0)]):
        runs += [run([point(1, 0.95, t)], "transfer", seed), run([point(1, 0.95, s)], "scratch", seed)]
    (c,) = compare(runs, target=0.9)
    assert c.to_target is not None
    assert c.to_target.verdict.startswith(
        "transfer and scratch: no clear difference in energy to reach 90 % validation accuracy"
    )


def test_no_pair_where_both_reached_says_so():
    runs = [run([point(1, 0.5, 4.0)], "transfer", 0), run([point(1, 0.95, 9.0)], "scratch", 0)]
    (c,) = compare(runs, target=0.9)
    assert c.to_target is not None and c.to_target.ratio is None
    assert c.to_target.verdict.startswith("no ratio of energy to 90 % validation accuracy for transfer vs scratch")
    assert "transfer: 0 of 1 trial reached 90 %" in c.to_target.verdict


def test_a_modelled_ratio_says_so():
    runs = [
        run([point(1, 0.95, 4.0, source="modelled")], "transfer", 0, source="modelled"),
        run([point(1, 0.95, 9.0, source="modelled")], "scratch", 0, source="modelled"),
    ]
    (c,) = compare(runs, target=0.9)
    assert c.to_target is not None and c.to_target.ratio is not None and c.to_target.ratio.source == "modelled"
    assert "[energy modelled, not measured]" in c.to_target.verdict


@pytest.mark.parametrize("columns", [80, 120])
def test_the_target_tables_fit_the_terminal_and_name_the_runs_that_missed(columns):
    from rich.console import Console

    from engine.outputs.tables import fitted, target_comparison_table, target_table

    runs = three_pairs()
    stats, comparisons = config_stats(runs, target=0.9), compare(runs, target=0.9)
    console = Console(width=columns, record=True, force_terminal=False)
    console.print(fitted(console, lambda narrow: target_table(stats, narrow=narrow)))
    console.print(fitted(console, lambda narrow: target_comparison_table(comparisons, narrow=narrow)))
    out = console.export_text()
    assert max(len(line) for line in out.splitlines()) <= columns
    words = " ".join(out.split())
    assert "Energy to 90 % validation accuracy" in words and "Energy to 90 % (paired by seed)" in words
    assert "2 of 3" in words and "3 of 3" in words and "not reached by tr-2 (seed 2)" in words
    assert "0.4x" in words and "[0.4," in words  # the ratio with its interval
