"""The `joulelab` command: the engine's headless commands and, with no command, the interactive lab.

The engine never imports the TUI (tests/test_architecture.py), so the entry point that opens the
lab lives here, on the TUI's side: every command of engine/cli.py as it is, plus the lab's options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine import cli as engine_cli
from engine.core.run_files import LOGS_ENV
from engine.store.run_log import default_logs_dir

app = engine_cli.new_app()
app.registered_commands = engine_cli.app.registered_commands  # the headless commands, shared as they are


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    logs: Annotated[
        Path | None, typer.Option("--logs", help=f"Logs directory for the lab [default: ${LOGS_ENV} or ./logs]")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the real datasets are, for the lab")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve live Prometheus metrics of the lab's runs on this port"),
    ] = None,
    metrics_addr: engine_cli.MetricsAddrOption = None,
) -> None:
    """With no command, open the interactive lab."""
    engine_cli.share_logs(ctx, logs)
    if ctx.invoked_subcommand is None:
        from tui.app import run_app

        metrics = engine_cli.metrics_options(metrics_port, metrics_addr)
        run_app(logs_dir=logs or default_logs_dir(), data_dir=str(data_dir) if data_dir else None, **metrics)


def main() -> None:
    engine_cli.main(app)


if __name__ == "__main__":
    main()
