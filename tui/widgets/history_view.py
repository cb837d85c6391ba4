"""Past runs from the logs directory: reopen one, select several to compare or export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from engine.core.records import ConfigKey
from engine.outputs.tables import STATUS_STYLE, energy_cell, short_key
from engine.store.run_log import RunRecord, list_runs
from tui import fmt


class HistoryTable(DataTable[str | Text]):
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("space", "toggle_selected", "Select", key_display="␣"),
        Binding("m", "compare", "Compare"),
        Binding("e", "export", "Export"),
        Binding("g", "reload", "Reload"),
    ]

    class Requested(Message):
        def __init__(self, what: str) -> None:
            super().__init__()
            self.what = what

    def action_open(self) -> None:
        self.post_message(self.Requested("open"))

    def action_toggle_selected(self) -> None:  # not action_toggle: that is every DOMNode's toggle(attribute)
        self.post_message(self.Requested("toggle"))

    def action_compare(self) -> None:
        self.post_message(self.Requested("compare"))

    def action_export(self) -> None:
        self.post_message(self.Requested("export"))

    def action_reload(self) -> None:
        self.post_message(self.Requested("reload"))


def _train_j(record: RunRecord) -> str:
    """The train cell exactly as `joulelab runs` shows it: marked (gap) or (below idle)."""
    return energy_cell(record.summary.total("train") if record.summary is not None else None)


def _accuracy(record: RunRecord) -> str:
    return fmt.percent(record.summary.metrics.accuracy_frac if record.summary is not None else None)


class HistoryView(Vertical):
    def __init__(self, logs_dir: Path, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.logs_dir = Path(logs_dir)
        self.records: list[RunRecord] = []
        self.selected: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Static("", id="history-title")
        table = HistoryTable(id="history-table", cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        table = self.query_one(HistoryTable)
        # Most telling first, so an 80-column terminal shows what matters; the run id (its start
        # time, already the order: newest first) comes last and may scroll.
        for key, label in (
            ("sel", " "),
            ("config", "configuration"),
            ("status", "status"),
            ("acc", "acc"),
            ("train", "train J"),
            ("seed", "seed"),
            ("run", "run id"),
        ):
            table.add_column(label, key=key)
        self.reload()

    @property
    def table(self) -> HistoryTable:
        return self.query_one(HistoryTable)

    def reload(self) -> None:
        self.records = list(reversed(list_runs(self.logs_dir)))  # newest first
        ids = {r.run_id for r in self.records}
        self.selected &= ids
        table = self.table
        cursor = table.cursor_row
        # the highlighted run stays highlighted when new runs come in above it
        kept = self.highlighted_id
        table.clear()
        for r in self.records:
            s = r.summary
            config = (s.config if s is not None else None) or r.spec.get("config") or _describe(r.spec)
            config = short_key(config, s is not None and s.synthetic)
            status = r.status if r.status == "complete" else f"{r.status} in {r.last_phase or 'setup'}"
            table.add_row(
                self._mark(r.run_id),
                config,
                Text(status, style=STATUS_STYLE.get(r.status, "")),
                _accuracy(r),
                _train_j(r),
                str(r.spec.get("seed", "")),
                r.run_id,
                key=r.run_id,
            )
        if self.records:
            row = next((i for i, r in enumerate(self.records) if r.run_id == kept), min(cursor, len(self.records) - 1))
            table.move_cursor(row=row)
        self._title()

    @property
    def highlighted_id(self) -> str | None:
        """The run id on the cursor's row as the table shows it now (before a reload)."""
        table = self.table
        if not table.row_count or not 0 <= table.cursor_row < table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _mark(self, run_id: str) -> str:
        return "✓" if run_id in self.selected else " "

    def _title(self) -> None:
        text = Text.assemble((f"{len(self.records)} runs", "bold"), f" in {self.logs_dir}")
        if self.selected:
            text.append(f"   {len(self.selected)} selected", style="bold")
        text.append("  newest first; * synthetic data, ~ modelled energy", style="dim")
        self.query_one("#history-title", Static).update(text)

    @property
    def highlighted(self) -> RunRecord | None:
        if not self.records:
            return None
        row = self.table.cursor_row
        return self.records[row] if 0 <= row < len(self.records) else None

    def toggle(self) -> None:
        record = self.highlighted
        if record is None:
            return
        self.selected ^= {record.run_id}
        self.table.update_cell(record.run_id, "sel", self._mark(record.run_id))
        self._title()

    def chosen(self) -> list[RunRecord]:
        """The selected runs, or the highlighted one when none is selected."""
        if self.selected:
            return [r for r in self.records if r.run_id in self.selected]
        record = self.highlighted
        return [record] if record else []


def _describe(spec: dict[str, Any]) -> str:
    """The key of an old run that recorded none, from its spec ("?" for what it lacks)."""
    return str(ConfigKey(*(str(spec.get(k, "?")) for k in ("dataset", "size", "mode"))))
