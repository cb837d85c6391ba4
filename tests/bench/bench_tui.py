"""Benchmark: what the lab costs while it watches a run (a script, not collected by pytest).

    python tests/bench/bench_tui.py [--duration 60] [--rate 10] [--idle 10] [--sizes 80x24,160x50,200x60]

The app runs in a real pseudo-terminal of each size in turn (80x24, 160x50 and 200x60 by
default), as under SSH, fed by the fake worker emitting `--rate` samples per second (two domains
each) for `--duration` seconds. Printed, per size, then one line of the three CPU figures:

- the app process's CPU use while the run streams, as a fraction of one core (target <= 5 %),
  next to the same app's CPU use while idle on the Live tab (measured first, in the same process);
- the power graph's redraw time at 160x40: each redraw during the run (prepare + draw), and the
  full path (prepare + draw + every line rendered to strips) repeated on the final 60 s of data
  (target <= 25 ms).

The worker's own CPU is not counted: it is another process.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests" / "fakes" / "fake_worker.py"
SIZES = "80x24,160x50,200x60"


# -- the app, in the child -------------------------------------------------------------------
def child(out: Path, rate: float, duration: float, idle_s: float, logs: Path) -> None:
    sys.path.insert(0, str(REPO))
    from textual_hires_canvas import Canvas

    from tui.app import JouleLabApp  # first: tui sets the frame-rate cap before Textual loads
    from tui.messages import PlanFinished, RunStarted

    result: dict = {}
    profiler = None
    if os.environ.get("BENCH_PROFILE"):  # the run only: BENCH_PROFILE=/tmp/tui.prof python tests/bench/...
        import cProfile

        profiler = cProfile.Profile()
    spent: dict[str, float] = {}
    if os.environ.get("BENCH_BREAKDOWN"):  # where the time goes, without a profiler's overhead
        from textual.screen import Screen

        from tui.widgets.live_view import LiveView

        def timed(cls, name, label):
            original = getattr(cls, name)

            def wrapper(*a, **k):
                t = time.process_time()
                try:
                    return original(*a, **k)
                finally:
                    spent[label] = spent.get(label, 0.0) + time.process_time() - t

            setattr(cls, name, wrapper)

        timed(Screen, "_on_timer_update", "screen update (compositor + output)")
        import collections

        dirty = collections.Counter()
        result["dirty"] = dirty
        update = Screen._on_timer_update

        def counting(self):
            dirty["(screen updates)"] += 1
            for w in self._dirty_widgets:
                dirty[type(w).__name__ + (f"#{w.id}" if w.id else "")] += 1
            return update(self)

        Screen._on_timer_update = counting
        timed(LiveView, "_tick", "live view tick (text + graph redraw)")
        timed(LiveView, "fold", "folding events")
        result["spent"] = spent

    class BenchApp(JouleLabApp):
        async def on_mount(self) -> None:
            self.call_after_refresh(self._idle_then_run)

        def _idle_then_run(self) -> None:
            self.show_tab("live")
            if os.environ.get("BENCH_NO_GRAPH"):  # to see what the rest costs
                self.live.graph.display = False
            self.set_timer(2.0, self._measure_idle)  # start-up work done first

        def _measure_idle(self) -> None:
            self._idle = (time.monotonic(), time.process_time())
            self.set_timer(idle_s, self._start_run)

        def _start_run(self) -> None:
            wall, cpu = self._idle
            result["idle_cpu_fraction"] = (time.process_time() - cpu) / (time.monotonic() - wall)
            self.action_run()

        # Textual calls the app's own handlers for these messages too (every class in the MRO).
        def on_run_started(self, message: RunStarted) -> None:
            self._t0 = (time.monotonic(), time.process_time())
            self._redraws0 = self.live.graph.redraws
            if profiler is not None:
                profiler.enable()

        def on_plan_finished(self, message: PlanFinished) -> None:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(os.environ["BENCH_PROFILE"])
            wall0, cpu0 = self._t0
            result["run_wall_s"] = time.monotonic() - wall0
            result["run_cpu_fraction"] = (time.process_time() - cpu0) / result["run_wall_s"]
            graph = self.live.graph
            result["redraws"] = graph.redraws - self._redraws0
            result["redraw_ms"] = [1000 * s for s in graph.redraw_s]
            result["samples"] = sum(len(ts) for ts, _ in graph.series.values())
            result["graph_size"] = list(graph.size)
            # The full path on the final data: prepare, draw, render every line to strips.
            plot = graph.plot
            canvases = list(plot.query(Canvas))
            full = []
            for _ in range(30):
                started = time.perf_counter()
                graph._draw(plot)
                plot._render_plot()
                for canvas in canvases:
                    for y in range(canvas.size.height):
                        canvas.render_line(y)
                full.append(1000 * (time.perf_counter() - started))
            result["full_redraw_ms"] = full
            out.write_text(json.dumps(result))
            self.exit()

    app = BenchApp(
        logs_dir=logs,
        worker_command=[sys.executable, str(FAKE), "--rate", str(rate), "--duration", str(duration)],
        datasets=lambda d: ([{"name": "synthetic", "found": True}], None),
    )
    app.run()


# -- the terminal, in the parent ---------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement first")
    parser.add_argument("--sizes", default=SIZES, help="terminal sizes, COLSxROWS, comma-separated")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--logs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rate, args.duration, args.idle, args.logs)
        return 0
    figures = []
    for size in args.sizes.split(","):
        cols, rows = (int(n) for n in size.lower().split("x"))
        result = measure(args, cols, rows)
        if result is None:
            return 1
        figures.append(f"{cols}x{rows} {100 * result['run_cpu_fraction']:.2f} %")
        print()
    print("app CPU while streaming, % of one core: " + ", ".join(figures) + "  (target <= 5 % at every size)")
    return 0  # a report, not a gate: the figures are read, never asserted


def measure(args, COLS: int, ROWS: int) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                str(out),
                "--logs",
                str(Path(tmp) / "logs"),
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
                "--idle",
                str(args.idle),
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        os.close(slave)
        received = 0
        tail = b""
        deadline = time.monotonic() + args.idle + args.duration + 122
        # Drain the terminal as a terminal emulator would, until the app exits.
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                received += len(chunk)
                tail = (tail + chunk)[-4000:]
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            print("the app did not finish in time", file=sys.stderr)
            return None
        os.close(master)
        if not out.exists():
            print(
                f"the app exited ({proc.returncode}) without results; it wrote:\n" + tail.decode("utf-8", "replace"),
                file=sys.stderr,
            )
            return None
        r = json.loads(out.read_text())

    redraw, full = r["redraw_ms"], r["full_redraw_ms"]

    def pct(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))]

    print(
        f"JouleLab TUI benchmark: {args.rate:g} samples/s (2 domains) for {args.duration:g} s, "
        f"terminal {COLS}x{ROWS}, graph {r['graph_size'][0]}x{r['graph_size'][1]}"
    )
    print(f"  app CPU while streaming: {100 * r['run_cpu_fraction']:5.2f} % of one core  (target <= 5 %)")
    print(
        f"  app CPU while idle:      {100 * r['idle_cpu_fraction']:5.2f} % of one core  "
        f"(same app on the Live tab, {args.idle:g} s before the run; streaming/idle = "
        f"{r['run_cpu_fraction'] / max(r['idle_cpu_fraction'], 1e-9):.1f}x)"
    )
    print(
        f"  graph redraws: {r['redraws']} in {r['run_wall_s']:.1f} s "
        f"({r['redraws'] / r['run_wall_s']:.1f}/s, timer 4 Hz); {r['samples']} points held"
    )
    print(
        f"  redraw during the run (prepare + draw): median {statistics.median(redraw):5.2f} ms, "
        f"p95 {pct(redraw, 0.95):5.2f} ms, max {max(redraw):5.2f} ms  (target <= 25 ms)"
    )
    print(
        f"  redraw full path on the final data (prepare + draw + strips): median "
        f"{statistics.median(full):5.2f} ms, p95 {pct(full, 0.95):5.2f} ms"
    )
    if r.get("dirty"):
        print(
            "  repainted (count):",
            ", ".join(f"{k} {v}" for k, v in sorted(r["dirty"].items(), key=lambda kv: -kv[1])[:12]),
        )
    for label, seconds in r.get("spent", {}).items():
        print(f"  {label}: {100 * seconds / (args.idle + r['run_wall_s']):.2f} % of one core (idle + run)")
    print(f"  terminal output, whole session (start-up, idle, run): {received / 1024:.0f} KiB")
    ok = r["run_cpu_fraction"] <= 0.05 and pct(full, 0.95) <= 25
    print("  within targets" if ok else "  OVER TARGET")
    return {**r, "ok": ok}


if __name__ == "__main__":
    sys.exit(main())
