"""Keys from every widget, keys typed ahead of the screen, focus that follows the tab shown
(issue 14, item 0 and 1). Each test fails on the code before the fix."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual import events
from textual.widgets import Footer, Input

from tests.tui.conftest import fake_command, make_app, press, wait_for
from tui.screens.export_dialog import ExportDialog
from tui.screens.main import MainScreen


@pytest.mark.slow
async def test_keys_typed_while_the_lab_starts_are_never_fatal(logs: Path) -> None:
    app = make_app(logs)
    typed = []

    async def type_ahead() -> None:
        # From the moment the main screen exists, before its tabs are composed: tab, r, tab, r...
        while not (app.screen_stack and isinstance(app.screen_stack[0], MainScreen)):
            await asyncio.sleep(0)
        for key in ("tab", "r", "tab", "r", "v", "x"):
            typed.append(key)
            app.post_message(events.Key(key, key if len(key) == 1 else None))
            await asyncio.sleep(0)

    typist = asyncio.create_task(type_ahead())
    async with app.run_test(size=(80, 24)) as pilot:
        await typist
        await wait_for(pilot, lambda: app.ready, what="the main screen")
        await pilot.pause()
        assert typed == ["tab", "r", "tab", "r", "v", "x"]
        assert app._exception is None and app.is_running  # ignored or done, never fatal
        await wait_for(pilot, lambda: not app.running, what="any typed-ahead run to finish")
        await press(pilot, "l", "r")  # and the lab works afterwards
        await wait_for(pilot, lambda: app.live.statuses.get(0) == "complete", what="a run")


@pytest.mark.slow
async def test_letters_in_a_number_field_are_global_keys_and_escape_leaves_it(logs: Path) -> None:
    app = make_app(logs)
    async with app.run_test(size=(100, 30)) as pilot:
        epochs = app.screen.query_one("#epochs", Input)
        epochs.focus()
        await pilot.pause()
        footer = app.screen.query_one(Footer)
        keys = {b.key for _, b, _, _ in app.screen.active_bindings.values()}
        assert {"r", "q", "x", "l", "v", "s", "h", "p"} <= keys  # the footer keeps every key
        assert footer.display
        await press(pilot, "end", "backspace", "backspace", "backspace", "2")
        assert epochs.value == "2"
        await press(pilot, "escape")
        assert app.focused is not epochs  # Escape leaves the field
        epochs.focus()
        await pilot.pause()
        await press(pilot, "r")  # a letter in a digits-only field is the global key
        await wait_for(pilot, lambda: app.running or app.live.statuses, what="the run to start")
        assert "r" not in epochs.value
        await wait_for(pilot, lambda: not app.running, what="the run to end")
        assert app.live.plan is not None and app.live.plan.items[0].spec.epochs == 2
        assert app.active_tab == "results"  # Live, then the comparison: the lab tab was left


@pytest.mark.slow
async def test_keys_from_a_checkbox_open_live_and_a_run_shows_live(logs: Path) -> None:
    app = make_app(logs, fake_command("--hold"))
    async with app.run_test(size=(100, 30)) as pilot:
        app.screen.query_one("#augment").focus()
        await pilot.pause()
        await press(pilot, "v")
        assert app.active_tab == "live"  # not focus moving to the next checkbox
        await press(pilot, "l")
        app.screen.query_one("#augment").focus()
        await pilot.pause()
        await press(pilot, "r")
        await wait_for(pilot, lambda: app.running, what="the run")
        await pilot.pause()
        assert app.active_tab == "live"  # and Live stays shown
        await press(pilot, "x")
        await wait_for(pilot, lambda: not app.running, what="the cancel")


@pytest.mark.slow
async def test_a_click_on_the_history_tab_gives_the_table_the_keys(logs: Path) -> None:
    app = make_app(logs)
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, "r")
        await wait_for(
            pilot,
            lambda: (
                not app.running
                and len(app.live.statuses) == 2
                and all(s == "complete" for s in app.live.statuses.values())
            ),
            what="the runs",
        )
        await press(pilot, "l")
        await pilot.click("#--content-tab-tab-history")
        await wait_for(pilot, lambda: app.active_tab == "history", what="History")
        await wait_for(pilot, lambda: app.history.records, what="the history rows")
        assert app.focused is app.screen.query_one("#history-table")
        await press(pilot, "space", "e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportDialog), what="the export dialog")
        dialog = app.screen
        dialog.query_one("#format").focus()
        await pilot.pause()
        await press(pilot, "enter")  # opens the list
        await press(pilot, "down", "enter")  # chooses json; focus moves on to the path
        assert dialog.query_one("#out", Input).has_focus
        assert dialog.query_one("#out", Input).value.endswith("joulelab.json")


@pytest.mark.slow
async def test_focus_is_plainly_visible_without_colour(logs: Path, monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(logs)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        for selector, part in (("#dataset", "SelectCurrent"), ("#augment", None), ("#run", None)):
            widget = app.screen.query_one(selector)
            widget.focus()
            await pilot.pause()
            if part:
                style = widget.query_one(part).rich_style
            elif selector == "#augment":
                style = widget.get_component_rich_style("toggle--label")
            else:
                style = widget.rich_style
            assert style.reverse, (selector, style)  # reverse video: visible with or without colour
