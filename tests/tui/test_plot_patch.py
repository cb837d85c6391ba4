"""The patch over textual-plot and textual-hires-canvas (tui/widgets/plot_patch.py) against the
libraries installed: the versions are the pinned ones, and every private name the patch uses and
every method it overrides is still there with the same parameters. An upgrade that moves any of
them fails here, by name, rather than as a blank graph in the lab."""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version

import pytest
from textual.app import App, ComposeResult
from textual_hires_canvas import Canvas
from textual_plot import PlotWidget

from tests.helpers import REPO
from tui.widgets.plot_patch import PRIVATE_USED, PatchedCanvas, PatchedPlot


def pinned() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(m.groups() for d in deps if (m := re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", d)))


@pytest.mark.parametrize("package", ["textual-plot", "textual-hires-canvas"])
def test_the_patched_libraries_are_pinned_and_installed_at_the_pin(package):
    pins = pinned()
    assert package in pins, f"{package} must be pinned exactly (==) in pyproject.toml: plot_patch.py patches it"
    assert version(package) == pins[package], (
        f"{package} {version(package)} is installed, {pins[package]} is pinned and tested: re-check "
        "tui/widgets/plot_patch.py against the new version, then move the pin"
    )


@pytest.mark.parametrize(
    ("ours", "base"),
    [(PatchedCanvas, Canvas), (PatchedPlot, PlotWidget)],
    ids=["canvas", "plot"],
)
def test_every_overridden_method_exists_upstream_with_the_same_parameters(ours, base):
    overridden = [n for n, v in vars(ours).items() if callable(v) and hasattr(base, n) and not n.startswith("__")]
    assert overridden, "the patch overrides nothing: is this the right class?"
    for name in overridden:
        ours_params = list(inspect.signature(getattr(ours, name)).parameters)
        base_params = list(inspect.signature(getattr(base, name)).parameters)
        assert ours_params[: len(base_params)] == base_params or ours_params == base_params, (
            f"{base.__name__}.{name}{inspect.signature(getattr(base, name))} changed; the patch has "
            f"{name}{inspect.signature(getattr(ours, name))}"
        )


class PlotApp(App[None]):
    def compose(self) -> ComposeResult:
        yield PatchedPlot()


async def test_every_private_name_the_patch_uses_is_still_there():
    app = PlotApp()
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        plot = app.query_one(PatchedPlot)
        canvases = list(plot.query(PatchedCanvas))
        assert len(canvases) == 4, "PlotWidget's layout changed: the patch composes four canvases"
        plot.plot_dataset([0.0, 1.0, 2.0], [1.0, 3.0, 2.0], style="white", dashed=True)
        plot.render_pending()
        await pilot.pause()
        missing = [f"PlotWidget.{n}" for n in PRIVATE_USED[PlotWidget] if not hasattr(plot, n)]
        missing += [f"Canvas.{n}" for n in PRIVATE_USED[Canvas] if not hasattr(canvases[0], n)]
        assert missing == [], f"private names the patch uses are gone: {missing}"
        # and the patch still draws: the dashed series left marks on the plot's canvas
        canvas = plot.query_one("#plot", Canvas)
        assert any(ch.strip() for row in canvas._buffer for ch in row)
