"""Export runs through engine.outputs.export.write (the same writer as `joulelab export`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from engine.outputs.export import FORMATS


@dataclass(frozen=True)
class ExportRequest:
    fmt: str
    out: Path


def default_out(logs_dir: Path, fmt: str, stamp: str) -> Path:
    base = Path(logs_dir).parent / "exports" / stamp
    return base / ("joulelab.json" if fmt == "json" else "emissions.csv" if fmt == "codecarbon" else "")


class ExportDialog(ModalScreen[ExportRequest | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, count: int, logs_dir: Path, stamp: str) -> None:
        super().__init__()
        self.count = count
        self.logs_dir = logs_dir
        self.stamp = stamp

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="export-dialog"):
            yield Static(f"Export {self.count} run{'s' if self.count != 1 else ''}", classes="dialog-title")
            with Horizontal(classes="form-row"):
                yield Label("Format", classes="form-label")
                yield Select([(f, f) for f in FORMATS], value="csv", allow_blank=False, compact=True, id="format")
            with Horizontal(classes="form-row"):
                yield Label("To", classes="form-label")
                yield Input(str(default_out(self.logs_dir, "csv", self.stamp)), compact=True, id="out")
            yield Static(
                "csv and parquet: a folder (one file per table: runs, phases, samples, curve); "
                "json and codecarbon: a file",
                classes="dialog-note",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export  enter", variant="primary", compact=True, id="ok")
                yield Button("Cancel  esc", compact=True, id="cancel")
        yield Footer(compact=True)

    @on(Select.Changed, "#format")
    def _format(self, event: Select.Changed) -> None:
        out = self.query_one("#out", Input)
        out.value = str(default_out(self.logs_dir, str(event.value), self.stamp))
        out.focus()  # a format chosen: the next Enter exports, rather than reopening the list

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        out = self.query_one("#out", Input).value.strip()
        if not out:
            self.notify("Give a path to export to", severity="error")
            return
        self.dismiss(ExportRequest(str(self.query_one("#format", Select).value), Path(out).expanduser()))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
