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
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

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
console = Console()
err_console = Console(stderr=True)


class OutputFormat(str, Enum):
    human = "human"
    json = "json"


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


LogsOption = Annotated[Optional[Path], typer.Option("--logs", help="Logs directory [default: $JOULELAB_LOGS or ./logs]")]


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        from tui.app import run_app

        run_app()


@app.command()
def run(
    preset: Annotated[str, typer.Argument(help="Preset name (quick, paper, ...) or path to a .toml file")],
    trials: Annotated[Optional[int], typer.Option(min=1, help="Seeds per configuration (overrides the preset)")] = None,
    only: Annotated[Optional[list[str]], typer.Option(help="Keep configurations with KEY=VALUE (repeatable)")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="human: progress and tables; json: results only")] = OutputFormat.human,
    logs: LogsOption = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where the real datasets are")] = None,
    tdp: Annotated[Optional[float], typer.Option("--tdp", help="CPU package TDP in watts, for the energy model")] = None,
) -> None:
    """Run a preset's matrix, one worker at a time, then print the comparison."""
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

    from engine.runs import execute_plan

    human = output == OutputFormat.human
    try:
        outcomes = asyncio.run(execute_plan(plan, console if human else None))
    except KeyboardInterrupt:
        err_console.print("interrupted: the current run was cancelled; its partial log is kept "
                          f"(see `joulelab runs --logs {logs_dir}`)")
        raise typer.Exit(EXIT_INTERRUPTED) from None
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
    raise typer.Exit(EXIT_RUN_FAILED if failed else EXIT_OK)


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


def main() -> None:
    # typer/click exit 2 on usage errors already; make sure nothing else leaks a traceback.
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
