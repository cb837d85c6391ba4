"""Quitting while a run goes: stop it, or leave it running to completion in the background."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Footer, Static

from tui.screens.choice import ChoiceDialog

STOP, LEAVE, STAY = "stop", "leave", "stay"


class ConfirmQuit(ChoiceDialog):
    BINDINGS = [
        Binding("s", "choose('stop')", "Stop run and quit"),
        Binding("l", "choose('leave')", "Leave it running"),
        Binding("escape", "choose('stay')", "Stay"),
    ]

    def __init__(self, what: str, log_path: str) -> None:
        super().__init__()
        self.what = what
        self.log_path = log_path

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog", classes="dialog"):
            yield Static(
                Text.assemble(
                    ("A run is in progress", "bold"),
                    f"\n{self.what}\n\n",
                    "Stop it (it is cancelled, its partial log is kept), or leave it running: "
                    "the worker finishes on its own and writes its complete log to\n",
                    (self.log_path, "bold"),
                    "\n(see it later in History).",
                )
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop run  s", variant="error", compact=True, id="stop")
                yield Button("Leave running  l", variant="primary", compact=True, id="leave")
                yield Button("Stay  esc", compact=True, id="stay")
        yield Footer(compact=True)
