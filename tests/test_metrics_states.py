"""joulelab_run_state follows every phase of the event schema, warm-up included."""

import pytest

from engine.core.events import PHASES, PhaseStart
from engine.outputs.prometheus import MetricsServer

LABELS = {"run_id": "r1", "configuration": "c"}


def state_now(metrics: MetricsServer) -> list[str]:
    value = metrics.registry.get_sample_value
    return [s for s in ("starting", *PHASES) if value("joulelab_run_state", {**LABELS, "joulelab_run_state": s}) == 1.0]


def test_a_warmup_phase_reads_warmup_not_starting():
    metrics = MetricsServer(port=1)  # never started: only its registry is read
    metrics.begin("r1", "c", sample_hz=10.0)
    assert state_now(metrics) == ["starting"]
    metrics.observe(PhaseStart(run="r1", t=1.0, phase="warmup"))
    assert state_now(metrics) == ["warmup"]


@pytest.mark.parametrize("phase", PHASES)
def test_every_phase_of_the_schema_is_a_state(phase):
    metrics = MetricsServer(port=1)
    metrics.begin("r1", "c", sample_hz=10.0)
    metrics.observe(PhaseStart(run="r1", t=1.0, phase=phase))
    assert state_now(metrics) == [phase]
