"""A run of the user's own code, metered in the user's process: a PhaseMeter
(engine.worker.phase_meter) around it, and the run log every reader reads (run.json,
events.jsonl, summary.json), written as the worker writes it. The public face is the `joulelab`
package (`import joulelab`); `joulelab measure` meters a command with it.

Under `joulelab measure` (its `measure_channel` setting), a run hands its phases, epochs and result
to the measuring run through engine.worker.measure_channel instead of metering itself: one run
log, the command's. Where that channel cannot be reached, the run meters itself and says so.

A run's configuration key, which `compare` groups and pairs by, comes from its labels:
dataset (default: the run's name), size ("custom"), mode ("run"), mechanism ("baseline");
`seed` pairs runs across configurations (transfer and scratch of the same seed), and `batch`
groups the runs of one experiment (`compare --last`).
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from engine.core.energy import per_unit_energy
from engine.core.errors import JouleLabError
from engine.core.events import FinalStatus
from engine.core.process import process_started
from engine.core.records import (
    ConfigKey,
    CurvePoint,
    Metrics,
    RunManifest,
    RunSummary,
    to_json_object,
)
from engine.core.run_files import EVENTS, RUN_ID_RE, SUMMARY, atomic_write_json, check_writable
from engine.core.settings import settings
from engine.core.spec import new_run_id
from engine.core.timestamps import now_stamp
from engine.worker.event_log import EventWriter
from engine.worker.manifest import announce_meters, environment_manifest, write_manifest
from engine.worker.measure_channel import ChannelLost, MeasureChannel, Refused
from engine.worker.phase_meter import BACKGROUND_EVENTS, PhaseMeter

if TYPE_CHECKING:
    from engine.worker.device import Device

P = ParamSpec("P")
R = TypeVar("R")

SOURCE = "api"  # what wrote the run, in its spec (the worker's runs have a preset instead)
Label = str | int | float


class RunError(JouleLabError):
    """The API was used in a way that cannot be metered; one line says how to fix it."""


class Run:
    """One metered run of the user's code. See the package's docstring for the shape of its use.

    name:      what the run is (an experiment, a model): the configuration's dataset by default
    logs:      the logs directory (default: the logs setting, else ./logs)
    labels:    dataset, size, mode, mechanism (the configuration key), seed (pairs runs), batch
               (groups an experiment's runs), and any other label to keep with the run
    idle_s:    seconds of idle baseline before the first phase, which every phase subtracts
               (0: none, and the net joules are gross)
    sample_hz: live samples per second (also RAPL's wraparound tracking)
    tdp_w:     the CPU package's TDP for the energy model where there is no counter
    device:    "auto" (CUDA when available), "cpu" or "cuda[:N]": synchronised at every phase edge
    metered_gpus: "device" (the run's device's GPU) or "all" (every visible GPU: for work in other
               processes, such as a command `joulelab measure` runs)
    hand_over: under `joulelab measure`, hand the run to it (False: meter here all the same, as
               `joulelab measure`'s own run does)
    """

    def __init__(
        self,
        name: str,
        *,
        logs: str | os.PathLike[str] | None = None,
        labels: Mapping[str, Label] | None = None,
        idle_s: float = 2.0,
        sample_hz: float = 10.0,
        tdp_w: float | None = None,
        device: str = "auto",
        metered_gpus: str = "device",
        run_id: str | None = None,
        hand_over: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name.strip() or "/" in name:
            raise RunError(f"run name {name!r}: give a non-empty name without '/' (it names the configuration)")
        labels = dict(labels or {})
        for key, value in labels.items():
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise RunError(f"label {key}={value!r}: labels are strings or numbers")
        if idle_s < 0:
            raise RunError(f"idle_s={idle_s}: the idle baseline lasts 0 s (none) or more")
        if metered_gpus not in ("device", "all"):
            raise RunError(f"metered_gpus={metered_gpus!r}: meter the run's 'device' GPU or 'all' visible GPUs")
        if not 0.1 <= sample_hz <= 100:
            raise RunError(f"sample_hz={sample_hz}: sample between 0.1 and 100 times a second")
        self.run_id = run_id or new_run_id()
        if not RUN_ID_RE.match(self.run_id):
            raise RunError(f"run_id {self.run_id!r}: ids hold letters, digits, '-' and '_'")
        self.name, self.labels = name, labels
        self.logs_dir = Path(logs if logs is not None else settings().logs or "logs").absolute()
        self.path = self.logs_dir / self.run_id
        self.key = ConfigKey(
            str(labels.get("dataset", name)),
            str(labels.get("size", "custom")),
            str(labels.get("mode", "run")),
            str(labels.get("mechanism", "baseline")),
        )
        self.idle_s, self.sample_hz, self.tdp_w, self.device_name = idle_s, sample_hz, tdp_w, device
        self.metered_gpus, self.hand_over = metered_gpus, hand_over
        self.spec: dict[str, Any] = {
            "run_id": self.run_id,
            "name": name,
            "source": SOURCE,
            "preset": labels.get("preset", name),
            "config": str(self.key),
            "dataset": self.key.dataset,
            "size": self.key.size,
            "mode": self.key.mode,
            "mechanism": self.key.mechanism,
            "seed": int(labels.get("seed", 0)),
            "batch": labels.get("batch"),
            "labels": labels,
            "logs_dir": str(self.logs_dir),
            "idle_s": idle_s,
            "sample_hz": sample_hz,
            "tdp_w": tdp_w,
            "device": device,
        }
        self.metrics = Metrics()
        self.curve: list[CurvePoint] = []
        self.summary: RunSummary | None = None  # written by end()
        self._epochs: dict[str, int] = {}
        self._writer: EventWriter | None = None
        self._meter: PhaseMeter | None = None
        self._manifest: RunManifest | None = None
        self._started = 0.0
        # Under `joulelab measure`: the channel to the measuring run, and the phase open there
        self._outer: MeasureChannel | None = None
        self._outer_phase: str | None = None
        self._outer_state = "open"  # open | lost (said once, the rest unmetered) | ended
        self._device: Device | None = None

    # -- the run ---------------------------------------------------------------------------
    def begin(self) -> Run:
        """Open the log and the meters, say hello, and measure the idle baseline."""
        if self._writer is not None or self._outer is not None:
            raise RunError(f"run {self.run_id} has already begun; a Run is metered once")
        channel = settings().measure_channel
        if channel and self.hand_over and self._hand_over(channel):
            return self
        check_writable(self.logs_dir)
        self.path.mkdir(parents=True, exist_ok=False)
        self._started = time.monotonic()
        self._writer = writer = EventWriter(self.run_id, self.path / EVENTS, stream=None)
        pid = os.getpid()
        self._manifest = manifest = RunManifest(
            run_id=self.run_id, spec=self.spec, pid=pid, pid_started=process_started(pid), started=now_stamp()
        )
        write_manifest(self.path, manifest)  # first: a run that dies while starting is found
        manifest.environment = environment_manifest()
        device = _resolve(self.device_name)

        def on_event(event_type: str, /, **fields: Any) -> None:
            if event_type in BACKGROUND_EVENTS:  # from the sampler's thread: must not raise
                try:
                    writer.emit(event_type, **fields)
                except JouleLabError:
                    pass
            else:
                writer.emit(event_type, **fields)

        if self.metered_gpus == "all":
            gpu_uuids: list[str] | None = None  # every visible GPU
        elif device.is_cuda:
            gpu_uuids = [device.info["uuid"]] if device.info.get("uuid") else None
        else:
            gpu_uuids = []
        self._meter = meter = PhaseMeter.discover(
            sample_hz=self.sample_hz,
            pid=pid,
            tdp_w=self.tdp_w,
            gpu_uuids=gpu_uuids,
            sync=device.sync,
            on_event=on_event,
        )
        announce_meters(self.path, manifest, meter, device, spec=self.spec, emit=writer.emit)
        meter.start()
        if self.idle_s > 0:
            meter.measure_idle(self.idle_s)
        return self

    def end(self, status: FinalStatus = "complete", error: str | None = None) -> RunSummary | None:
        """Close an open phase (as partial), stop the meters and write the summary (None: the
        run was handed to `joulelab measure`, whose run writes it)."""
        if self._outer is not None:
            self._end_outer(status, error)
            return None
        meter, writer = self._meter, self._writer
        if meter is None or writer is None or self._manifest is None:
            raise RunError(f"run {self.run_id} has not begun: call begin() (or use `with joulelab.run(...)`)")
        if self.summary is not None:
            return self.summary
        try:
            meter.end_open_window()
        finally:
            meter.stop()
        if error is not None:
            writer.emit("error", message=error, where=meter.last_window)
        m = self.metrics
        m.j_per_train_sample, m.j_per_inference = per_unit_energy(meter.records, m.train_samples_seen, m.inferences)
        if meter.records.get("test") is not None or m.accuracy_frac is not None:
            writer.emit("result", metrics=to_json_object(m), curve=[to_json_object(p) for p in self.curve])
        phases = meter.records
        manifest = self._manifest
        self.summary = summary = RunSummary(
            run_id=self.run_id,
            status=status,
            error=error,
            spec=self.spec,
            config=str(self.key),
            preset=str(self.spec["preset"]),
            host=socket.gethostname(),
            dataset=self.key.dataset,
            synthetic=False,
            started=manifest.started,
            ended=now_stamp(),
            duration_s=time.monotonic() - self._started,
            last_phase=meter.last_window,
            phases=phases,
            idle_watts=meter.idle_power(),
            metrics=m,
            curve=self.curve,
            meters=manifest.meters,
            missing_meters=manifest.missing_meters,
            meter_gaps=meter.gaps(),
            contended_phases=[p for p, r in phases.items() if r.contended],
            gpu_contended_phases=[p for p, r in phases.items() if r.gpu_contended],
            device=manifest.device,
            events=writer.count + 1,  # and the done event that follows
        )
        try:
            atomic_write_json(self.path / SUMMARY, to_json_object(summary))
        finally:
            try:
                writer.emit("done", status=status, exit_code=0 if status == "complete" else 1)
            finally:
                writer.close()
        return summary

    def __enter__(self) -> Run:
        return self.begin()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            self.end()
        elif isinstance(exc, KeyboardInterrupt):
            self.end("cancelled", "cancelled by KeyboardInterrupt")
        else:
            self.end("failed", f"{type(exc).__name__}: {exc}")
        # the user's exception goes on: the run is recorded, never swallowed

    # -- inside the run --------------------------------------------------------------------
    @contextmanager
    def phase(self, name: str) -> Iterator[Run]:
        """A metered phase ("train", "test", "prune", "pretrain", or a name of your own)."""
        self.begin_phase(name)
        try:
            yield self
        except BaseException:
            self.end_phase(name, partial=True)
            raise
        self.end_phase(name)

    def begin_phase(self, name: str) -> None:
        if not isinstance(name, str) or not name or name == "idle":
            raise RunError(f"phase {name!r}: name a phase (not 'idle', which is the baseline)")
        if self._outer is not None:
            self._sync()  # the queued work before the edge is not the phase's
            self._ask("begin_phase", phase=name)
            self._outer_phase = name
            return
        self._metering.begin_window(name)

    def end_phase(self, name: str, *, partial: bool = False) -> None:
        """End phase `name` (`partial`: cut short by a failure or cancel, its energy kept)."""
        if self._outer is not None:
            self._sync(partial)
            self._ask("end_phase", phase=name, partial=partial)
            self._outer_phase = None
            return
        self._metering.end_window(name, partial=partial)

    def epoch(self, val_accuracy: float | None = None, **progress: float) -> None:
        """An epoch ended in the open phase: with `val_accuracy` (a fraction of 1), a point of the
        energy-to-accuracy curve (the phase's joules so far); other numbers (loss=...) are shown
        live as progress."""
        if val_accuracy is not None and not 0.0 <= val_accuracy <= 1.0:
            raise RunError(f"val_accuracy={val_accuracy}: give a fraction of 1 (0.93, not 93)")
        if self._outer is not None:
            self._sync()  # the point's joules cover the epoch's kernels
            answer = self._ask("epoch", val_accuracy=val_accuracy, progress={k: float(v) for k, v in progress.items()})
            if val_accuracy is not None and answer.get("cumulative_j") is not None:
                self.curve.append(
                    CurvePoint(
                        phase=str(answer["phase"]),
                        epoch=int(answer["epoch"]),
                        val_accuracy_frac=float(val_accuracy),
                        cumulative_j=float(answer["cumulative_j"]),
                        source=str(answer["source"]),
                    )
                )
            return
        meter = self._metering
        phase = meter.open_window
        if phase is None:
            raise RunError("run.epoch() outside a phase: call it inside `with run.phase(...)`")
        n = self._epochs[phase] = self._epochs.get(phase, 0) + 1
        writer = self._log
        if progress:
            writer.emit("progress", phase=phase, epoch=n, **{k: float(v) for k, v in progress.items()})
        if val_accuracy is None:
            return
        self.curve.append(meter.curve_point(n, float(val_accuracy)))

    def result(
        self,
        accuracy: float | None = None,
        inferences: int | None = None,
        train_samples: int | None = None,
        f1_macro: float | None = None,
    ) -> None:
        """The run's result: test accuracy (a fraction of 1), the inferences the test phase made
        and the samples training saw (for joules per inference and per training sample)."""
        for label, value in (("accuracy", accuracy), ("f1_macro", f1_macro)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise RunError(f"{label}={value}: give a fraction of 1 (0.93, not 93)")
        m = self.metrics
        if accuracy is not None:
            m.accuracy_frac = float(accuracy)
        if f1_macro is not None:
            m.f1_macro_frac = float(f1_macro)
        if inferences is not None:
            m.inferences = int(inferences)
        if train_samples is not None:
            m.train_samples_seen = int(train_samples)
        if self._outer is not None:
            self._ask(
                "result", accuracy=accuracy, inferences=inferences, train_samples=train_samples, f1_macro=f1_macro
            )

    # -- under `joulelab measure` ----------------------------------------------------------
    def _hand_over(self, path: str) -> bool:
        """Hand this run to the measuring run at `path`: True when it took it. Otherwise one line
        says why, and the run meters itself."""
        try:
            channel = MeasureChannel.connect(path)
        except ChannelLost as exc:
            _say(f"joulelab: run {self.name!r} cannot reach `joulelab measure` ({exc}); it meters itself")
            return False
        try:
            answer = channel.request("hello", name=self.name, labels=self.labels, pid=os.getpid())
        except (ChannelLost, Refused) as exc:
            channel.close()
            _say(f"joulelab: run {self.name!r} not taken by `joulelab measure` ({exc}); it meters itself")
            return False
        self._outer = channel
        self.run_id, self.path = str(answer["run_id"]), Path(str(answer["path"]))
        self._device = _resolve(self.device_name)
        self._started = time.monotonic()
        return True

    def _ask(self, op: str, **fields: Any) -> dict[str, Any]:
        """One request to the measuring run. A refusal is the API's one-line error; a lost channel
        is said once, and the rest of the run goes unmetered (the measuring run records the loss)."""
        if self._outer_state == "ended":
            raise RunError(f"run {self.run_id} has ended; start another run")
        if self._outer_state == "lost":
            return {}
        channel = self._outer
        assert channel is not None
        try:
            return channel.request(op, **fields)
        except Refused as exc:
            raise RunError(str(exc)) from None
        except ChannelLost as exc:
            _say(f"joulelab: lost `joulelab measure` ({exc}); the rest of run {self.name!r} is not metered")
            self._outer_state = "lost"
            return {}

    def _end_outer(self, status: FinalStatus, error: str | None) -> None:
        if self._outer_state == "ended":
            return
        try:
            if self._outer_phase is not None:
                self.end_phase(self._outer_phase, partial=True)
            self._ask("end", status=status, error=error)
        finally:
            self._outer_state = "ended"
            assert self._outer is not None
            self._outer.close()

    def _sync(self, partial: bool = False) -> None:
        """Wait for the device's queued work (a partial edge does not wait on a broken device)."""
        if self._device is None:
            return
        try:
            self._device.sync()
        except Exception:
            if not partial:
                raise

    # -- for `joulelab measure`, whose run takes the command's ----------------------------
    @property
    def meter(self) -> PhaseMeter:
        """The run's PhaseMeter (once begun)."""
        return self._metering

    def note(self, key: str, value: Any) -> None:
        """Keep `value` under `key` in the run's spec: in run.json now, in summary.json at the end."""
        if self._manifest is None:
            raise RunError(f"run {self.run_id} has not begun")
        self.spec[key] = value
        write_manifest(self.path, self._manifest)

    # -- helpers ---------------------------------------------------------------------------
    @property
    def _metering(self) -> PhaseMeter:
        if self._meter is None:
            raise RunError(f"run {self.run_id} has not begun: use `with joulelab.run(...)` or call begin()")
        if self.summary is not None:
            raise RunError(f"run {self.run_id} has ended; start another run")
        return self._meter

    @property
    def _log(self) -> EventWriter:
        assert self._writer is not None  # begun: _metering says so first
        return self._writer


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _resolve(name: str) -> Device:
    from engine.worker.device import resolve_device  # imports torch: only when a run begins

    return resolve_device(name)


def run(name: str, **options: Any) -> Run:
    """A run to meter: `with joulelab.run("name", logs=..., labels=...) as run: ...` (see Run)."""
    return Run(name, **options)


def metered(
    name: str | None = None, *, phase: str = "train", **options: Any
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Meter every call of a function as one run whose body is one phase (`phase`)."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def metered_call(*args: P.args, **kwargs: P.kwargs) -> R:
            with Run(name or fn.__name__, **options) as r, r.phase(phase):
                return fn(*args, **kwargs)

        return metered_call

    return wrap
