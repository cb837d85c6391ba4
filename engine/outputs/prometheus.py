"""Live Prometheus metrics while runs execute: GET http://127.0.0.1:PORT/metrics.

`joulelab run --metrics-port PORT` (or a preset's `metrics_port`, or the lab's `--metrics-port`)
serves the runs in progress. It is fed from the events the plan runner already receives
(engine.orchestrate.plan_runner.PlanRunner): nothing else is measured or read. One series per run:

    joulelab_power_watts{run_id, configuration, domain, kind, source}           gauge: the last sample
    joulelab_energy_joules_total{run_id, configuration, phase, domain, kind, source, method}
                                                                               counter: gross J per phase
    joulelab_run_state{run_id, configuration, joulelab_run_state="train"}     state set: phase, then status
    joulelab_samples_dropped_total{run_id, configuration}                     counter: samples the
                                                                               sampler's schedule skipped
    joulelab_meter_gaps_total{run_id, configuration, domain}                  counter: meter_gap events

Energy counters rise with the live samples (differences of each domain's cumulative joules
between two samples that both lie inside the phase, so they never overshoot) and are topped up
at the phase's end to the exact gross joules the worker reports for it, so a scrape after a
phase agrees with summary.json. The `source` label
says counter, polled or modelled, as everywhere else; `kind` is cpu, dram, gpu or platform (RAPL's
psys, which includes the others: leave it out of sums with kind!="platform").

The server binds 127.0.0.1 unless an address is given explicitly, uses its own CollectorRegistry
(not the process-global one), and is shut down when the plan ends, so the port closes.
"""

from __future__ import annotations

import errno
import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType
from wsgiref.simple_server import WSGIServer

from engine.core.errors import JouleLabError
from engine.core.events import FAILED_STATUSES, PHASES, AnyEvent, Done, MeterGap, PhaseEnd, PhaseStart, Sample
from engine.orchestrate.event_fold import RunFold
from engine.orchestrate.worker_process import RunOutcome

DEFAULT_ADDR = "127.0.0.1"
INSTALL = "pip install 'joulelab[prometheus]'"
# The run's state: starting until its first phase, then the event schema's phases, then its status.
STATES = ("starting", *PHASES, "complete", "cancelled", *FAILED_STATUSES)


class MetricsError(JouleLabError):
    """The metrics endpoint cannot be served; one line with the fix."""


def check_port(port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise MetricsError(f"metrics port {port} is out of range; choose 1-65535")


def bind_problem(addr: str, port: int, exc: OSError) -> str:
    """Why the metrics server could not bind, and which option to change: the address when it is
    not one of this machine's (or not an address at all), the port when it is taken or privileged."""
    where = f"cannot serve metrics on {addr}:{port}"
    if isinstance(exc, socket.gaierror):
        return (
            f"{where}: --metrics-addr {addr!r} is not an IP address or a host name this machine can resolve; "
            "give one of its addresses (127.0.0.1, 0.0.0.0 for every interface)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{where}: --metrics-addr {addr} is not an address of this machine; "
            "give one of its interfaces' addresses (127.0.0.1, 0.0.0.0 for every interface)"
        )
    return f"{where} ({exc.strerror or exc}); choose another --metrics-port"


@dataclass
class _Run:
    configuration: str
    sample_hz: float
    fold: RunFold = field(default_factory=RunFold)  # the run's state (engine.orchestrate.event_fold)
    counted: dict[tuple[str, str], float] = field(default_factory=dict)  # (phase, domain) -> J exported


class MetricsServer:
    """Prometheus metrics of the runs of one plan. `with MetricsServer(port) as m: m.observe(event)`."""

    def __init__(self, port: int, addr: str = DEFAULT_ADDR) -> None:
        check_port(port)
        try:
            from prometheus_client import CollectorRegistry, Counter, Enum, Gauge
        except ImportError:
            raise MetricsError(
                f"--metrics-port needs prometheus_client, which is not installed; install it with: {INSTALL}"
            ) from None
        self.port, self.addr = port, addr
        self.registry = CollectorRegistry(auto_describe=True)
        run = ["run_id", "configuration"]
        self.watts = Gauge(
            "joulelab_power_watts",
            "Power of each meter domain at the last sample (W)",
            [*run, "domain", "kind", "source"],
            registry=self.registry,
        )
        self.joules = Counter(
            "joulelab_energy_joules",
            "Gross energy per phase and meter domain (J)",
            [*run, "phase", "domain", "kind", "source", "method"],
            registry=self.registry,
        )
        self.state = Enum(
            "joulelab_run_state",
            "The run's phase while it runs, then its final status",
            run,
            states=list(STATES),
            registry=self.registry,
        )
        self.dropped = Counter(
            "joulelab_samples_dropped",
            "Live samples the sampler's fixed-rate schedule skipped (it fell behind)",
            run,
            registry=self.registry,
        )
        self.gaps = Counter(
            "joulelab_meter_gaps",
            "Times a meter stopped answering (meter_gap events)",
            [*run, "domain"],
            registry=self.registry,
        )
        self.runs: dict[str, _Run] = {}
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- serving -------------------------------------------------------------------------------
    def start(self) -> MetricsServer:
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(self.port, addr=self.addr, registry=self.registry)
        except OSError as exc:
            raise MetricsError(bind_problem(self.addr, self.port, exc)) from None
        return self

    def stop(self) -> None:
        """Stop serving and close the port."""
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    # --- feeding -------------------------------------------------------------------------------
    def begin(self, run_id: str, configuration: str, sample_hz: float) -> None:
        """A run starts (before its first event)."""
        self.runs[run_id] = _Run(configuration, sample_hz)
        self.state.labels(run_id, configuration).state("starting")
        self.dropped.labels(run_id, configuration)  # present at 0 from the start

    def observe(self, event: AnyEvent) -> None:
        """Fold one event of a run that `begin` announced."""
        run = self.runs.get(event.run)
        if run is None:
            return
        labels = (event.run, run.configuration)
        if isinstance(event, Sample):  # first: nearly every event is one
            self._sample(run, labels, event)  # reads the fold's previous sample: before the update
        run.fold.update(event)
        match event:
            case PhaseStart(phase=phase):
                self.state.labels(*labels).state(phase if phase in STATES else "starting")
            case PhaseEnd(phase=phase, energy=energy):
                for domain, e in energy.items():
                    missing = e["gross_j"] - run.counted.get((phase, domain), 0.0)
                    if missing > 0:
                        kind = run.fold.kinds.get(domain, "")
                        self.joules.labels(*labels, phase, domain, kind, e["source"], e["method"]).inc(missing)
                        run.counted[(phase, domain)] = e["gross_j"]
            case MeterGap(domain=domain):
                self.gaps.labels(*labels, domain).inc()
            case Done(status=status) if status in STATES:
                self.state.labels(*labels).state(status)

    def end(self, outcome: RunOutcome) -> None:
        """The run's process has ended with this status (covers a crash, which sends no `done`)."""
        run = self.runs.get(outcome.run_id)
        if run is not None and outcome.status in STATES:
            self.state.labels(outcome.run_id, run.configuration).state(outcome.status)

    def _sample(self, run: _Run, labels: tuple[str, str], event: Sample) -> None:
        """Watts, and the energy counters' rise since the fold's previous sample."""
        t, previous_sample, open_row = event.t, run.fold.last_sample, run.fold.open_row
        if previous_sample is not None and run.sample_hz > 0:
            missed = round((t - previous_sample.t) * run.sample_hz) - 1
            if missed > 0:
                self.dropped.labels(*labels).inc(missed)
        # the phase this sample's interval lies wholly inside, or None: a counter never overshoots
        inside = open_row is not None and previous_sample is not None and previous_sample.t >= open_row.start_t
        phase = open_row.phase if inside and open_row is not None else None
        for domain, d in event.domains.items():
            source, method, kind, w = d["source"], d["method"], run.fold.kinds.get(domain, ""), d["w"]
            if w is not None:
                self.watts.labels(*labels, domain, kind, source).set(w)
            previous = previous_sample.joules.get(domain) if previous_sample is not None else None
            if phase is not None and previous is not None and d["j"] > previous:
                self.joules.labels(*labels, phase, domain, kind, source, method).inc(d["j"] - previous)
                key = (phase, domain)
                run.counted[key] = run.counted.get(key, 0.0) + d["j"] - previous
