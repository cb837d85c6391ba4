"""`run --until-clear`'s loop (engine.cli._until_clear) with a fake plan executor: each trial's
training energies are chosen, so each outcome (clear at once, clear after more trials, unclear at
the maximum, interrupted) is forced and asserted exactly. No worker runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.cli import _until_clear
from engine.core.records import to_json_object
from engine.core.run_files import atomic_write_json
from engine.orchestrate import plan_runner, presets
from engine.orchestrate.plan_runner import PlanResult
from engine.orchestrate.worker_process import RunOutcome
from tests.helpers import make_summary

PRESET = """
[preset]
name = "pair"
trials = 2
[matrix]
dataset = ["synthetic"]
size = ["small"]
mode = ["transfer", "scratch"]
"""
SCRATCH_J = 10.0


class FakeExecutor:
    """Stands in for plan_runner.execute_plan: writes each planned run's summary, transfer's
    training energy `ratios[trial]` times scratch's, and keeps the plans it was given."""

    def __init__(self, logs: Path, ratios: list[float], interrupt_at_call: int | None = None) -> None:
        self.logs, self.ratios, self.interrupt_at_call = logs, ratios, interrupt_at_call
        self.calls: list[list[tuple[str, int]]] = []

    async def __call__(self, plan, console, *, batch: str | None = None, **options) -> PlanResult:
        self.calls.append([(str(p.config.key), p.trial) for p in plan])
        outcomes = []
        for p in plan:
            key = str(p.config.key)
            run_id = f"{key.replace('/', '-')}-{p.trial}"
            train_j = SCRATCH_J * (self.ratios[p.trial] if p.config.mode == "transfer" else 1.0)
            run_path = self.logs / run_id
            summary = make_summary(key, p.spec.seed, train_j, 0.9, run_id=run_id)
            atomic_write_json(run_path / "summary.json", to_json_object(summary))
            outcomes.append(RunOutcome(run_id, run_path, 0, "complete"))
        interrupted = len(self.calls) == self.interrupt_at_call
        return PlanResult(outcomes, interrupted, batch or "batch-1")


def until_clear(tmp_path: Path, monkeypatch, ratios: list[float], max_trials: int, **fake):
    preset = tmp_path / "pair.toml"
    preset.write_text(PRESET)
    loaded = presets.load(str(preset))
    execute = FakeExecutor(tmp_path / "logs", ratios, **fake)
    monkeypatch.setattr(plan_runner, "execute_plan", execute)  # _until_clear imports it at call time
    result = asyncio.run(execute(loaded.plan(2), None))  # the plan's first two trials
    execute.calls.clear()
    after, note = _until_clear(loaded, {}, 2, max_trials, result, None, list)
    return execute, after, note


TRANSFER, SCRATCH = "synthetic/small/transfer/baseline", "synthetic/small/scratch/baseline"


def test_clear_after_two_trials_runs_nothing_more(tmp_path, monkeypatch):
    execute, result, note = until_clear(tmp_path, monkeypatch, [0.5, 0.501], max_trials=5)
    assert execute.calls == []
    assert note == "--until-clear: every comparison is clear after 2 trials"
    assert len(result.outcomes) == 4 and not result.interrupted and result.batch == "batch-1"


def test_an_unclear_pair_gets_one_more_trial_of_its_two_configurations_until_clear(tmp_path, monkeypatch):
    # ratios 0.5 and 0.6: the 95 % interval at two trials (t = 12.7) spans 1; with 0.55 it does not
    execute, result, note = until_clear(tmp_path, monkeypatch, [0.5, 0.6, 0.55, 0.55], max_trials=5)
    assert execute.calls == [[(TRANSFER, 2), (SCRATCH, 2)]]
    assert note == "--until-clear: every comparison is clear after 3 trials"
    assert len(result.outcomes) == 6 and result.batch == "batch-1"  # the new runs join the batch


def test_a_pair_still_unclear_at_the_maximum_stops_there_and_says_so(tmp_path, monkeypatch):
    execute, result, note = until_clear(tmp_path, monkeypatch, [0.5, 1.5, 0.5, 1.5, 0.5], max_trials=4)
    assert execute.calls == [[(TRANSFER, 2), (SCRATCH, 2)], [(TRANSFER, 3), (SCRATCH, 3)]]
    assert note == (
        "--until-clear: still unclear after the maximum of 4 trials: synthetic/small/baseline transfer vs scratch"
    )
    assert len(result.outcomes) == 8 and not result.interrupted


def test_an_interrupted_extra_trial_ends_the_loop_interrupted(tmp_path, monkeypatch):
    execute, result, note = until_clear(tmp_path, monkeypatch, [0.5, 1.5, 0.5, 1.5], max_trials=4, interrupt_at_call=1)
    assert execute.calls == [[(TRANSFER, 2), (SCRATCH, 2)]]
    assert note is None and result.interrupted and len(result.outcomes) == 6


@pytest.fixture(autouse=True)
def no_noise_floor(monkeypatch):
    """No calibration on this 'machine': the verdicts use the trials' spread alone."""
    from engine.analysis import calibrate

    monkeypatch.setattr(calibrate, "load_noise_floor", lambda host=None, on_problem=None: None)
