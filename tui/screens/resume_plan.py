"""An interrupted plan found at start-up: finish it, set it aside, or decide later."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Footer, Static

from tui.screens.choice import ChoiceDialog

FINISH, SET_ASIDE, LATER = "finish", "set-aside", "later"


class ResumePlan(ChoiceDialog):
    BINDINGS = [
        Binding("f", "choose('finish')", "Finish it"),
        Binding("d", "choose('set-aside')", "Set aside"),
        Binding("escape", "choose('later')", "Not now"),
    ]

    def __init__(self, description: str, path: str) -> None:
        super().__init__()
        self.description = description
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="resume-dialog", classes="dialog"):
            yield Static(
                Text.assemble(
                    ("A plan was interrupted", "bold"),
                    f"\n{self.description}\n\n",
                    "Finish it: runs still going are followed, the others start now. "
                    "Set it aside: it is not offered again. Its record: ",
                    (self.path, "dim"),
                )
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Finish it  f", variant="primary", compact=True, id=FINISH)
                yield Button("Set aside  d", compact=True, id=SET_ASIDE)
                yield Button("Not now  esc", compact=True, id=LATER)
        yield Footer(compact=True)
