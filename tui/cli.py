"""The `joulelab` command: the engine's headless commands and, with no command, the interactive lab.

The engine never imports the TUI (tests/test_architecture.py), so the entry point that opens the
lab lives here, on the TUI's side: every command of engine/cli.py as it is, plus the lab's options.
"""

from __future__ import annotations

import typer

from engine import cli as engine_cli
from engine.store.run_log import default_logs_dir

app = engine_cli.new_app()
app.registered_commands = engine_cli.app.registered_commands  # the headless commands, shared as they are


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    logs: engine_cli.LogsOption = None,
    data_dir: engine_cli.DataDirOption = None,
    metrics_port: engine_cli.MetricsPortOption = None,
    metrics_addr: engine_cli.MetricsAddrOption = None,
) -> None:
    """With no command, open the interactive lab."""
    engine_cli.share_logs(ctx, logs)
    if ctx.invoked_subcommand is None:
        from engine.outputs.prometheus import DEFAULT_ADDR
        from tui.app import run_app

        engine_cli.metrics_observers(metrics_port, metrics_addr)  # checked before the lab opens: one line, exit 2
        run_app(
            logs_dir=logs or default_logs_dir(),
            data_dir=str(data_dir) if data_dir else None,
            metrics_port=metrics_port,
            metrics_addr=(metrics_addr or DEFAULT_ADDR) if metrics_port is not None else None,
        )


def main() -> None:
    engine_cli.main(app)


if __name__ == "__main__":
    main()
