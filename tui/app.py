"""The Textual lab. (Placeholder until the TUI issue lands: shows what the lab will hold.)"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Static


class JouleLabApp(App):
    TITLE = "JouleLab"
    SUB_TITLE = "energy and accuracy of training mechanisms"
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("The interactive lab is being built. Meanwhile, run presets headless:\n\n"
                     "  joulelab run quick\n  joulelab run --help", id="placeholder")
        yield Footer()


def run_app() -> None:
    JouleLabApp().run()
