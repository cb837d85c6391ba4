"""The lab's main screen: five tabs, every action on a key shown in the footer.

The letter keys are priority bindings of this screen, so they work wherever focus is (the number
fields take digits only); dialogs are screens of their own, where these keys do not apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane

from tui.widgets.history_view import HistoryView
from tui.widgets.lab_form import LabForm
from tui.widgets.live_view import LiveView
from tui.widgets.presets_view import PresetsView
from tui.widgets.results_view import ResultsView

if TYPE_CHECKING:
    from textual import getters

    from tui.app import JouleLabApp

TABS = Binding.Group("Views", compact=True)  # the five tabs, and n: the message log
TAB_IDS = {
    "lab": "tab-lab",
    "live": "tab-live",
    "results": "tab-results",
    "history": "tab-history",
    "presets": "tab-presets",
}


class MainScreen(Screen[None]):
    if TYPE_CHECKING:
        app = getters.app(JouleLabApp)  # for mypy: self.app is the lab (declared only; no import at run time)

    AUTO_FOCUS = "#dataset"  # the first choice, not the tab bar: tab and shift+tab go on from here
    BINDINGS = [
        Binding("r", "app.run", "Run", priority=True),
        Binding("x", "app.cancel_run", "Cancel", priority=True),
        Binding("l", "show_tab('lab')", "Lab", group=TABS, priority=True),
        Binding("v", "show_tab('live')", "Live", group=TABS, priority=True),
        Binding("s", "show_tab('results')", "Results", group=TABS, priority=True),
        Binding("h", "show_tab('history')", "History", group=TABS, priority=True),
        Binding("p", "show_tab('presets')", "Presets", group=TABS, priority=True),
        Binding("n", "app.messages", "Messages", group=TABS, priority=True),
        Binding("q", "app.quit", "Quit", priority=True),
        # The Live graph's view: shown and active on the Live tab only.
        Binding("w", "graph('window')", "Window"),
        Binding("plus,equals_sign", "graph('in')", "Zoom", key_display="+"),
        Binding("minus", "graph('out')", "Unzoom", key_display="-"),
    ]

    def compose(self) -> ComposeResult:
        app = self.app
        yield Header()
        with TabbedContent(id="tabs", initial=TAB_IDS["lab"]):
            with TabPane("[u]L[/u]ab", id=TAB_IDS["lab"]):
                yield LabForm(app.spec_defaults, id="lab-form")
            with TabPane("Li[u]v[/u]e", id=TAB_IDS["live"]):
                yield LiveView(id="live")
            with TabPane("Re[u]s[/u]ults", id=TAB_IDS["results"]):
                yield ResultsView(id="results")
            with TabPane("[u]H[/u]istory", id=TAB_IDS["history"]):
                yield HistoryView(app.logs_dir, id="history")
            with TabPane("[u]P[/u]resets", id=TAB_IDS["presets"]):
                yield PresetsView(app.preset_paths, id="presets")
        yield Footer(compact=True)

    composed = False  # True once every tab's widgets are mounted: keys before that are ignored

    def on_mount(self) -> None:
        self.composed = True
        self.app.find_datasets()
        self.app.scan_logs()  # runs still going and unfinished plans: follow or offer to finish them
        self.app.start_watching()  # and runs that start or end from now on

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "graph":
            return self.composed and self.app.active_tab == "live"
        return self.composed

    def action_graph(self, how: str) -> None:
        self.app.live.graph.zoom(how)

    def action_show_tab(self, name: str) -> None:
        self.app.show_tab(name)

    def on_resize(self) -> None:
        self.set_class(self.size.height < 32, "-short")
        self.set_class(self.size.width < 110, "-narrow")
        self.set_class(self.size.width >= 140, "-wide")
        self.set_class(self.size.width < 70, "-tiny")
