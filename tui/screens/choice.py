"""A modal question answered by a key or a button: the answer is the key's action argument or the
pressed button's id, and the screen is dismissed with it."""

from __future__ import annotations

from textual import on
from textual.screen import ModalScreen
from textual.widgets import Button


class ChoiceDialog(ModalScreen[str]):
    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)
