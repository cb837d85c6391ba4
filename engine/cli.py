"""The joulelab command line's headless commands. `joulelab` itself (tui/cli.py) adds the lab,
opened with no command; `python -m engine.cli` is these commands alone and prints help without one.

Exit codes (engine/core/errors.py): 0 ok, 1 a run failed, 2 bad usage or input, 130 interrupted
(SIGINT), 143 terminated (SIGTERM), 129 hung up (SIGHUP: the run left going, the plan to resume). A
JouleLabError raised by any command becomes one line on stderr and its exit code (JouleLabGroup);
no tracebacks for anything a user can fix.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shlex
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from engine.core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, JouleLabError
from engine.core.records import RunSummary
from engine.core.settings import env_var, settings
from engine.core.spec import TDP_MAX_W, parse_power_limit
from engine.orchestrate import presets as presets_mod
from engine.store.run_log import default_logs_dir, load_summary

if TYPE_CHECKING:  # for annotations only: the commands import what they use when they run
    from rich.table import Table
    from typer._click import Context as ClickContext  # the Context that click's Group.invoke declares

    from engine.analysis.stats import Comparison, ConfigStats, Speedup
    from engine.orchestrate.plan_runner import PlanObserver, PlanResult
    from engine.orchestrate.presets import PlannedRun, Preset
    from engine.orchestrate.slurm import SlurmOptions
    from engine.orchestrate.worker_process import RunOutcome
    from engine.store.run_log import RunRecord


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


def warn(message: str) -> None:
    """One line on stderr about something skipped or ignored; the command goes on."""
    err_console.print(f"joulelab: {message}", highlight=False, markup=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    # The message holds user text (paths, preset keys like [matrix]): never read it as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


class JouleLabGroup(TyperGroup):
    """The command group: the one place a JouleLabError from any command, or from the root
    callback, becomes one red line on stderr and its exit code."""

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except JouleLabError as exc:
            raise fail(str(exc), exc.exit_code) from None


def new_app() -> typer.Typer:
    """A command group with the joulelab settings; tui/cli.py makes the lab's from it too."""
    return typer.Typer(
        name="joulelab",
        help="Measure what deep-learning training mechanisms cost in energy and buy in accuracy.",
        cls=JouleLabGroup,
        no_args_is_help=False,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Rich markup off in help: "[default: ...]" and other brackets must show as written.
        rich_markup_mode=None,
    )


app = new_app()


def skip_damaged(records: list[RunRecord]) -> list[RunRecord]:
    """Drop runs that cannot be read as data, naming each on stderr with the reason."""
    for r in records:
        if r.problem:
            err_console.print(f"skipped run {r.run_id}: {r.problem}", highlight=False, markup=False, soft_wrap=True)
    return [r for r in records if not r.problem]


def finite(option: str, value: float | None, low: float, high: float) -> float | None:
    """A float option that must be a finite number above `low` and at most `high` (nan, inf are not)."""
    if value is not None and not (math.isfinite(value) and low < value <= high):
        raise fail(f"{option} {value}: expected a number above {low:g} and at most {high:g}")
    return value


LOGS_ENV, CARBON_ENV = env_var("logs"), env_var("carbon_intensity")
# Each option shared by several commands is declared once, here (tui/cli.py reuses them for the lab).
LogsOption = Annotated[Path | None, typer.Option("--logs", help=f"Logs directory [default: ${LOGS_ENV} or ./logs]")]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Where the real datasets are")]
TdpOption = Annotated[
    float | None,
    typer.Option(
        "--tdp", help="TDP of one CPU package in watts, for the energy model (shared by that package's physical cores)"
    ),
]
MetricsPortOption = Annotated[
    int | None, typer.Option("--metrics-port", help="Serve live Prometheus metrics of the runs on this port")
]
MetricsAddrOption = Annotated[
    str | None, typer.Option("--metrics-addr", help="Address for --metrics-port [default: 127.0.0.1]")
]
# The one machine-readable flag: --format json (on stdout); --json is its older spelling, kept.
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="human: progress and tables; json: machine-readable results only")
]
JsonOption = Annotated[bool, typer.Option("--json", help="The same as --format json")]


def as_json(output: OutputFormat, json_flag: bool = False) -> bool:
    return output == OutputFormat.json or json_flag


def given(ctx: typer.Context, names: tuple[str, ...]) -> list[str]:
    """The options among `names` (parameter names) that the user gave, as they are spelt."""
    from typer._click.core import ParameterSource  # typer's own click

    found = []
    for param in ctx.command.params:
        if param.name in names and ctx.get_parameter_source(param.name) in (
            ParameterSource.COMMANDLINE,
            ParameterSource.ENVIRONMENT,
        ):
            found.append("/".join([*param.opts, *param.secondary_opts]))
    return found


def load_plan(
    preset: str,
    logs_dir: Path,
    *,
    trials: int | None = None,
    only: list[str] | None = None,
    data_dir: Path | None = None,
    tdp: float | None = None,
    device: str | None = None,
    power_limit: str | None = None,
    procs_per_node: int | None = None,
) -> tuple[Preset, list[PlannedRun]]:
    """The one way a command turns a preset and its options into runs: --data-dir, --tdp and
    --device override the preset's settings, --only keeps some configurations. One line and exit 2
    when that leaves nothing to run. The runs are counted before they are made: a plan of more
    than MAX_PLAN_RUNS is made only when a person at a terminal confirms it, and refused in one
    line without a terminal."""
    from engine.orchestrate.presets import MAX_PLAN_RUNS, filter_plan, parse_only

    overrides: dict[str, Any] = {"logs_dir": str(logs_dir)}
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    if tdp is not None:
        overrides["tdp_w"] = finite("--tdp", tdp, 0, TDP_MAX_W)
    if device is not None:
        overrides["device"] = device
    if power_limit is not None:
        overrides.update(parse_power_limit(power_limit))
    if procs_per_node is not None:
        overrides["procs_per_node"] = procs_per_node
    loaded = presets_mod.load(preset, overrides)
    filters = parse_only(only or [])
    count = loaded.count(trials, filters)
    if not count:
        raise fail(f"--only {' '.join(only or [])} leaves no configuration of preset {loaded.name!r} to run")
    if count > MAX_PLAN_RUNS:
        configs, n = len(loaded.kept(filters)), trials or loaded.trials
        size = f"preset {loaded.name!r} makes {count} runs ({configs} configurations x {n} trials)"
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise fail(
                f"{size}, more than {MAX_PLAN_RUNS} at once; none was started: lower --trials, keep "
                "fewer configurations with --only, or start it from a terminal to confirm"
            )
        if not typer.confirm(f"{size}, more than {MAX_PLAN_RUNS}: start them?", default=False, err=True):
            raise fail("not started")
    return loaded, filter_plan(loaded.iter_plan(trials), filters)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context, logs: LogsOption = None) -> None:
    """Headless commands; with none, this help (`joulelab` with no command opens the lab)."""
    share_logs(ctx, logs)
    if ctx.invoked_subcommand is None:
        console.print(ctx.get_help(), highlight=False, markup=False)


def share_logs(ctx: typer.Context, logs: Path | None) -> None:
    """`joulelab --logs DIR export ...`: DIR becomes the subcommand's --logs default (its own
    --logs still wins); a subcommand that reads no logs refuses it rather than ignore it."""
    if logs is None or ctx.invoked_subcommand is None:
        return
    command = ctx.command.get_command(ctx, ctx.invoked_subcommand) if isinstance(ctx.command, TyperGroup) else None
    if command is None or not any(p.name == "logs" for p in command.params):
        raise fail(f"--logs does not apply to `joulelab {ctx.invoked_subcommand}`; leave it out")
    ctx.default_map = {**(ctx.default_map or {}), ctx.invoked_subcommand: {"logs": logs}}


def metrics_observers(port: int | None, addr: str | None) -> Callable[[], list[PlanObserver]]:
    """--metrics-port/--metrics-addr checked before anything runs (one line and exit 2 if
    unusable); what makes a fresh metrics server for each plan that is run."""
    if port is None:
        if addr is not None:
            raise fail("--metrics-addr needs --metrics-port")
        return list
    import importlib.util

    from engine.outputs.prometheus import DEFAULT_ADDR, INSTALL, check_port

    check_port(port)
    if importlib.util.find_spec("prometheus_client") is None:
        raise fail(f"--metrics-port needs prometheus_client, which is not installed; install it with: {INSTALL}")
    from engine.outputs.prometheus import MetricsServer

    return lambda: [MetricsServer(port, addr or DEFAULT_ADDR)]


# Options of one executor only: given with the other, they are refused rather than ignored.
LOCAL_ONLY = ("until_clear", "max_trials", "metrics_port", "metrics_addr")
SLURM_ONLY = ("partition", "gpus_per_job", "time_min", "exclusive", "max_parallel", "nodes")


@app.command()
def run(
    ctx: typer.Context,
    preset: Annotated[
        str | None, typer.Argument(help="Preset name (quick, paper, ...) or path to a .toml file")
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(min=1, max=presets_mod.MAX_TRIALS, help="Seeds per configuration (overrides the preset)"),
    ] = None,
    only: Annotated[list[str] | None, typer.Option(help="Keep configurations with KEY=VALUE (repeatable)")] = None,
    output: FormatOption = OutputFormat.human,
    logs: LogsOption = None,
    data_dir: DataDirOption = None,
    tdp: TdpOption = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device", help="auto, cpu, cuda or cuda:N (overrides the preset; auto: the GPU when torch sees one)"
        ),
    ] = None,
    power_limit: Annotated[
        str | None,
        typer.Option(
            "--power-limit",
            help="Every run at this GPU power limit: watts (250W) or a fraction of the GPU's default (0.7); "
            "set through NVML and put back after each run",
        ),
    ] = None,
    procs_per_node: Annotated[
        int | None,
        typer.Option(
            "--procs-per-node",
            min=1,
            max=1024,
            help="Train data-parallel (DDP) over N processes per node, one GPU each on CUDA (overrides the preset)",
        ),
    ] = None,
    until_clear: Annotated[
        bool,
        typer.Option(
            "--until-clear",
            help="Add trials to unclear comparisons until each training-energy interval excludes 1.0, or --max-trials",
        ),
    ] = False,
    max_trials: Annotated[
        int, typer.Option("--max-trials", min=2, max=1000, help="Most trials per configuration with --until-clear")
    ] = 10,
    metrics_port: MetricsPortOption = None,
    metrics_addr: MetricsAddrOption = None,
    executor: Annotated[
        Executor, typer.Option(help="local: here, one run at a time; slurm: one job per pair through submitit")
    ] = Executor.local,
    partition: Annotated[str | None, typer.Option(help="Slurm partition [default: the cluster's]")] = None,
    gpus_per_job: Annotated[int, typer.Option(min=0, help="Slurm: GPUs per job")] = 0,
    time_min: Annotated[int, typer.Option("--time", min=1, help="Slurm: time limit per job, minutes")] = 60,
    exclusive: Annotated[bool, typer.Option(help="Slurm: a whole node per job, so meters see only this job")] = True,
    max_parallel: Annotated[int | None, typer.Option(min=1, help="Slurm: at most K jobs at once")] = None,
    nodes: Annotated[
        int,
        typer.Option(
            min=1, max=1024, help="Slurm: nodes per job; each run trains data-parallel over all of them, each metered"
        ),
    ] = 1,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Finish what was left unfinished: with --executor slurm, "
            "resubmit the failed, cancelled or lost jobs of the last submission (of "
            "PRESET, if given); locally, the plan a dropped lab session left in --logs",
        ),
    ] = False,
) -> None:
    """Run a preset's matrix, one worker at a time (or on Slurm, one job per pair), then print the comparison."""
    from engine.orchestrate.presets import check_data, parse_only

    other = SLURM_ONLY if executor == Executor.local else LOCAL_ONLY
    if refused := given(ctx, other):
        verb, pronoun = ("does", "it") if len(refused) == 1 else ("do", "them")
        raise fail(f"{', '.join(refused)} {verb} not apply to --executor {executor.value}; leave {pronoun} out")
    if executor == Executor.slurm:
        from engine.orchestrate.slurm import SlurmOptions

        options = SlurmOptions(partition, gpus_per_job, time_min, exclusive, max_parallel, nodes)
        run_on_slurm(
            preset, trials, only, output, logs, data_dir, tdp, device, power_limit, options, resume, procs_per_node
        )
        return
    if given(ctx, ("max_trials",)) and not until_clear:
        raise fail("--max-trials needs --until-clear")
    if resume:
        from engine.orchestrate.plan_runner import resume_latest_plan

        raise typer.Exit(resume_latest_plan(logs or default_logs_dir(), console, warn))
    if preset is None:
        raise fail("give a preset to run (quick, paper, ... or a .toml file), or --resume")

    logs_dir = logs or default_logs_dir()
    loaded, plan = load_plan(
        preset,
        logs_dir,
        trials=trials,
        only=only,
        data_dir=data_dir,
        tdp=tdp,
        device=device,
        power_limit=power_limit,
        procs_per_node=procs_per_node,
    )
    check_data(plan)
    from engine.core.run_files import check_writable

    check_writable(logs_dir)
    for line in presets_mod.user_networks(p.spec for p in plan):  # user code runs: say whose and from where, first
        (console if output == OutputFormat.human else err_console).print(
            line, highlight=False, markup=False, soft_wrap=True
        )
    filters = parse_only(only or [])
    seconds, how = loaded.estimate(trials, filters, presets_mod.past_run_seconds(logs_dir))
    (console if output == OutputFormat.human else err_console).print(
        presets_mod.plan_line(len(plan), seconds, how), highlight=False, markup=False, soft_wrap=True
    )

    metrics = metrics_observers(metrics_port or loaded.metrics_port, metrics_addr or loaded.metrics_addr)
    mlflow = None
    if loaded.mlflow:
        import importlib.util

        from engine.outputs.export import DEFAULT_MLFLOW_EXPERIMENT, MLFLOW_INSTALL, MlflowTarget

        if importlib.util.find_spec("mlflow") is None:
            raise fail(
                f"preset {loaded.name!r} sets mlflow = true, but MLflow is not installed; "
                f"install it with: {MLFLOW_INSTALL}"
            )
        mlflow = MlflowTarget(loaded.mlflow_tracking_uri, loaded.mlflow_experiment or DEFAULT_MLFLOW_EXPERIMENT)

    from engine.orchestrate.plan_runner import execute_plan

    human = output == OutputFormat.human
    # A MetricsError (the port could not be opened; nothing has run) is one line, like any JouleLabError.
    live_console = console if human else None

    def observers() -> list[PlanObserver]:
        from engine.outputs.export import MlflowLogger

        return metrics() + ([MlflowLogger(mlflow, live_console)] if mlflow is not None else [])

    result = asyncio.run(execute_plan(plan, live_console, title=loaded.title(len(plan)), observers=observers()))
    outcomes = result.outcomes
    clear_note = None
    if until_clear and not result.interrupted:
        result, clear_note = _until_clear(
            loaded,
            parse_only(only or []),
            trials or loaded.trials,
            max_trials,
            result,
            live_console,
            observers,
        )
        outcomes = result.outcomes
    if result.interrupted:
        raise typer.Exit(interrupted_exit(result, logs_dir))
    summaries = [s for o in outcomes if (s := load_summary(o.run_path)) is not None]
    from engine.analysis.calibrate import load_noise_floor
    from engine.analysis.stats import compare, config_stats, scaling

    stats, comparisons = config_stats(summaries), compare(summaries, load_noise_floor(on_problem=warn))
    failed = [o for o in outcomes if not o.ok]
    if human:
        print_results(stats, comparisons, scaling(summaries))
        if clear_note:
            console.print(clear_note, highlight=False, markup=False)
        for o in failed:
            err_console.print(
                f"[bold red]run {o.run_id} {o.status}:[/] {escape(o.error or 'no error message')} "
                f"(log: {escape(str(o.run_path))})",
                highlight=False,
                soft_wrap=True,
            )
    else:
        from engine.outputs.export import comparison_records

        json.dump(
            {
                "preset": loaded.name,
                "runs": [outcome_record(o) for o in outcomes],
                **comparison_records(stats, comparisons),
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    # A run the worker refused as bad input (missing or broken data, a bad group) is the user's
    # to fix: exit 2, like any other bad input; other failures and crashes exit 1.
    if failed and all(o.exit_code == EXIT_USAGE for o in failed):
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_RUN_FAILED if failed else EXIT_OK)


def interrupted_exit(result: PlanResult, logs_dir: Path) -> int:
    """Say in one line how a signal ended the plan (SIGINT, SIGTERM: the run cancelled; SIGHUP: left
    going, the plan to resume) and return the exit code it ends with."""
    import signal

    from engine.orchestrate.plan_runner import EXIT_FOR_SIGNAL, interrupted_line

    sig = result.signal or signal.SIGINT
    cancelled = next((o.run_id for o in reversed(result.outcomes) if o.status == "cancelled"), None)
    try:  # after a hangup the terminal may be gone
        err_console.print(interrupted_line(sig, logs_dir, cancelled), highlight=False, soft_wrap=True, markup=False)
    except OSError:
        pass
    return EXIT_FOR_SIGNAL[sig]


def _until_clear(
    loaded: Preset,
    only: dict[str, set[str]],
    done: int,
    max_trials: int,
    result: PlanResult,
    live_console: Console | None,
    observers: Callable[[], list[PlanObserver]],
) -> tuple[PlanResult, str | None]:
    """More trials, one at a time, for the configurations of comparisons whose training-energy
    interval (meter error included) still contains 1.0; returns the whole result and what
    happened, in one line."""
    from engine.analysis.calibrate import load_noise_floor
    from engine.analysis.stats import compare
    from engine.orchestrate.plan_runner import PlanResult, execute_plan
    from engine.orchestrate.presets import filter_plan

    outcomes = list(result.outcomes)
    while True:
        summaries = [s for o in outcomes if (s := load_summary(o.run_path)) is not None]
        comparisons = compare(summaries, load_noise_floor(on_problem=warn))
        unclear = [
            c
            for c in comparisons
            if not (c.train_interval and c.train_interval.has_interval and not c.train_interval.spans(1.0))
        ]
        if not unclear:
            return PlanResult(outcomes, False, result.batch), (
                f"--until-clear: every comparison is clear after {done} trial{'s' if done != 1 else ''}"
            )
        if done >= max_trials:
            names = ", ".join(f"{c.group} {c.treatment} vs {c.reference}" for c in unclear)
            return PlanResult(outcomes, False, result.batch), (
                f"--until-clear: still unclear after the maximum of {max_trials} trials: {names}"
            )
        keys = {k for c in unclear for k in c.keys}
        extra = [p for p in filter_plan(loaded.plan(done + 1), only) if p.trial == done and p.config.key in keys]
        title = f"{loaded.title(len(extra))}, trial {done + 1} (--until-clear)"
        more = asyncio.run(execute_plan(extra, live_console, title=title, batch=result.batch, observers=observers()))
        outcomes += more.outcomes
        done += 1
        if more.interrupted:
            return PlanResult(outcomes, True, result.batch, more.signal), None


def run_on_slurm(
    preset: str | None,
    trials: int | None,
    only: list[str] | None,
    output: OutputFormat,
    logs: Path | None,
    data_dir: Path | None,
    tdp: float | None,
    device: str | None,
    power_limit: str | None,
    options: SlurmOptions,
    resume: bool,
    procs_per_node: int | None = None,
) -> None:
    """`joulelab run --executor slurm`: submit one job per pair, follow them, print the comparison.
    Ctrl-C asks whether to cancel the jobs (without a terminal: cancels, and says so)."""
    from engine.core.run_files import check_writable
    from engine.orchestrate import slurm

    logs_dir = (logs or default_logs_dir()).resolve()  # the jobs write here: absolute, on a shared filesystem
    human = output == OutputFormat.human
    check_writable(logs_dir)
    slurm.check_cluster(options)
    if resume:
        loaded_name = presets_mod.load(preset).name if preset else None
        record = slurm.latest_record(logs_dir, loaded_name)
        if record is None:
            raise fail(
                f"nothing to resume: no Slurm submission{' of ' + loaded_name if loaded_name else ''} "
                f"in {logs_dir / slurm.JOBS_DIR}"
            )
        new = slurm.resubmit(record)
        if human:
            console.print(
                f"resume: resubmitted {len(new)} job(s) of batch {record['batch']}"
                + (f": {', '.join(j['job_id'] for j in new)}" if new else " (nothing failed or was lost)"),
                highlight=False,
                soft_wrap=True,
            )
    else:
        if preset is None:
            raise fail("name a PRESET to run (quick, paper, mechanisms, or a .toml file)")
        loaded, plan = load_plan(
            preset,
            logs_dir,
            trials=trials,
            only=only,
            data_dir=data_dir,
            tdp=tdp,
            device=device,
            power_limit=power_limit,
            procs_per_node=procs_per_node,
        )
        record = slurm.submit_plan(plan, options, logs_dir, loaded.name)
        if human:
            ids = [j["job_id"] for j in record["jobs"]]
            console.print(
                f"submitted {len(ids)} job(s) for {len(plan)} runs (one job per pair, runs in sequence "
                f"on one node) to Slurm: {', '.join(ids)}; requested {options.describe()}; "
                f"logs in {logs_dir}",
                highlight=False,
                soft_wrap=True,
            )
    try:
        states = slurm.follow(record, console if human else None)
    except KeyboardInterrupt:
        try:
            queue = slurm.queue_states()
            active = [
                j["job_id"] for j in slurm.current_jobs(record) if slurm.job_state(j, logs_dir, queue) in slurm.ACTIVE
            ]
        except slurm.SlurmError:  # cannot tell which are still queued: cancel them all
            active = [j["job_id"] for j in slurm.current_jobs(record)]
        cancel, message = slurm.interrupt_choice(sys.stdin.isatty(), typer.confirm)
        err_console.print(f"interrupted: {message}", highlight=False, soft_wrap=True)
        if cancel:
            slurm.cancel_jobs(record, active)
            err_console.print(
                f"cancelled {len(active)} job(s): {', '.join(active) or 'none was active'}; "
                f"resubmit with `joulelab run --executor slurm --resume --logs {logs_dir}`",
                highlight=False,
                soft_wrap=True,
            )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    run_ids = slurm.batch_run_ids(record)
    summaries = [s for s in (load_summary(logs_dir / rid) for rid in run_ids) if s is not None]
    from engine.analysis.calibrate import load_noise_floor
    from engine.analysis.stats import compare, config_stats, scaling

    stats, comparisons = config_stats(summaries), compare(summaries, load_noise_floor(on_problem=warn))
    failed = [rid for rid in run_ids if slurm.run_state(logs_dir, rid) != "complete"]
    if human:
        print_results(stats, comparisons, scaling(summaries))
        for job in slurm.current_jobs(record):
            if states.get(job["job_id"]) != "done":
                err_console.print(
                    f"[bold red]job {job['job_id']} {states.get(job['job_id'])}:[/] runs "
                    + ", ".join(f"{r['run_id']} {slurm.run_state(logs_dir, r['run_id'])}" for r in job["runs"])
                    + f" (job log: {logs_dir / slurm.JOBS_DIR / record['batch']})",
                    highlight=False,
                    soft_wrap=True,
                )
    else:
        from engine.outputs.export import comparison_records

        json.dump(
            {
                "preset": record["preset"],
                "batch": record["batch"],
                "jobs": states,
                "runs": [
                    {"run_id": rid, "status": slurm.run_state(logs_dir, rid), "log": str(logs_dir / rid)}
                    for rid in run_ids
                ],
                **comparison_records(stats, comparisons),
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    raise typer.Exit(EXIT_RUN_FAILED if failed else EXIT_OK)


@app.command()
def jobs(logs: LogsOption = None, output: FormatOption = OutputFormat.human) -> None:
    """Slurm jobs submitted by `joulelab run --executor slurm`: id, pair, node, state, runs."""
    from rich.table import Table

    from engine.orchestrate import slurm

    logs_dir = (logs or default_logs_dir()).resolve()
    records = slurm.load_records(logs_dir)
    queue = slurm.queue_states() if records else {}
    rows = []
    for record in records:
        for job in record["jobs"]:
            state = "resubmitted" if job.get("resubmitted_as") else slurm.job_state(job, logs_dir, queue)
            nodes = {node for r in job["runs"] if (node := slurm.run_node(logs_dir, r["run_id"])) is not None}
            node = queue.get(job["job_id"], ("", ""))[1] or ",".join(sorted(nodes)) or "-"
            rows.append(
                {
                    "batch": record["batch"],
                    "preset": record["preset"],
                    "job_id": job["job_id"],
                    "pair": job["label"],
                    "node": node,
                    "state": state,
                    "resubmitted_as": job.get("resubmitted_as"),
                    "runs": {r["run_id"]: slurm.run_state(logs_dir, r["run_id"]) for r in job["runs"]},
                }
            )
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
        table.add_row(
            r["job_id"],
            r["batch"],
            r["preset"],
            r["pair"],
            r["node"],
            state,
            " ".join(f"{rid} {st}" for rid, st in r["runs"].items()),
        )
    console.print(table)


def outcome_record(o: RunOutcome) -> dict[str, Any]:
    return {
        "run_id": o.run_id,
        "status": o.status,
        "exit_code": o.exit_code,
        "error": o.error,
        "log": str(o.run_path),
        "events": o.events,
        "bad_lines": o.bad_lines,
    }


def print_results(
    stats: list[ConfigStats], comparisons: list[Comparison], speedups: list[Speedup] | None = None
) -> None:
    from engine.outputs.tables import comparison_table, config_table, fitted, speedup_table, verdicts

    if stats:
        console.print(fitted(console, lambda narrow: config_table(stats, narrow=narrow)))
    if comparisons:
        console.print(fitted(console, lambda narrow: comparison_table(comparisons, narrow=narrow)))
    if speedups:
        console.print(fitted(console, lambda narrow: speedup_table(speedups, narrow=narrow)))
    print_target_results(stats, comparisons)
    if comparisons:
        console.print(verdicts(comparisons))


def print_target_results(stats: list[ConfigStats], comparisons: list[Comparison]) -> None:
    """The energy-to-target section, when the stats were made with a target (compare --target-accuracy)."""
    from engine.outputs.tables import fitted, target_comparison_table, target_table

    if any(s.to_target is not None for s in stats):
        console.print(fitted(console, lambda narrow: target_table(stats, narrow=narrow)))
    if any(c.to_target is not None for c in comparisons):
        console.print(fitted(console, lambda narrow: target_comparison_table(comparisons, narrow=narrow)))


def _records(
    logs_dir: Path,
    run_ids: list[str] | None,
    all_runs: bool = False,
    preset: str | None = None,
    last: bool = False,
    light: bool = False,
) -> list[RunRecord]:
    """Select runs by id, by preset, the last `joulelab run` batch, or all. Errors exit 2.
    Damaged runs are left out and named on stderr. `light`: records for listing or exporting
    (the exporter loads each run whole in turn)."""
    from engine.store.run_log import find_run, list_runs

    if sum(bool(x) for x in (run_ids, all_runs, preset is not None, last)) > 1:
        raise fail("choose one way to select runs: RUN ids, --all, --preset NAME or --last")
    if run_ids:
        records = skip_damaged([find_run(logs_dir, rid) for rid in run_ids])
        if not records:
            raise fail("none of the named runs can be read (see the lines above)")
        return records
    records = skip_damaged(list_runs(logs_dir, light=light))
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


def _energy_cell(summary: RunSummary | None, phase: str = "train") -> str:
    from engine.outputs.tables import energy_cell

    return energy_cell(summary.total(phase) if summary is not None else None)


RUNS_SHOWN = 100  # `joulelab runs` lists the newest this many unless --all: it reads only those


@app.command("runs")
def runs_cmd(
    logs: LogsOption = None,
    output: FormatOption = OutputFormat.human,
    every: Annotated[bool, typer.Option("--all", help=f"List every run, not only the newest {RUNS_SHOWN}")] = False,
) -> None:
    """List past runs: id, when, preset, configuration, status, energy, accuracy."""

    from engine.store.run_log import list_runs, run_dirs

    logs_dir = logs or default_logs_dir()
    total = len(run_dirs(logs_dir))
    records = list_runs(logs_dir, light=output != OutputFormat.json, newest=None if every else RUNS_SHOWN)
    skip_damaged(records)  # named on stderr; listed below as damaged
    if output == OutputFormat.json:
        from engine.outputs.export import runs_table

        sys.stdout.write(runs_table(records).to_json(orient="records", indent=1) + "\n")
        return
    if not records:
        console.print(f"no runs in {logs_dir} yet; try `joulelab run quick`", markup=False)
        return
    from engine.outputs.tables import fitted

    console.print(fitted(console, lambda narrow: _runs_table(records, logs_dir, total, narrow)))


def _runs_table(records: list[RunRecord], logs_dir: Path, total: int, narrow: bool) -> Table:
    """`runs` as a table; narrow: the start time under the id, preset over the abbreviated
    configuration, no vertical rules, so every column fits 80 columns."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from engine.core.timestamps import short_stamp
    from engine.outputs.tables import ABBREV_NOTE, STATUS_STYLE, short_key

    if narrow:
        table = Table(
            title=escape(f"Runs in {logs_dir}"),
            title_justify="left",
            header_style="bold",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            pad_edge=False,
        )
        columns: tuple[str, ...] = ("run / started", "preset / config", "seed", "status", "train J", "acc %")
    else:
        table = Table(title=escape(f"Runs in {logs_dir}"), title_justify="left", header_style="bold")
        columns = ("run", "started", "preset", "configuration", "seed", "status", "train J", "acc %")
    for col in columns:
        table.add_column(
            col,
            justify="right" if col in ("seed", "train J", "acc %") else "left",
            overflow="fold",
            no_wrap=col.startswith("run"),
        )
    for r in records:
        acc = r.summary.metrics.accuracy_frac if r.summary is not None else None
        status = r.status + (
            f" ({r.last_phase})" if r.status in ("crashed", "cancelled", "stalled") and r.last_phase else ""
        )
        started, preset, config = short_stamp(r.started), r.spec.get("preset") or "-", r.spec.get("config")
        cells: list[str | Text] = [
            str(r.spec.get("seed", "-")),
            Text(status, style=STATUS_STYLE.get(r.status, "")),
            _energy_cell(r.summary),
            f"{100 * acc:.1f}" if acc is not None else "-",
        ]
        if narrow:
            config = short_key(config, False, narrow=True) if config else "-"
            table.add_row(f"{r.run_id}\n{started}", escape(f"{preset}\n{config}"), *cells)
        else:
            table.add_row(r.run_id, started, escape(preset), escape(config or "-"), *cells)
    table.caption = "train J: net joules of the training phase; ~ = modelled (an estimate)"
    if narrow:
        table.caption += "\n" + ABBREV_NOTE
    if len(records) < total:
        table.caption += f"\nthe newest {len(records)} of {total} runs; --all lists every one"
    table.caption_justify = "left"
    return table


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="A run id (see `joulelab runs`)")], logs: LogsOption = None
) -> None:
    """One run: phases and energy per domain with provenance, metrics, meters, errors."""
    from engine.core.events import FAILED_STATUSES
    from engine.core.run_files import EVENTS, STDERR
    from engine.outputs.tables import run_table
    from engine.store.run_log import find_run, read_events

    logs_dir = logs or default_logs_dir()
    record = find_run(logs_dir, run_id)
    s = record.summary
    if record.problem:
        raise fail(
            f"run {run_id} is damaged: {record.problem}; its events are in {record.path / 'events.jsonl'}",
            EXIT_RUN_FAILED,
        )
    if s is None:
        console.print(
            f"run {run_id}: [bold]{record.status}[/] (last phase: {record.last_phase or 'none'}); "
            "no summary was written (summary.json is missing)"
        )
    else:
        console.print(run_table(s))
        m = s.metrics
        if m.accuracy_frac is not None:
            parts = [f"accuracy {100 * m.accuracy_frac:.2f} %"]
            parts += [f"macro-F1 {m.f1_macro_frac:.3f}"] if m.f1_macro_frac is not None else []
            parts += [f"{m.train_samples_seen} training samples"] if m.train_samples_seen is not None else []
            parts += [f"{m.inferences} inferences"] if m.inferences is not None else []
            console.print(", ".join(parts), highlight=False)  # what a run recorded (an API run may leave some out)
            for key, per in (("j_per_train_sample", m.j_per_train_sample), ("j_per_inference", m.j_per_inference)):
                if per is not None and per.value is not None:
                    console.print(f"{key.replace('_', ' ')}: {per.value:.3g} J ({per.source}, net)")
        if s.error:
            err_console.print(f"error: {s.error}", highlight=False, markup=False)
        if s.power_limit:
            console.print(power_limit_line(s.power_limit), highlight=False, markup=False)
        for line in s.power_limit_leftover:
            warn(line)
    for missing in record.manifest.missing_meters:
        console.print(f"[dim]{escape(missing.meter)}: {escape(missing.reason)}[/]", highlight=False)
    _, skipped = read_events(record.path / EVENTS)
    if skipped:
        lines = f"{skipped} line{'s' if skipped > 1 else ''}"
        warn(f"{lines} of {record.path / EVENTS} could not be read as events (skipped)")
    if record.status in FAILED_STATUSES:
        tail = (
            (record.path / STDERR).read_text(errors="replace").splitlines()[-15:]
            if (record.path / STDERR).exists()
            else []
        )
        if tail:
            console.print("[bold]stderr.log (last lines):[/]")
            console.print("\n".join(tail), highlight=False, markup=False)


def power_limit_line(record: dict[str, Any]) -> str:
    """What `show` says of the GPU power limit a run set (engine.worker.power_limit's record)."""
    restored = {True: "put back", False: "NOT put back", None: "not yet put back"}[record.get("restored")]
    set_w = record.get("set_w")
    return (
        f"GPU power limit: {record.get('asked')} ({record.get('asked_w'):g} W), read back "
        f"{'unknown' if set_w is None else f'{set_w:g} W'}; previous {record.get('previous_w'):g} W, {restored}"
    )


@app.command()
def compare(
    run_ids: Annotated[list[str] | None, typer.Argument(help="Run ids to compare")] = None,
    preset: Annotated[str | None, typer.Option(help="All runs of this preset")] = None,
    last: Annotated[bool, typer.Option("--last", help="The runs of the last `joulelab run`")] = False,
    logs: LogsOption = None,
    output: FormatOption = OutputFormat.human,
    target_accuracy: Annotated[
        float | None,
        typer.Option(
            "--target-accuracy",
            help="Also compare the energy until validation accuracy first reached this fraction (0.9 = 90 %)",
        ),
    ] = None,
) -> None:
    """Compare runs: per-configuration means with 95 % CIs, paired ratios and verdicts."""
    from engine.analysis.stats import compare as compare_runs
    from engine.analysis.stats import config_stats, scaling
    from engine.core.spec import target_problem

    if target_accuracy is not None and (problem := target_problem(target_accuracy)):
        raise fail(f"--target-accuracy: {problem}")
    logs_dir = logs or default_logs_dir()
    if not run_ids and preset is None and not last:
        last = True
    records = _records(logs_dir, run_ids, preset=preset, last=last)
    for r in records:
        if r.summary is None:
            err_console.print(
                f"skipped run {r.run_id}: {r.status}, no summary (see `joulelab show {r.run_id}`)",
                highlight=False,
                markup=False,
            )
    summaries = [r.summary for r in records if r.summary is not None]
    from engine.analysis.calibrate import load_noise_floor

    stats = config_stats(summaries, target_accuracy)
    comparisons = compare_runs(summaries, load_noise_floor(on_problem=warn), target_accuracy)
    if output == OutputFormat.json:
        from engine.outputs.export import comparison_records

        json.dump(comparison_records(stats, comparisons, scaling(summaries)), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not stats:
        raise fail("none of the selected runs completed; nothing to compare (see `joulelab runs`)")
    print_results(stats, comparisons, scaling(summaries))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def measure(
    ctx: typer.Context,
    commands: Annotated[
        list[str] | None,
        typer.Argument(help="-- CMD ARGS... (one command), or quoted command lines to compare: 'CMD A' 'CMD B'"),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="What the runs are called (their configuration)")] = "measure",
    trials: Annotated[int, typer.Option(min=1, max=100, help="Rounds of every command (counterbalanced)")] = 1,
    warmup: Annotated[int, typer.Option(min=0, max=20, help="Unmetered runs of each command first")] = 0,
    idle_s: Annotated[float, typer.Option("--idle-s", min=0, help="Idle baseline before each run (s)")] = 2.0,
    until_clear: Annotated[
        bool, typer.Option("--until-clear", help="More rounds while a training-energy interval still contains 1.0")
    ] = False,
    max_trials: Annotated[int, typer.Option(min=2, max=100, help="The most rounds --until-clear runs")] = 10,
    tdp: TdpOption = None,
    logs: LogsOption = None,
) -> None:
    """Meter any command (its process tree), or compare commands A/B with intervals and a verdict."""
    from engine.analysis.calibrate import load_noise_floor
    from engine.analysis.stats import compare as compare_runs
    from engine.analysis.stats import config_stats
    from engine.core.run_files import check_writable
    from engine.orchestrate.measure import LETTERS, measure_ab, measure_command, mechanism_of, parse_commands
    from engine.outputs.tables import run_table

    # `--` makes the rest one command; without it, each argument is a command line of its own
    argv = [*(commands or []), *ctx.args]
    parsed = parse_commands(argv, after_double_dash="--" in sys.argv[1:])
    logs_dir = (logs or default_logs_dir()).absolute()
    check_writable(logs_dir)
    if until_clear and len(parsed) < 2:
        raise fail("--until-clear compares commands: give two or more ('CMD A' 'CMD B')")
    noise = load_noise_floor(on_problem=warn)

    def unclear(done: list[Any]) -> bool:
        comparisons = compare_runs([m.summary for m in done], noise)
        return (
            any(
                not (c.train_interval and c.train_interval.has_interval and not c.train_interval.spans(1.0))
                for c in comparisons
            )
            or not comparisons
        )

    if len(parsed) == 1 and trials == 1 and warmup == 0:
        m = measure_command(parsed[0], name=name, logs=logs_dir, idle_s=idle_s, tdp_w=tdp)
        console.print(run_table(m.summary))
        total = m.summary.total("train")
        energy = f"{total.net_j:.4g} J net ({total.source})" if total is not None and total.source else "no energy"
        console.print(
            f"{shlex.join(m.command)}: {m.summary.status}, exit {m.exit_code}, {energy}; run {m.summary.run_id}",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(m.exit_code)
    measured, _batch = measure_ab(
        parsed,
        name=name,
        logs=logs_dir,
        trials=trials,
        warmup=warmup,
        idle_s=idle_s,
        tdp_w=tdp,
        more_rounds=unclear if until_clear else None,
        max_trials=max_trials,
        say=lambda text: err_console.print(text, highlight=False, markup=False),
    )
    for letter, argv_ in zip(LETTERS, parsed):
        console.print(f"{letter} ({mechanism_of(letter)}): {shlex.join(argv_)}", highlight=False, markup=False)
    summaries = [m.summary for m in measured]
    stats = config_stats(summaries)
    if stats:
        print_results(stats, compare_runs(summaries, noise))
    stopped = next((m for m in measured if m.summary.status != "complete"), None)
    if stopped is not None:
        warn(f"stopped: {stopped.letter} {stopped.summary.status} ({stopped.summary.error}); what was measured is kept")
        raise typer.Exit(stopped.exit_code or EXIT_RUN_FAILED)
    if not measured:
        raise typer.Exit(EXIT_RUN_FAILED)


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"
    parquet = "parquet"
    codecarbon = "codecarbon"
    mlflow = "mlflow"


@app.command()
def export(
    run_ids: Annotated[list[str] | None, typer.Argument(help="Run ids to export")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Export every run in the logs directory")] = False,
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="csv/parquet: a file per table; json: one file; codecarbon: emissions.csv; mlflow: MLflow runs",
        ),
    ] = ExportFormat.csv,
    out: Annotated[Path | None, typer.Option("-o", "--output", help="Directory (or file for json/codecarbon)")] = None,
    carbon_intensity: Annotated[
        float | None,
        typer.Option(min=0, help=f"g CO2eq per kWh, for --format codecarbon [default: ${CARBON_ENV} or 480]"),
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="For --format mlflow [default: MLflow's own]")
    ] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="MLflow experiment, for --format mlflow [default: joulelab]")
    ] = None,
    logs: LogsOption = None,
) -> None:
    """Export runs as tidy tables: runs, phases, samples and the energy-to-accuracy curve."""
    from engine.outputs.export import write

    logs_dir = logs or default_logs_dir()
    # MLflow logs every record whole; the file formats stream light records a chunk at a time.
    records = _records(logs_dir, run_ids, all_runs=all_runs, light=fmt != ExportFormat.mlflow)
    if fmt == ExportFormat.mlflow:
        export_mlflow(records, tracking_uri, experiment)
        return
    paths = write(records, fmt.value, out or Path("export"), settings().carbon(carbon_intensity)[0])
    for p in paths:
        console.print(f"wrote {p}", highlight=False, markup=False)


def export_mlflow(records: list[RunRecord], tracking_uri: str | None, experiment: str | None) -> None:
    from engine.outputs.export import DEFAULT_MLFLOW_EXPERIMENT, MlflowTarget, log_mlflow

    experiment = experiment or DEFAULT_MLFLOW_EXPERIMENT
    logged = log_mlflow(records, MlflowTarget(tracking_uri, experiment))
    for item in logged:
        what = (
            f"logged as MLflow run {item.mlflow_run_id}"
            if item.created
            else f"{item.note}" + (f" (MLflow run {item.mlflow_run_id})" if item.mlflow_run_id else "")
        )
        console.print(f"{item.run_id}: {what}", highlight=False)
    console.print(
        f"experiment {experiment!r} at {tracking_uri or 'the default tracking URI'}; see them with `mlflow ui`",
        highlight=False,
    )


@app.command()
def plot(
    run_ids: Annotated[list[str], typer.Argument(help="Run ids to plot")],
    out: Annotated[Path, typer.Option("-o", "--output", help="Image file (.png or .svg)")] = Path("joulelab.png"),
    logs: LogsOption = None,
) -> None:
    """Plot power over time and the energy-to-accuracy curves of runs."""
    from engine.outputs.plots import plot_runs

    records = _records(logs or default_logs_dir(), run_ids)
    plot_runs(records, out)
    console.print(f"wrote {out}", highlight=False, markup=False)


@app.command()
def calibrate(
    preset: Annotated[str, typer.Argument(help="Preset whose configuration is run against itself")] = "quick",
    only: Annotated[
        list[str] | None,
        typer.Option(help="Pick the configuration with KEY=VALUE (default: the preset's scratch run)"),
    ] = None,
    pairs: Annotated[int, typer.Option(min=2, max=100, help="A/A pairs (at least 5 for a floor worth using)")] = 5,
    logs: LogsOption = None,
    data_dir: DataDirOption = None,
    tdp: TdpOption = None,
) -> None:
    """This machine's noise floor: one configuration against itself (A/A, paired), saved for verdicts."""
    from engine.analysis.calibrate import MIN_PAIRS, analyse, calibration_plan, check_saveable, save
    from engine.core.run_files import check_writable
    from engine.orchestrate.plan_runner import execute_plan
    from engine.outputs.tables import calibration_table

    logs_dir = logs or default_logs_dir()
    loaded, configs = load_plan(preset, logs_dir, trials=1, only=only, data_dir=data_dir, tdp=tdp)
    check_writable(logs_dir)
    # Scratch by default: it needs no source network, so no arm starts with a cache the other lacks.
    keys = [p.config.key for p in sorted(configs, key=lambda p: p.config.config_key.mode != "scratch")]
    plan = calibration_plan(loaded, keys, pairs)
    check_saveable()  # before the first run: a calibration that cannot be saved is not started
    if pairs < MIN_PAIRS:
        err_console.print(f"note: {pairs} pairs give a rough floor; use --pairs {MIN_PAIRS} or more", highlight=False)
    result = asyncio.run(execute_plan(plan, console))
    if result.interrupted:
        from engine.orchestrate.plan_runner import EXIT_FOR_SIGNAL

        err_console.print("interrupted: calibration not saved", highlight=False)
        raise typer.Exit(EXIT_FOR_SIGNAL[result.signal] if result.signal else EXIT_INTERRUPTED)
    summaries = [s for o in result.outcomes if (s := load_summary(o.run_path)) is not None]
    try:
        record = analyse(summaries)
    except ValueError as exc:
        raise fail(f"calibration failed: {exc} (see `joulelab runs`)", EXIT_RUN_FAILED) from None
    console.print(calibration_table(record))
    console.print(f"A/A: {record['verdict']}", highlight=False, markup=False)
    try:
        path = save(record)
    except (OSError, ValueError) as exc:  # ValueError: a value JSON cannot hold
        raise fail(
            f"calibration not saved: {getattr(exc, 'strerror', None) or exc} writing it under "
            f"{settings().cache_root()}; "
            "the result is above (its runs are in the logs)",
            EXIT_RUN_FAILED,
        ) from None
    console.print(f"saved {path}; `run` and `compare` verdicts on this machine now use it", highlight=False)


@app.command()
def meters(
    seconds: Annotated[float, typer.Option(min=0.1, max=60, help="How long to read each meter")] = 1.0,
    output: FormatOption = OutputFormat.human,
    json_flag: JsonOption = False,
    tdp: TdpOption = None,
    restore_power_limit: Annotated[
        bool,
        typer.Option(
            "--restore-power-limit",
            help="Put back each GPU power limit a run set and could not restore (killed); nothing else",
        ),
    ] = False,
) -> None:
    """What this machine can measure, why not the rest, and a one-second reading of each meter."""
    from engine.worker import power_limit
    from engine.worker.meters.probe import probe, render_probe

    if restore_power_limit:
        lines, restored = power_limit.restore_leftovers()
        for line in lines:
            (console if restored else err_console).print(line, highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(0 if restored else EXIT_RUN_FAILED)
    finite("--tdp", tdp, 0, TDP_MAX_W)
    report = probe(seconds, tdp_w=tdp)
    leftovers = power_limit.leftover_lines()
    if as_json(output, json_flag):
        json.dump({**report, "power_limit_leftover": leftovers}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        console.print(render_probe(report))
    for line in leftovers:
        warn(line)


@app.command()
def data(
    data_dir: DataDirOption = None,
    output: FormatOption = OutputFormat.human,
    json_flag: JsonOption = False,
) -> None:
    """Each dataset: where JouleLab looked, what it found, and how to get what is missing; your own
    datasets (<data dir>/custom/<name>/data.npz) with kind, shape and classes (exit 2 when one is unusable)."""
    from engine.worker.data.locate import describe_datasets, format_descriptions, resolve_data_dir_with_origin

    root, origin = resolve_data_dir_with_origin(str(data_dir) if data_dir else None)
    report = describe_datasets(root)
    unusable = [e for e in report if e.get("custom") and not e["found"]]
    if as_json(output, json_flag):
        json.dump({"data_dir": str(root), "from": origin, "datasets": report}, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        console.print(f"data directory: {root} (from {origin})", highlight=False, markup=False)
        console.print(format_descriptions(report), highlight=False, markup=False, soft_wrap=True)
    if unusable:  # a dataset of the user's own that a run would refuse: the user's to fix
        raise typer.Exit(EXIT_USAGE)


def main(command: typer.Typer = app) -> None:
    """Run `command` (these headless commands, or tui/cli.py's with the lab)."""
    # typer/click exit 2 on usage errors already; make sure nothing else leaks a traceback.
    try:
        command()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
