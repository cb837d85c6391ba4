"""The one event fold (engine.orchestrate.event_fold): finished phases are the worker's numbers,
the open phase is measured as the worker measures one, and the readers that used to keep their own
fold (the stalled summary, the lab's past-run reference) read the same numbers from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core.events import decode_event, encode, make_event
from engine.core.spec import spec_from_dict
from engine.orchestrate.event_fold import RunFold, fold_events, power_trace
from engine.orchestrate.worker_process import write_stalled_summary

METERS = [
    {"name": "cpu", "source": "counter", "method": "rapl:package-0", "kind": "cpu"},
    {"name": "psys", "source": "counter", "method": "rapl:psys", "kind": "platform"},
]


def sample(t: float, cpu_j: float, psys_j: float, w: float | None = 10.0) -> dict:
    return make_event(
        "sample",
        "r1",
        domains={
            "cpu": {"w": w, "j": cpu_j, "source": "counter", "method": "rapl:package-0"},
            "psys": {"w": None if w is None else 3 * w, "j": psys_j, "source": "counter", "method": "rapl:psys"},
        },
    )


def at(event: dict, t: float) -> dict:
    return {**event, "t": t}


def stream() -> list[dict]:
    """idle 0-1 s at 2 W (cpu), then train from 1.05 s, stopped (no phase_end) at 2.0 s."""
    idle_energy = {
        "cpu": {"gross_j": 2.0, "idle_j": 2.0, "net_j": 0.0, "source": "counter", "method": "rapl:package-0"},
        "psys": {"gross_j": 6.0, "idle_j": 6.0, "net_j": 0.0, "source": "counter", "method": "rapl:psys"},
    }
    return [
        at(make_event("hello", "r1", meters=METERS, missing=[]), 0.0),
        at(make_event("phase_start", "r1", phase="idle"), 0.0),
        at(sample(0.1, 0.2, 0.6, w=None), 0.1),
        at(sample(1.0, 2.0, 6.0, w=2.0), 1.0),
        at(
            make_event(
                "phase_end",
                "r1",
                phase="idle",
                duration_s=1.0,
                energy=idle_energy,
                total={"gross_j": 2.0, "idle_j": 2.0, "net_j": 0.0, "source": "counter"},
            ),
            1.0,
        ),
        at(make_event("phase_start", "r1", phase="train"), 1.05),
        at(sample(1.5, 7.0, 21.0), 1.5),
        at(make_event("meter_gap", "r1", domain="psys", reason="read failed"), 1.6),
        at(sample(2.0, 12.0, 36.0), 2.0),
    ]


def events() -> list:
    return [decode_event(encode(e)) for e in stream()]


def test_a_finished_phase_is_the_workers_and_the_open_one_is_measured_like_the_worker():
    fold = fold_events(events())
    idle, train = fold.rows["idle"], fold.rows["train"]
    assert idle.final and idle.total_net_j == 0.0 and idle.gross_j == {"cpu": 2.0, "psys": 6.0}
    assert fold.idle_w == {"cpu": 2.0, "psys": 6.0}
    # train: from the last sample at or before its start (t=1.0, 2 J) to the last one (t=2.0, 12 J),
    # less the idle baseline over the same second; psys (platform) is reported, never summed
    assert not train.final and train.gross_j["cpu"] == pytest.approx(10.0)
    assert train.net_j["cpu"] == pytest.approx(8.0) and train.net_j["psys"] == pytest.approx(24.0)
    assert train.total_net_j == pytest.approx(8.0) and train.total_gross_j == pytest.approx(10.0)
    assert fold.net_total_j == pytest.approx(8.0) and fold.total_w == 10.0 and fold.source == "counter"
    assert fold.gap_counts == {"psys": 1} and fold.phase == "train" and fold.events == 9


def test_a_stalled_runs_summary_records_what_the_live_fold_showed(tmp_path: Path):
    run_path = tmp_path / "r1"
    run_path.mkdir()
    (run_path / "events.jsonl").write_text("".join(encode(e) for e in stream()))
    (run_path / "run.json").write_text(json.dumps({"run_id": "r1", "spec": {}, "started": "2024-01-01T00:00:00+0000"}))
    spec = spec_from_dict({"dataset": "synthetic", "run_id": "r1", "logs_dir": str(tmp_path)}, "test")
    live = fold_events(events())

    summary = write_stalled_summary(run_path, spec, "stalled: test")

    train = summary.phases["train"]
    assert train.partial and train.duration_s == pytest.approx(1.0)
    assert train.total.net_j == pytest.approx(live.rows["train"].total_net_j)
    assert {n: e.net_j for n, e in train.energy.items()} == pytest.approx(live.rows["train"].net_j)
    assert train.energy["psys"].gap  # the meter gap began inside the phase
    assert summary.phases["idle"].total.gross_j == 2.0 and summary.idle_watts["cpu"].w == 2.0
    assert summary.last_phase == "train" and summary.meter_gaps == ["psys"] and summary.events == 11


def test_the_past_run_reference_is_the_runs_totals_of_each_sample_with_watts():
    t, w = power_trace(events())
    assert t == [1.0, 1.5, 2.0]  # the first sample has no watts yet
    assert w == [2.0, 10.0, 10.0]  # cpu only: the platform domain would count twice


def test_a_phase_that_began_before_the_first_sample_is_measured_live_from_it():
    fold = RunFold()
    for e in events()[:3]:
        fold.update(e)
    assert fold.rows["idle"].gross_j == {"cpu": 0.0, "psys": 0.0}
    fold.update(events()[3])
    assert fold.rows["idle"].gross_j == pytest.approx({"cpu": 1.8, "psys": 5.4})
    assert fold.rows["idle"].net_j == fold.rows["idle"].gross_j  # idle is all idle
    assert fold.open_phase_energy(from_first_sample=False) is None  # a rebuilt summary leaves it out


def test_the_run_total_leaves_out_the_warm_up_as_the_summary_does():
    """Defect: the lab's run total (Live and a reopened run) added the unmetered warm-up phase."""
    warmup_energy = {"cpu": {"gross_j": 12.0, "idle_j": 2.0, "net_j": 10.0, "source": "counter", "method": "rapl:p"}}
    warmup = [
        at(make_event("phase_start", "r1", phase="warmup"), 1.0),
        at(
            make_event(
                "phase_end",
                "r1",
                phase="warmup",
                duration_s=0.04,
                energy=warmup_energy,
                total={"gross_j": 12.0, "idle_j": 2.0, "net_j": 10.0, "source": "counter"},
            ),
            1.04,
        ),
    ]
    raw = stream()
    with_warmup = raw[:5] + warmup + raw[5:]  # idle, warm-up, then train
    fold = fold_events([decode_event(encode(e)) for e in with_warmup])
    assert fold.rows["warmup"].total_net_j == pytest.approx(10.0)
    assert fold.net_total_j == pytest.approx(fold.rows["train"].total_net_j)


def test_a_phase_withdrawn_with_no_end_is_dropped_when_the_next_one_starts():
    # `joulelab measure` opens its provisional train phase, then the command's own run takes over
    # with phases of its own: the withdrawn phase's seconds are in the remainder, not a row too
    fold = fold_events(events())
    assert fold.open_row is not None and fold.open_row.phase == "train"
    fold.update(decode_event(encode(at(make_event("phase_start", "r1", phase="fit"), 2.0))))
    assert "train" not in fold.rows and fold.open_row is not None and fold.open_row.phase == "fit"
    fold.update(decode_event(encode(at(sample(3.0, 22.0, 66.0), 3.0))))
    assert fold.net_total_j == pytest.approx(fold.rows["fit"].total_net_j)
