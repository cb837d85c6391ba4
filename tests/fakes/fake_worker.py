"""A fake worker: reads a spec on stdin like `python -m engine.worker`, replays a recorded event
stream (or makes one up at a given rate), and writes the run log like the real worker, so the
lab's history view and the stats work on its runs.

    python tests/fakes/fake_worker.py                       # replay <mode>.jsonl next to this file
    python tests/fakes/fake_worker.py --recording F.jsonl   # replay a given recording
    python tests/fakes/fake_worker.py --speed 1             # at the recorded pace (default: at once)
    python tests/fakes/fake_worker.py --crash-after 20      # SIGKILL itself after 20 events
    python tests/fakes/fake_worker.py --crash-in train      # SIGKILL itself just before the train phase ends
    python tests/fakes/fake_worker.py --fail-after 20       # report an error and fail
    python tests/fakes/fake_worker.py --rate 10 --duration 60   # synthetic stream, 10 samples/s
    python tests/fakes/fake_worker.py --hold                # wait for SIGTERM before the end
    python tests/fakes/fake_worker.py --record DIR          # record the real worker (both modes)

Run ids and timestamps are rewritten: the run id is the spec's, times keep their recorded
offsets from a new start. `--wall` fixes the wall-clock fields, for deterministic snapshots.
SIGTERM ends the run as the real worker does: the open phase partial, status cancelled, exit 130.

The recordings are today's worker, not a hand-written imitation: `<mode>.jsonl` is a real tiny
run's event stream and `<mode>.summary.json` its summary.json, with ids, times and the host made
neutral. The fake writes its summary as the typed RunSummary through the records' codec, taking
what the events cannot say (contention, warm-up steps, network, device) from the recorded summary;
the host is this machine's, as the real worker's is.
After a change to the worker's events or summary, regenerate both modes and review the diff:

    python tests/fakes/fake_worker.py --record tests/fakes

tests/test_fake_worker.py runs a fresh real worker and fails when its event types or summary
fields differ from the recordings, so the fake cannot drift silently.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, like `python -m engine.worker` from the repo

from engine.core.records import (  # noqa: E402
    CurvePoint,
    MeterDomain,
    MissingMeter,
    PhaseRecord,
    PretrainRecord,
    RunManifest,
    RunSummary,
    metrics_from_json,
    summary_from_json,
    to_json_object,
)
from engine.core.spec import SpecError, spec_from_dict  # noqa: E402

# The neutral values a recording carries in place of its run's own.
RECORDED_RUN = "RECORDED"
RECORDED_TIME = "2026-01-01T10:00:00+0000"
RECORDED_HOST = "recorded-host"
RECORD_SPEC = {
    "dataset": "synthetic",
    "size": "small",
    "epochs": 3,
    "batch_size": 64,
    "synthetic_subjects": 8,
    "synthetic_seconds": 40.0,
    "stride": 32,
    "idle_s": 0.3,
    "test_min_s": 0.3,
    "sample_hz": 10.0,
    "seed": 0,
    "reuse_source": False,
}
MODES = ("scratch", "transfer")


class Cancelled(Exception):
    pass


def _on_term(signum, frame):
    raise Cancelled()


class Log:
    def __init__(self, run_id: str, run_path: Path, stream) -> None:
        self.run_id = run_id
        self.file = open(run_path / "events.jsonl", "a", encoding="utf-8")
        self.stream = stream
        self.count = 0

    def emit(self, event: dict) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        self.file.write(line)
        self.file.flush()
        self.count += 1
        if self.stream is not None:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.stream = None  # the reader is gone; the log goes on


def atomic_json(path: Path, data: dict) -> None:
    """As the worker writes its records (engine.store.run_log.atomic_write_json), less the fsync."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def recorded_summary(mode: str) -> RunSummary:
    """The recorded run's summary, read as every reader reads one."""
    return summary_from_json(json.loads((HERE / f"{mode}.summary.json").read_text()))


# -- streams -----------------------------------------------------------------------------
def recorded(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def synthetic(rate: float, duration: float) -> list[dict]:
    """A made-up run: idle 10 %, train 80 % (progress each second, an epoch every fifth of it),
    test 10 %; two modelled domains whose watts wander smoothly."""
    events: list[dict] = [
        {
            "type": "hello",
            "t": 0.0,
            "meters": [
                {"name": "cpu", "source": "modelled", "method": "model:tdp-cpu-time", "kind": "cpu"},
                {"name": "dram", "source": "modelled", "method": "model:rss-dram", "kind": "dram"},
            ],
            "missing": [{"meter": "rapl", "reason": "fake worker: no RAPL"}],
        }
    ]
    n = int(rate * duration)
    bounds = {"idle": (0, int(0.1 * n)), "train": (int(0.1 * n), int(0.9 * n)), "test": (int(0.9 * n), n)}
    joules = {"cpu": 0.0, "dram": 0.0}
    epochs = 5
    for phase, (a, b) in bounds.items():
        events.append({"type": "phase_start", "t": a / rate, "phase": phase})
        start_j = dict(joules)
        for i in range(a, b):
            t = i / rate
            busy = phase != "idle"
            w = {"cpu": (22 if busy else 3) + 4 * math.sin(t / 3), "dram": 1.5 + 0.3 * math.sin(t / 5)}
            for d in joules:
                joules[d] += w[d] / rate
            events.append(
                {
                    "type": "sample",
                    "t": t,
                    "domains": {
                        d: {"w": w[d], "j": joules[d], "source": "modelled", "method": f"model:{d}"} for d in w
                    },
                }
            )
            if phase == "train" and (i - a) % max(1, int(rate)) == 0:
                frac = (i - a) / max(1, b - a)
                epoch = min(epochs, 1 + int(frac * epochs))
                events.append(
                    {
                        "type": "progress",
                        "t": t,
                        "phase": "train",
                        "epoch": epoch,
                        "epochs": epochs,
                        "step": 1 + (i - a) % 10,
                        "steps": 10,
                        "loss": 2.0 * (1 - frac) + 0.1,
                        "accuracy": 0.3 + 0.6 * frac,
                        "samples_per_s": 1500.0,
                    }
                )
                if (i - a) and (i - a) % max(1, (b - a) // epochs) < rate:
                    events.append(
                        {
                            "type": "epoch",
                            "t": t,
                            "phase": "train",
                            "epoch": epoch,
                            "val_accuracy": 0.3 + 0.6 * frac,
                            "cumulative_j": sum(joules.values()) - sum(start_j.values()),
                            "source": "modelled",
                        }
                    )
        duration_s = (b - a) / rate
        energy = {
            d: {
                "gross_j": joules[d] - start_j[d],
                "idle_j": 0.0,
                "net_j": joules[d] - start_j[d],
                "source": "modelled",
                "method": f"model:{d}",
                "kind": d,
            }
            for d in joules
        }
        total = sum(e["gross_j"] for e in energy.values())
        events.append(
            {
                "type": "phase_end",
                "t": b / rate,
                "phase": phase,
                "duration_s": duration_s,
                "energy": energy,
                "total": {
                    "gross_j": total,
                    "idle_j": 0.0,
                    "net_j": total,
                    "source": "modelled",
                    "methods": sorted(e["method"] for e in energy.values()),
                },
                "partial": False,
            }
        )
    events.append(
        {
            "type": "result",
            "t": n / rate,
            "metrics": {
                "accuracy_frac": 0.9,
                "f1_macro_frac": 0.88,
                "train_samples_seen": 1000,
                "inferences": 100,
                "j_per_train_sample": {"value": 0.01, "source": "modelled", "basis": "net"},
                "j_per_inference": {"value": 0.001, "source": "modelled", "basis": "net"},
            },
            "curve": [],
        }
    )
    events.append({"type": "done", "t": n / rate, "status": "complete", "exit_code": 0})
    return events


# -- the run -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recording", type=Path)
    parser.add_argument("--speed", type=float, default=0.0, help="1 = recorded pace; 0 = at once")
    parser.add_argument("--crash-after", type=int)
    parser.add_argument("--crash-in", metavar="PHASE", help="SIGKILL itself just before PHASE ends")
    parser.add_argument("--fail-after", type=int)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--hold", action="store_true", help="before the end, wait to be cancelled")
    parser.add_argument("--wall", default=None, help="fixed ISO time for the wall-clock fields")
    parser.add_argument("--record", type=Path, metavar="DIR", help="record the real worker (both modes) into DIR")
    args = parser.parse_args(argv)
    if args.record:
        for mode in MODES:
            record(args.record, mode)
        return 0

    stream_fd = os.dup(1)
    os.dup2(2, 1)
    stream = os.fdopen(stream_fd, "w", encoding="utf-8", buffering=1)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    try:  # the spec as the worker reads and writes it (defaults filled in), refused as it refuses
        run_spec = spec_from_dict(json.loads(sys.stdin.read()))
    except (SpecError, ValueError) as exc:
        print(f"fake worker: bad spec: {exc}", file=sys.stderr)
        return 2
    run_id = run_spec.run_id or time.strftime("%Y%m%d-%H%M%S") + "-fake00"
    spec = {**run_spec.to_dict(), "run_id": run_id}
    run_path = Path(spec.get("logs_dir") or "logs") / run_id
    run_path.mkdir(parents=True, exist_ok=True)
    started = args.wall or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    wall = 1_700_000_000.0 if args.wall else time.time()

    mode = "transfer" if spec.get("mode") in ("transfer", "finetune") else "scratch"
    recorded_run = recorded_summary(mode)
    if args.rate:
        source = synthetic(args.rate, args.duration)
        speed = 1.0
    else:
        source = recorded(args.recording or HERE / f"{mode}.jsonl")
        speed = args.speed

    manifest = RunManifest(
        run_id=run_id,
        spec=spec,
        pid=os.getpid(),
        started=started,
        environment={
            "joulelab": "fake",
            "python": sys.version.split()[0],
            "platform": "fake",
            "cpu_model": "fake CPU",
            "logical_cpus": 2,
        },
    )
    atomic_json(run_path / "run.json", to_json_object(manifest))
    log = Log(run_id, run_path, stream)
    t_rec0 = source[0]["t"]
    t_now0 = time.monotonic()
    phases: dict[str, PhaseRecord] = {}
    meters: list[dict] = []
    missing: list[dict] = []
    metrics: dict = {}
    curve: list[dict] = []
    status, error, code, open_phase, last_phase = "complete", None, 0, None, None
    last_t = t_now0
    joules_now: dict[str, dict] = {}  # domain -> its last sample
    phase_start_j: dict[str, float] = {}
    phase_start_t = t_now0
    crash_at = args.crash_after
    try:
        for i, rec in enumerate(source):
            if rec["type"] == "phase_end" and rec["phase"] == args.crash_in:
                crash_at = i  # all of the phase but its end reaches the log
            if crash_at is not None and i >= crash_at:
                print("fake worker: simulated crash (SIGKILL)", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            if args.fail_after is not None and i >= args.fail_after:
                raise RuntimeError("fake worker: simulated failure")
            if rec["type"] == "done":
                break
            offset = rec["t"] - t_rec0
            if speed > 0:
                delay = t_now0 + offset / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            event = {**rec, "v": 1, "run": run_id, "t": t_now0 + offset}
            last_t = event["t"]
            if rec["type"] == "hello":
                event.update(pid=os.getpid(), wall_time=wall, spec=spec)
                meters, missing = event.get("meters", []), event.get("missing", [])
                manifest.meters = [MeterDomain(**m) for m in meters]
                manifest.missing_meters = [MissingMeter(**m) for m in missing]
                manifest.device = event.get("device")
                atomic_json(run_path / "run.json", to_json_object(manifest))
            elif rec["type"] == "phase_start":
                open_phase = last_phase = rec["phase"]
                phase_start_j = {d: s["j"] for d, s in joules_now.items()}
                phase_start_t = event["t"]
            elif rec["type"] == "sample":
                joules_now.update(rec["domains"])
            elif rec["type"] == "phase_end":
                # The recorded summary's record of the phase says what its event does not
                # (contention, warm-up steps); a made-up stream's phase is its event.
                phase = rec["phase"]
                phases[phase] = (None if args.rate else recorded_run.phases.get(phase)) or msgspec.convert(
                    {k: rec[k] for k in ("duration_s", "energy", "total") if k in rec}, PhaseRecord
                )
                open_phase = None
            elif rec["type"] == "result":
                metrics, curve = rec.get("metrics", {}), rec.get("curve", [])
            log.emit(event)
        if args.hold:
            while True:
                time.sleep(0.05)
    except Cancelled:
        status, error, code = "cancelled", "cancelled by SIGTERM", 130
    except RuntimeError as exc:
        status, error, code = "failed", str(exc), 1
        print(f"Traceback (most recent call last):\n  ...\nRuntimeError: {exc}", file=sys.stderr, flush=True)
        log.emit({"v": 1, "type": "error", "run": run_id, "t": last_t, "message": error, "where": last_phase})
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if open_phase is not None:
        # Close the open phase as the real worker does: what was measured, labelled partial.
        energy = {
            d: {
                "gross_j": s["j"] - phase_start_j.get(d, s["j"]),
                "idle_j": 0.0,
                "net_j": s["j"] - phase_start_j.get(d, s["j"]),
                "source": s["source"],
                "method": s["method"],
                "kind": d,
            }
            for d, s in joules_now.items()
        }
        total = {
            "gross_j": sum(e["gross_j"] for e in energy.values()),
            "idle_j": 0.0,
            "net_j": sum(e["net_j"] for e in energy.values()),
            "source": "modelled" if any(e["source"] == "modelled" for e in energy.values()) else "counter",
            "methods": sorted(e["method"] for e in energy.values()),
        }
        duration = last_t - phase_start_t
        phases[open_phase] = msgspec.convert(
            {"duration_s": duration, "energy": energy, "total": total, "partial": True}, PhaseRecord
        )
        log.emit(
            {
                "v": 1,
                "type": "phase_end",
                "run": run_id,
                "t": last_t,
                "phase": open_phase,
                "duration_s": duration,
                "energy": energy,
                "total": total,
                "partial": True,
            }
        )
    complete = status == "complete"
    pretrain = phases.get("pretrain")
    summary = msgspec.structs.replace(
        # What the events cannot say (network, device, precision, idle watts) is the recorded run's.
        recorded_run,
        run_id=run_id,
        host=socket.gethostname(),
        status=status,
        error=error,
        spec=spec,
        config=run_spec.config or run_spec.describe(),
        preset=run_spec.preset,
        dataset=run_spec.dataset,
        synthetic=run_spec.dataset == "synthetic",
        started=started,
        ended=started if args.wall else time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        duration_s=last_t - t_now0,
        last_phase=last_phase,
        phases=phases,
        pretrain=(
            None
            if pretrain is None
            else msgspec.structs.replace(
                recorded_run.pretrain or PretrainRecord(),
                run_id=run_id,
                duration_s=pretrain.duration_s,
                total=pretrain.total,
                energy=pretrain.energy,
                cached=False,
            )
        ),
        idle_watts={} if args.rate else recorded_run.idle_watts,
        metrics=metrics_from_json(metrics) if complete else metrics_from_json({}),
        curve=[msgspec.convert(point, CurvePoint) for point in curve],
        meters=[MeterDomain(**m) for m in meters],
        missing_meters=[MissingMeter(**m) for m in missing],
        meter_gaps=[],
        contended_phases=[p for p, r in phases.items() if r.contended],
        gpu_contended_phases=[p for p, r in phases.items() if r.gpu_contended],
        events=log.count + 1,  # and the done event that follows
        reader_lost=log.stream is None,
    )
    atomic_json(run_path / "summary.json", to_json_object(summary))
    log.emit({"v": 1, "type": "done", "run": run_id, "t": last_t, "status": status, "exit_code": code})
    return code


def record(out_dir: Path, mode: str) -> None:
    """Run the real worker on a small synthetic spec; keep its event stream as `<mode>.jsonl` and
    its summary as `<mode>.summary.json` in `out_dir`, with neutral ids, times and host."""
    import tempfile

    with tempfile.TemporaryDirectory() as logs:
        spec = {**RECORD_SPEC, "mode": mode, "logs_dir": logs}
        proc = subprocess.run(
            [sys.executable, "-m", "engine.worker"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=True,
        )
        (run_dir,) = Path(logs).iterdir()
        summary = json.loads((run_dir / "summary.json").read_text())
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    t0 = events[0]["t"]
    with open(out_dir / f"{mode}.jsonl", "w") as f:
        for e in events:
            e = {**e, "run": RECORDED_RUN, "t": round(e["t"] - t0, 6)}
            if e["type"] == "hello":
                e.update(pid=0, wall_time=0.0, spec={}, versions={"joulelab": "recorded"})
            f.write(json.dumps(e, separators=(",", ":")) + "\n")
    neutral = {"run_id": RECORDED_RUN, "logs_dir": "logs"}
    summary.update(run_id=RECORDED_RUN, spec={**summary["spec"], **neutral}, started=RECORDED_TIME, ended=RECORDED_TIME)
    summary.update(host=RECORDED_HOST)
    if summary.get("pretrain"):
        summary["pretrain"].update(run_id=RECORDED_RUN)
    atomic_json(out_dir / f"{mode}.summary.json", summary)


if __name__ == "__main__":
    sys.exit(main())
