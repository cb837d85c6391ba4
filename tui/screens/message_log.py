"""Every message the lab showed as a toast (an export's path, a failure), to read again."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

SEVERITY_STYLE = {"error": "bold red", "warning": "bold yellow", "information": ""}


class MessageLog(ModalScreen[None]):
    BINDINGS = [Binding("escape,n", "close", "Close")]

    def __init__(self, messages: list[tuple[str, str, str, str]]) -> None:
        super().__init__()
        self.messages = list(messages)

    def compose(self) -> ComposeResult:
        text = Text()
        for when, severity, title, message in self.messages:
            text.append(f"{when} ", style="dim")
            if title:
                text.append(f"{title}: ", style=SEVERITY_STYLE.get(severity, "") or "bold")
            text.append(message + "\n")
        with VerticalScroll(id="message-log", classes="dialog"):
            yield Static("Messages", classes="dialog-title")
            yield Static(text if self.messages else Text("No messages yet.", style="dim"), id="message-text")
        yield Footer(compact=True)

    def action_close(self) -> None:
        self.dismiss(None)
