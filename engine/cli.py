"""The joulelab command line. With no arguments it opens the TUI; subcommands run headless.

Exit codes: 0 ok, 1 a run failed, 2 bad usage or input, 130 interrupted. Errors go to stderr as
one line; no tracebacks for anything a user can fix.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from engine import presets as presets_mod
from engine.store import StoreError, default_logs_dir

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

app = typer.Typer(
    name="joulelab",
    help="Measure what deep-learning training mechanisms cost in energy and buy in accuracy.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
def _console(stderr: bool = False) -> Console:
    # Piped or redirected output (logs of headless runs, papers) gets room for the full tables
    # instead of rich's 80-column default, which would crop them.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, width=width)


console = _console()
err_console = _console(stderr=True)


class OutputFormat(str, Enum):
    human = "human"
    json = "json"


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    # escaped: a message may hold brackets (pip install 'joulelab[mlflow]', [preset] keys)
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


LogsOption = Annotated[Optional[Path], typer.Option("--logs", help="Logs directory [default: $JOULELAB_LOGS or ./logs]")]


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    logs: Annotated[Optional[Path], typer.Option("--logs", help="Logs directory for the lab [default: $JOULELAB_LOGS or ./logs]")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where the real datasets are, for the lab")] = None,
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", help="Serve live Prometheus metrics of the lab's runs on this port")] = None,
    metrics_addr: Annotated[Optional[str], typer.Option("--metrics-addr", help="Address for --metrics-port [default: 127.0.0.1]")] = None,
) -> None:
    """With no command, open the interactive lab."""
    if ctx.invoked_subcommand is None:
        from tui.app import run_app

        metrics = _metrics_options(metrics_port, metrics_addr)
        run_app(logs_dir=logs or default_logs_dir(), data_dir=str(data_dir) if data_dir else None, **metrics)


def _metrics_options(port: int | None, addr: str | None) -> dict:
    """--metrics-port/--metrics-addr checked before anything runs: one line and exit 2 if unusable."""
    if port is None:
        if addr is not None:
            raise fail("--metrics-addr needs --metrics-port")
        return {}
    import importlib.util

    from engine.metrics_server import DEFAULT_ADDR, INSTALL, MetricsError, check_port

    try:
        check_port(port)
    except MetricsError as exc:
        raise fail(str(exc)) from None
    if importlib.util.find_spec("prometheus_client") is None:
        raise fail(f"--metrics-port needs prometheus_client, which is not installed; install it with: {INSTALL}")
    return {"metrics_port": port, "metrics_addr": addr or DEFAULT_ADDR}


@app.command()
def run(
    preset: Annotated[Optional[str], typer.Argument(help="Preset name (quick, paper, ...) or path to a .toml file")] = None,
    trials: Annotated[Optional[int], typer.Option(min=1, help="Seeds per configuration (overrides the preset)")] = None,
    only: Annotated[Optional[list[str]], typer.Option(help="Keep configurations with KEY=VALUE (repeatable)")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="human: progress and tables; json: results only")] = OutputFormat.human,
    logs: LogsOption = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where the real datasets are")] = None,
    tdp: Annotated[Optional[float], typer.Option("--tdp", help="TDP of one CPU package in watts, for the energy model (shared by that package's physical cores)")] = None,
    until_clear: Annotated[bool, typer.Option("--until-clear", help="Add trials to unclear comparisons until each training-energy interval excludes 1.0, or --max-trials")] = False,
    max_trials: Annotated[int, typer.Option("--max-trials", min=2, max=1000, help="Most trials per configuration with --until-clear")] = 10,
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", help="Serve live Prometheus metrics on this port while the runs execute")] = None,
    metrics_addr: Annotated[Optional[str], typer.Option("--metrics-addr", help="Address for --metrics-port [default: 127.0.0.1]")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Finish the plan a dropped lab session left unfinished in --logs (no preset)")] = False,
) -> None:
    """Run a preset's matrix, one worker at a time, then print the comparison."""
    if resume:
        from engine.plans import resume_cli

        raise typer.Exit(1 if resume_cli(logs or default_logs_dir(), console) else 0)
    if preset is None:
        raise fail("give a preset to run (quick, paper, ... or a .toml file), or --resume")
    from engine.presets import PresetError, filter_plan, parse_only

    overrides = {}
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    if tdp is not None:
        overrides["tdp_w"] = tdp
    logs_dir = logs or default_logs_dir()
    overrides["logs_dir"] = str(logs_dir)
    try:
        loaded = presets_mod.load(preset, overrides)
        plan = filter_plan(loaded.plan(trials), parse_only(only or []))
    except PresetError as exc:
        raise fail(str(exc)) from None
    if not plan:
        raise fail(f"--only {' '.join(only or [])} leaves no configuration of preset {loaded.name!r} to run")
    try:
        from engine.store import check_writable

        check_writable(logs_dir)
    except StoreError as exc:
        raise fail(str(exc)) from None

    metrics = _metrics_options(metrics_port or loaded.metrics_port, metrics_addr or loaded.metrics_addr)
    mlflow = None
    if loaded.mlflow:
        import importlib.util

        from engine.export import DEFAULT_MLFLOW_EXPERIMENT, MLFLOW_INSTALL, MlflowTarget

        if importlib.util.find_spec("mlflow") is None:
            raise fail(f"preset {loaded.name!r} sets mlflow = true, but MLflow is not installed; "
                       f"install it with: {MLFLOW_INSTALL}")
        mlflow = MlflowTarget(loaded.mlflow_tracking_uri, loaded.mlflow_experiment or DEFAULT_MLFLOW_EXPERIMENT)

    from engine.metrics_server import MetricsError
    from engine.runs import execute_plan

    human = output == OutputFormat.human
    try:
        result = asyncio.run(execute_plan(plan, console if human else None, mlflow=mlflow, **metrics))
    except MetricsError as exc:  # the port could not be opened; nothing has run
        raise fail(str(exc)) from None
    outcomes = result.outcomes
    clear_note = None
    if until_clear and not result.interrupted:
        try:
            result, clear_note = _until_clear(loaded, parse_only(only or []), trials or loaded.trials, max_trials,
                                              result, console if human else None, {"mlflow": mlflow, **metrics})
        except MetricsError as exc:
            raise fail(str(exc)) from None
        outcomes = result.outcomes
    if result.interrupted:
        cancelled = next((o for o in reversed(outcomes) if o.status != "complete"), None)
        what = f"run {cancelled.run_id} was cancelled" if cancelled else "no run had started"
        err_console.print(f"interrupted: {what}; its partial log is kept and no further run started "
                          f"(see `joulelab runs --logs {logs_dir}`)", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    summaries = [load_summary(o.run_path) for o in outcomes]
    summaries = [s for s in summaries if s is not None]
    from engine.calibrate import load_noise_floor
    from engine.stats import compare, config_stats

    stats, comparisons = config_stats(summaries), compare(summaries, load_noise_floor())
    failed = [o for o in outcomes if not o.ok]
    if human:
        print_results(stats, comparisons)
        if clear_note:
            console.print(clear_note, highlight=False, markup=False)
        for o in failed:
            err_console.print(f"[bold red]run {o.run_id} {o.status}:[/] {o.error or 'no error message'} "
                              f"(log: {o.run_path})", highlight=False, soft_wrap=True)
    else:
        from engine.export import comparison_records

        json.dump({"preset": loaded.name, "runs": [outcome_record(o) for o in outcomes],
                   **comparison_records(stats, comparisons)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    # A run the worker refused as bad input (missing or broken data, a bad group) is the user's
    # to fix: exit 2, like any other bad input; other failures and crashes exit 1.
    if failed and all(o.exit_code == EXIT_USAGE for o in failed):
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_RUN_FAILED if failed else EXIT_OK)


def _until_clear(loaded, only: dict, done: int, max_trials: int, result, live_console, plan_options: dict):
    """More trials, one at a time, for the configurations of comparisons whose training-energy
    interval (meter error included) still contains 1.0; returns the whole result and what
    happened, in one line."""
    from engine.calibrate import load_noise_floor
    from engine.presets import filter_plan
    from engine.runs import PlanResult, execute_plan
    from engine.stats import compare

    outcomes = list(result.outcomes)
    while True:
        summaries = [s for o in outcomes if (s := load_summary(o.run_path)) is not None]
        comparisons = compare(summaries, load_noise_floor())
        unclear = [c for c in comparisons if not (c.train_interval and c.train_interval.has_interval
                                                  and not c.train_interval.spans(1.0))]
        if not unclear:
            return PlanResult(outcomes, False, result.batch), (
                f"--until-clear: every comparison is clear after {done} trial{'s' if done != 1 else ''}")
        if done >= max_trials:
            names = ", ".join(f"{c.group} {c.treatment} vs {c.reference}" for c in unclear)
            return PlanResult(outcomes, False, result.batch), (
                f"--until-clear: still unclear after the maximum of {max_trials} trials: {names}")
        keys = {k for c in unclear for k in c.keys}
        extra = [p for p in filter_plan(loaded.plan(done + 1), only) if p.trial == done and p.config.key in keys]
        more = asyncio.run(execute_plan(extra, live_console, batch=result.batch, **plan_options))
        outcomes += more.outcomes
        done += 1
        if more.interrupted:
            return PlanResult(outcomes, True, result.batch), None


def outcome_record(o) -> dict:
    return {"run_id": o.run_id, "status": o.status, "exit_code": o.exit_code, "error": o.error,
            "log": str(o.run_path), "events": o.events, "bad_lines": o.bad_lines}


def load_summary(run_path: Path) -> dict | None:
    try:
        return json.loads((run_path / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def print_results(stats, comparisons) -> None:
    from engine.report import comparison_table, config_table, verdicts

    if stats:
        console.print(config_table(stats))
    if comparisons:
        console.print(comparison_table(comparisons))
        console.print(verdicts(comparisons))


def _records(logs_dir: Path, run_ids: list[str] | None, all_runs: bool = False, preset: str | None = None,
             last: bool = False):
    """Select runs by id, by preset, the last `joulelab run` batch, or all. Errors exit 2."""
    from engine.store import find_run, list_runs

    try:
        if run_ids:
            return [find_run(logs_dir, rid) for rid in run_ids]
    except StoreError as exc:
        raise fail(str(exc)) from None
    records = list_runs(logs_dir)
    if preset is not None:
        records = [r for r in records if r.spec.get("preset") == preset]
        if not records:
            raise fail(f"no runs of preset {preset!r} in {logs_dir} (see `joulelab runs`)")
    elif last:
        batches = [r.spec.get("batch") for r in records if r.spec.get("batch")]
        if not batches:
            raise fail(f"no `joulelab run` batch in {logs_dir} yet; run a preset first")
        records = [r for r in records if r.spec.get("batch") == batches[-1]]
    elif not all_runs:
        raise fail("name one or more RUN ids, or use --all (see `joulelab runs`)")
    if not records:
        raise fail(f"no runs in {logs_dir}; run a preset first (`joulelab run quick`)")
    return records


def _energy_cell(summary: dict | None, phase: str = "train") -> str:
    from engine.report import SOURCE_MARK, fmt_number

    total = (summary or {}).get("phases", {}).get(phase, {}).get("total")
    if not total or total.get("source") is None:
        return "-"
    return f"{SOURCE_MARK[total['source']]}{fmt_number(total['net_j'])}"


@app.command("runs")
def runs_cmd(logs: LogsOption = None,
             output: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.human) -> None:
    """List past runs: id, when, preset, configuration, status, energy, accuracy."""
    from rich.table import Table

    from engine.store import list_runs

    logs_dir = logs or default_logs_dir()
    records = list_runs(logs_dir)
    if output == OutputFormat.json:
        from engine.export import runs_table

        sys.stdout.write(runs_table(records).to_json(orient="records", indent=1) + "\n")
        return
    if not records:
        console.print(f"no runs in {logs_dir} yet; try `joulelab run quick`")
        return
    table = Table(title=f"Runs in {logs_dir}", title_justify="left", header_style="bold")
    table.add_column("run", no_wrap=True)
    for col in ("started", "preset", "configuration", "seed", "status", "train J", "acc %"):
        table.add_column(col, justify="right" if col in ("seed", "train J", "acc %") else "left",
                         overflow="fold")
    for r in records:
        acc = (r.summary or {}).get("metrics", {}).get("accuracy")
        status = r.status + (f" ({r.last_phase})" if r.status in ("crashed", "cancelled") and r.last_phase else "")
        table.add_row(r.run_id, r.started[5:16].replace("T", " "), r.spec.get("preset") or "-",
                      r.spec.get("config") or "-", str(r.spec.get("seed", "-")), status, _energy_cell(r.summary),
                      f"{100 * acc:.1f}" if acc is not None else "-")
    table.caption = "train J: net joules of the training phase; ~ = modelled (an estimate)"
    table.caption_justify = "left"
    console.print(table)


@app.command()
def show(run_id: Annotated[str, typer.Argument(help="A run id (see `joulelab runs`)")], logs: LogsOption = None) -> None:
    """One run: phases and energy per domain with provenance, metrics, meters, errors."""
    from engine.report import run_table
    from engine.store import STDERR, find_run

    logs_dir = logs or default_logs_dir()
    try:
        record = find_run(logs_dir, run_id)
    except StoreError as exc:
        raise fail(str(exc)) from None
    s = record.summary
    if s is None:
        console.print(f"run {run_id}: [bold]{record.status}[/] (last phase: {record.last_phase or 'none'}); "
                      "no summary was written")
    else:
        console.print(run_table(s))
        m = s.get("metrics", {})
        if "accuracy" in m:
            console.print(f"accuracy {100 * m['accuracy']:.2f} %, macro-F1 {m['f1_macro']:.3f}, "
                          f"{m['train_samples']} training samples, {m['inferences']} inferences")
            for key in ("j_per_train_sample", "j_per_inference"):
                v = m.get(key) or {}
                if v.get("value") is not None:
                    console.print(f"{key.replace('_', ' ')}: {v['value']:.3g} J ({v['source']}, net)")
        if s.get("error"):
            err_console.print(f"error: {s['error']}", highlight=False)
    for missing in record.manifest.get("missing_meters", []):
        console.print(f"[dim]{missing['meter']}: {missing['reason']}[/]", highlight=False)
    if record.status in ("failed", "crashed"):
        tail = (record.path / STDERR).read_text(errors="replace").splitlines()[-15:] \
            if (record.path / STDERR).exists() else []
        if tail:
            console.print("[bold]stderr.log (last lines):[/]")
            console.print("\n".join(tail), highlight=False, markup=False)


@app.command()
def compare(
    run_ids: Annotated[Optional[list[str]], typer.Argument(help="Run ids to compare")] = None,
    preset: Annotated[Optional[str], typer.Option(help="All runs of this preset")] = None,
    last: Annotated[bool, typer.Option("--last", help="The runs of the last `joulelab run`")] = False,
    logs: LogsOption = None,
    output: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.human,
) -> None:
    """Compare runs: per-configuration means with 95 % CIs, paired ratios and verdicts."""
    from engine.stats import compare as compare_runs
    from engine.stats import config_stats

    logs_dir = logs or default_logs_dir()
    if not run_ids and preset is None:
        last = True
    records = _records(logs_dir, run_ids, preset=preset, last=last)
    summaries = [r.summary for r in records if r.summary is not None]
    from engine.calibrate import load_noise_floor

    stats, comparisons = config_stats(summaries), compare_runs(summaries, load_noise_floor())
    if output == OutputFormat.json:
        from engine.export import comparison_records

        json.dump(comparison_records(stats, comparisons), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not stats:
        raise fail("none of the selected runs completed; nothing to compare (see `joulelab runs`)")
    print_results(stats, comparisons)


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"
    parquet = "parquet"
    codecarbon = "codecarbon"
    mlflow = "mlflow"


@app.command()
def export(
    run_ids: Annotated[Optional[list[str]], typer.Argument(help="Run ids to export")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Export every run in the logs directory")] = False,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv/parquet: a file per table; json: one file; "
                                                               "codecarbon: emissions.csv; mlflow: MLflow runs")] = ExportFormat.csv,
    out: Annotated[Optional[Path], typer.Option("-o", "--output", help="Directory (or file for json/codecarbon)")] = None,
    carbon_intensity: Annotated[float, typer.Option(min=0, help="g CO2eq per kWh, for --format codecarbon")] = 480.0,
    tracking_uri: Annotated[Optional[str], typer.Option("--tracking-uri", help="For --format mlflow [default: MLflow's own]")] = None,
    experiment: Annotated[Optional[str], typer.Option("--experiment", help="MLflow experiment, for --format mlflow [default: joulelab]")] = None,
    logs: LogsOption = None,
) -> None:
    """Export runs as tidy tables: runs, phases, samples and the energy-to-accuracy curve."""
    from engine.export import ExportError, write

    logs_dir = logs or default_logs_dir()
    records = _records(logs_dir, run_ids, all_runs=all_runs)
    if fmt == ExportFormat.mlflow:
        export_mlflow(records, tracking_uri, experiment)
        return
    try:
        paths = write(records, fmt.value, out or Path("export"), carbon_intensity)
    except ExportError as exc:
        raise fail(str(exc)) from None
    for p in paths:
        console.print(f"wrote {p}", highlight=False)


def export_mlflow(records, tracking_uri: str | None, experiment: str | None) -> None:
    from engine.export import DEFAULT_MLFLOW_EXPERIMENT, ExportError, MlflowTarget, log_mlflow

    experiment = experiment or DEFAULT_MLFLOW_EXPERIMENT
    try:
        logged = log_mlflow(records, MlflowTarget(tracking_uri, experiment))
    except ExportError as exc:
        raise fail(str(exc)) from None
    for item in logged:
        what = f"logged as MLflow run {item.mlflow_run_id}" if item.created else \
            f"{item.note}" + (f" (MLflow run {item.mlflow_run_id})" if item.mlflow_run_id else "")
        console.print(f"{item.run_id}: {what}", highlight=False)
    console.print(f"experiment {experiment!r} at {tracking_uri or 'the default tracking URI'}; "
                  "see them with `mlflow ui`", highlight=False)


@app.command()
def plot(
    run_ids: Annotated[list[str], typer.Argument(help="Run ids to plot")],
    out: Annotated[Path, typer.Option("-o", "--output", help="Image file (.png or .svg)")] = Path("joulelab.png"),
    logs: LogsOption = None,
) -> None:
    """Plot power over time and the energy-to-accuracy curves of runs."""
    from engine.plot import PlotError, plot_runs

    records = _records(logs or default_logs_dir(), run_ids)
    try:
        plot_runs(records, out)
    except PlotError as exc:
        raise fail(str(exc)) from None
    console.print(f"wrote {out}", highlight=False)


@app.command()
def calibrate(
    preset: Annotated[str, typer.Argument(help="Preset whose configuration is run against itself")] = "quick",
    only: Annotated[Optional[list[str]], typer.Option(help="Pick the configuration with KEY=VALUE (default: the preset's scratch run)")] = None,
    pairs: Annotated[int, typer.Option(min=2, max=100, help="A/A pairs (at least 5 for a floor worth using)")] = 5,
    logs: LogsOption = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where the real datasets are")] = None,
    tdp: Annotated[Optional[float], typer.Option("--tdp", help="TDP of one CPU package in watts, for the model")] = None,
) -> None:
    """This machine's noise floor: one configuration against itself (A/A, paired), saved for verdicts."""
    from engine.calibrate import MIN_PAIRS, analyse, calibration_plan, save
    from engine.presets import PresetError, filter_plan, parse_only
    from engine.report import calibration_table
    from engine.runs import execute_plan
    from engine.store import check_writable

    overrides: dict = {"logs_dir": str(logs or default_logs_dir())}
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    if tdp is not None:
        overrides["tdp_w"] = tdp
    try:
        loaded = presets_mod.load(preset, overrides)
        configs = filter_plan(loaded.plan(1), parse_only(only or []))
        check_writable(Path(overrides["logs_dir"]))
    except (PresetError, StoreError) as exc:
        raise fail(str(exc)) from None
    if not configs:
        raise fail(f"--only {' '.join(only or [])} leaves no configuration of preset {loaded.name!r}")
    # Scratch by default: it needs no source network, so no arm starts with a cache the other lacks.
    keys = sorted((p.config.key for p in configs), key=lambda k: "/scratch/" not in k)
    plan = calibration_plan(loaded, keys, pairs)
    if pairs < MIN_PAIRS:
        err_console.print(f"note: {pairs} pairs give a rough floor; use --pairs {MIN_PAIRS} or more", highlight=False)
    result = asyncio.run(execute_plan(plan, console))
    if result.interrupted:
        err_console.print("interrupted: calibration not saved", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED)
    summaries = [s for o in result.outcomes if (s := load_summary(o.run_path)) is not None]
    try:
        record = analyse(summaries)
    except ValueError as exc:
        raise fail(f"calibration failed: {exc} (see `joulelab runs`)", EXIT_RUN_FAILED) from None
    path = save(record)
    console.print(calibration_table(record))
    console.print(f"A/A: {record['verdict']}", highlight=False, markup=False)
    console.print(f"saved {path}; `run` and `compare` verdicts on this machine now use it", highlight=False)


@app.command()
def meters(
    seconds: Annotated[float, typer.Option(min=0.1, max=60, help="How long to read each meter")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    tdp: Annotated[Optional[float], typer.Option("--tdp", help="TDP of one CPU package in watts, for the model")] = None,
) -> None:
    """What this machine can measure, why not the rest, and a one-second reading of each meter."""
    from engine.meters.probe import probe, render_probe

    report = probe(seconds, tdp_w=tdp)
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        console.print(render_probe(report))


@app.command()
def data(
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where the real datasets are")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Each dataset: where JouleLab looked, what it found, and how to get what is missing."""
    from engine.data.locate import describe_datasets, format_descriptions, resolve_data_dir_with_origin

    root, origin = resolve_data_dir_with_origin(str(data_dir) if data_dir else None)
    report = describe_datasets(root)
    if as_json:
        json.dump({"data_dir": str(root), "from": origin, "datasets": report}, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    console.print(f"data directory: {root} (from {origin})", highlight=False)
    console.print(format_descriptions(report), highlight=False, markup=False)


def main() -> None:
    # typer/click exit 2 on usage errors already; make sure nothing else leaks a traceback.
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
