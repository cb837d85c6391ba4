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


class Executor(str, Enum):
    local = "local"
    slurm = "slurm"


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


LogsOption = Annotated[Optional[Path], typer.Option("--logs", help="Logs directory [default: $JOULELAB_LOGS or ./logs]")]


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    logs: Annotated[Optional[Path], typer.Option("--logs", help="Logs directory for the lab [default: $JOULELAB_LOGS or ./logs]")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where the real datasets are, for the lab")] = None,
) -> None:
    """With no command, open the interactive lab."""
    if ctx.invoked_subcommand is None:
        from tui.app import run_app

        run_app(logs_dir=logs or default_logs_dir(), data_dir=str(data_dir) if data_dir else None)


@app.command()
def run(
    preset: Annotated[Optional[str], typer.Argument(help="Preset name (quick, paper, ...) or path to a .toml file")] = None,
    trials: Annotated[Optional[int], typer.Option(min=1, help="Seeds per configuration (overrides the preset)")] = None,
    only: Annotated[Optional[list[str]], typer.Option(help="Keep configurations with KEY=VALUE (repeatable)")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="human: progress and tables; json: results only")] = OutputFormat.human,
    logs: LogsOption = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where the real datasets are")] = None,
    tdp: Annotated[Optional[float], typer.Option("--tdp", help="CPU package TDP in watts, for the energy model")] = None,
    executor: Annotated[Executor, typer.Option(help="local: here, one run at a time; slurm: one job per pair "
                                                    "through submitit")] = Executor.local,
    partition: Annotated[Optional[str], typer.Option(help="Slurm partition [default: the cluster's]")] = None,
    gpus_per_job: Annotated[int, typer.Option(min=0, help="Slurm: GPUs per job")] = 0,
    time_min: Annotated[int, typer.Option("--time", min=1, help="Slurm: time limit per job, minutes")] = 60,
    exclusive: Annotated[bool, typer.Option(help="Slurm: a whole node per job, so meters see only this job")] = True,
    max_parallel: Annotated[Optional[int], typer.Option(min=1, help="Slurm: at most K jobs at once")] = None,
    resume: Annotated[bool, typer.Option(help="Slurm: resubmit the failed, cancelled or lost jobs of the last "
                                              "submission (of PRESET, if given), with its resources")] = False,
) -> None:
    """Run a preset's matrix, one worker at a time (or on Slurm, one job per pair), then print the comparison."""
    from engine.presets import PresetError, filter_plan, parse_only

    if executor == Executor.slurm or resume:
        from engine.slurm import SlurmOptions

        options = SlurmOptions(partition, gpus_per_job, time_min, exclusive, max_parallel)
        run_on_slurm(preset, trials, only, output, logs, data_dir, tdp, options, resume)
        return
    if preset is None:
        raise fail("name a PRESET to run (quick, paper, mechanisms, or a .toml file)")

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

    from engine.runs import execute_plan

    human = output == OutputFormat.human
    result = asyncio.run(execute_plan(plan, console if human else None))
    outcomes = result.outcomes
    if result.interrupted:
        cancelled = next((o for o in reversed(outcomes) if o.status != "complete"), None)
        what = f"run {cancelled.run_id} was cancelled" if cancelled else "no run had started"
        err_console.print(f"interrupted: {what}; its partial log is kept and no further run started "
                          f"(see `joulelab runs --logs {logs_dir}`)", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    summaries = [load_summary(o.run_path) for o in outcomes]
    summaries = [s for s in summaries if s is not None]
    from engine.stats import compare, config_stats

    stats, comparisons = config_stats(summaries), compare(summaries)
    failed = [o for o in outcomes if not o.ok]
    if human:
        print_results(stats, comparisons)
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


def run_on_slurm(preset, trials, only, output, logs, data_dir, tdp, options, resume: bool) -> None:
    """`joulelab run --executor slurm`: submit one job per pair, follow them, print the comparison.
    Ctrl-C asks whether to cancel the jobs (without a terminal: cancels, and says so)."""
    from engine import slurm
    from engine.presets import PresetError, filter_plan, parse_only
    from engine.store import check_writable

    logs_dir = (logs or default_logs_dir()).resolve()  # the jobs write here: absolute, on a shared filesystem
    human = output == OutputFormat.human
    try:
        check_writable(logs_dir)
        slurm.check_cluster(options)
        if resume:
            loaded_name = presets_mod.load(preset).name if preset else None
            record = slurm.latest_record(logs_dir, loaded_name)
            if record is None:
                raise fail(f"nothing to resume: no Slurm submission{' of ' + loaded_name if loaded_name else ''} "
                           f"in {logs_dir / slurm.JOBS_DIR}")
            new = slurm.resubmit(record)
            if human:
                console.print(f"resume: resubmitted {len(new)} job(s) of batch {record['batch']}"
                              + (f": {', '.join(j['job_id'] for j in new)}" if new else " (nothing failed or was lost)"),
                              highlight=False, soft_wrap=True)
        else:
            if preset is None:
                raise fail("name a PRESET to run (quick, paper, mechanisms, or a .toml file)")
            overrides = {"logs_dir": str(logs_dir)}
            if data_dir is not None:
                overrides["data_dir"] = str(data_dir)
            if tdp is not None:
                overrides["tdp_w"] = tdp
            loaded = presets_mod.load(preset, overrides)
            plan = filter_plan(loaded.plan(trials), parse_only(only or []))
            if not plan:
                raise fail(f"--only {' '.join(only or [])} leaves no configuration of preset {loaded.name!r} to run")
            record = slurm.submit_plan(plan, options, logs_dir, loaded.name)
            if human:
                ids = [j["job_id"] for j in record["jobs"]]
                console.print(f"submitted {len(ids)} job(s) for {len(plan)} runs (one job per pair, runs in sequence "
                              f"on one node) to Slurm: {', '.join(ids)}; requested {options.describe()}; "
                              f"logs in {logs_dir}", highlight=False, soft_wrap=True)
    except (PresetError, StoreError, slurm.SlurmError) as exc:
        raise fail(str(exc)) from None
    try:
        states = slurm.follow(record, console if human else None)
    except KeyboardInterrupt:
        try:
            queue = slurm.queue_states()
            active = [j["job_id"] for j in slurm.current_jobs(record) if slurm.job_state(j, logs_dir, queue) in slurm.ACTIVE]
        except slurm.SlurmError:  # cannot tell which are still queued: cancel them all
            active = [j["job_id"] for j in slurm.current_jobs(record)]
        cancel, message = slurm.interrupt_choice(sys.stdin.isatty(), typer.confirm)
        err_console.print(f"interrupted: {message}", highlight=False, soft_wrap=True)
        if cancel:
            slurm.cancel_jobs(record, active)
            err_console.print(f"cancelled {len(active)} job(s): {', '.join(active) or 'none was active'}; "
                              f"resubmit with `joulelab run --executor slurm --resume --logs {logs_dir}`",
                              highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    run_ids = slurm.batch_run_ids(record)
    summaries = [s for s in (load_summary(logs_dir / rid) for rid in run_ids) if s is not None]
    from engine.stats import compare, config_stats

    stats, comparisons = config_stats(summaries), compare(summaries)
    failed = [rid for rid in run_ids if slurm.run_state(logs_dir, rid) != "complete"]
    if human:
        print_results(stats, comparisons)
        for job in slurm.current_jobs(record):
            if states.get(job["job_id"]) != "done":
                err_console.print(f"[bold red]job {job['job_id']} {states.get(job['job_id'])}:[/] runs "
                                  + ", ".join(f"{r['run_id']} {slurm.run_state(logs_dir, r['run_id'])}"
                                              for r in job["runs"])
                                  + f" (job log: {logs_dir / slurm.JOBS_DIR / record['batch']})",
                                  highlight=False, soft_wrap=True)
    else:
        from engine.export import comparison_records

        json.dump({"preset": record["preset"], "batch": record["batch"], "jobs": states,
                   "runs": [{"run_id": rid, "status": slurm.run_state(logs_dir, rid), "log": str(logs_dir / rid)}
                            for rid in run_ids],
                   **comparison_records(stats, comparisons)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    raise typer.Exit(EXIT_RUN_FAILED if failed else EXIT_OK)


@app.command()
def jobs(logs: LogsOption = None,
         output: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.human) -> None:
    """Slurm jobs submitted by `joulelab run --executor slurm`: id, pair, node, state, runs."""
    from rich.table import Table

    from engine import slurm

    logs_dir = (logs or default_logs_dir()).resolve()
    records = slurm.load_records(logs_dir)
    try:
        queue = slurm.queue_states() if records else {}
    except slurm.SlurmError as exc:
        raise fail(str(exc)) from None
    rows = []
    for record in records:
        for job in record["jobs"]:
            state = "resubmitted" if job.get("resubmitted_as") else slurm.job_state(job, logs_dir, queue)
            nodes = {slurm.run_node(logs_dir, r["run_id"]) for r in job["runs"]} - {None}
            node = queue.get(job["job_id"], ("", ""))[1] or ",".join(sorted(nodes)) or "-"
            rows.append({"batch": record["batch"], "preset": record["preset"], "job_id": job["job_id"],
                         "pair": job["label"], "node": node, "state": state,
                         "resubmitted_as": job.get("resubmitted_as"),
                         "runs": {r["run_id"]: slurm.run_state(logs_dir, r["run_id"]) for r in job["runs"]}})
    if output == OutputFormat.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not rows:
        console.print(f"no Slurm jobs recorded in {logs_dir}; try `joulelab run quick --executor slurm`")
        return
    table = Table(title=f"Slurm jobs in {logs_dir}", title_justify="left", header_style="bold")
    for col in ("job", "batch", "preset", "pair", "node", "state", "runs"):
        table.add_column(col, overflow="fold")
    for r in rows:
        state = r["state"] + (f" as {r['resubmitted_as']}" if r["resubmitted_as"] else "")
        table.add_row(r["job_id"], r["batch"], r["preset"], r["pair"], r["node"], state,
                      " ".join(f"{rid} {st}" for rid, st in r["runs"].items()))
    console.print(table)


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
    stats, comparisons = config_stats(summaries), compare_runs(summaries)
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


@app.command()
def export(
    run_ids: Annotated[Optional[list[str]], typer.Argument(help="Run ids to export")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Export every run in the logs directory")] = False,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv/parquet: a file per table; json: one file; "
                                                               "codecarbon: emissions.csv")] = ExportFormat.csv,
    out: Annotated[Optional[Path], typer.Option("-o", "--output", help="Directory (or file for json/codecarbon)")] = None,
    carbon_intensity: Annotated[float, typer.Option(min=0, help="g CO2eq per kWh, for --format codecarbon")] = 480.0,
    logs: LogsOption = None,
) -> None:
    """Export runs as tidy tables: runs, phases, samples and the energy-to-accuracy curve."""
    from engine.export import ExportError, write

    logs_dir = logs or default_logs_dir()
    records = _records(logs_dir, run_ids, all_runs=all_runs)
    try:
        paths = write(records, fmt.value, out or Path("export"), carbon_intensity)
    except ExportError as exc:
        raise fail(str(exc)) from None
    for p in paths:
        console.print(f"wrote {p}", highlight=False)


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
def meters(
    seconds: Annotated[float, typer.Option(min=0.1, max=60, help="How long to read each meter")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    tdp: Annotated[Optional[float], typer.Option("--tdp", help="CPU package TDP in watts, for the model")] = None,
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
