"""The lab's choices: dataset, network size, training mode, mechanisms and the few numbers."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from engine.core.errors import JouleLabError
from engine.core.settings import env_var
from engine.core.spec import RunSpec
from engine.orchestrate.presets import UserNetwork, load_networks
from tui.lab_plan import DATASET_LABELS, DEVICE_CHOICES, MODE_CHOICES, SIZE_CHOICES, LabChoice

NO_LOADERS = "real loaders not installed"


class Tick(Checkbox):
    """A checkbox whose mark says its state without colour (X or blank), for NO_COLOR terminals."""

    @property
    def _button(self) -> Content:
        self.BUTTON_INNER = "X" if self.value else " "
        return super()._button


class NumberField(Input):
    """A number field that takes only what a number is made of. Every other key falls through to
    the screen, so r, x, q and the tab letters work while it has focus; Escape leaves it."""

    BINDINGS = [Binding("escape", "leave", "Leave field", show=False)]
    CHARS = {"integer": "0123456789-+", "number": "0123456789-+.eE"}

    def check_consume_key(self, key: str, character: str | None) -> bool:
        return character is not None and character in self.CHARS.get(self.type, "")

    def action_leave(self) -> None:
        run = self.screen.query_one("#run", Button)
        if run.disabled:
            self.screen.set_focus(None)
        else:
            run.focus()


HELP = Text.assemble(
    ("What the choices mean\n", "bold"),
    ("scratch", "bold"),
    "  trains the network on the target people from random weights.\n",
    ("transfer", "bold"),
    "  starts from a network pretrained on other people (measured, or reused from the "
    "cache with its cost), freezes its features and trains a new head.\n",
    ("fine-tune", "bold"),
    "  as transfer, but trains every layer, at a lower learning rate.\n",
    ("transfer vs scratch", "bold"),
    "  runs both per trial with the same seed and compares them (ratios with 95 % intervals, and a verdict).\n",
    ("Mechanisms", "bold"),
    "  are measured against the plain baseline: normalization of the inputs, "
    "batch-norm layers, augmentation of the training windows, pruning 50 % of the "
    "weights then fine-tuning.\n",
    ("Processes", "bold"),
    "  above 1 trains data-parallel (DDP) over that many processes, one GPU each on CUDA; "
    "one of them meters the machine for all.\n",
    ("Keys", "bold"),
    "  work from every field: number fields take digits only, so letters are the "
    "lab's keys there too; Escape leaves a field.\n",
    ("Energy", "bold"),
    "  is net of the idle baseline measured before each run; ~ marks an estimate, "
    "made where no hardware counter could be read, and never shown as a measurement.",
    style="dim",
)


class FormError(JouleLabError):
    """A value in the form that cannot be run; the message names the field."""

    def __init__(self, message: str, short: str | None = None) -> None:
        super().__init__(message)
        self.short = short or message


def dataset_options(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    options = []
    for e in entries:
        name = e["name"]
        label = DATASET_LABELS.get(name, name)
        if e.get("checking"):
            label = f"{label} (checking…)"
        elif not e.get("found"):
            label = f"{label} (not available)"
        options.append((label, name))
    return options


def dataset_reason(entry: dict[str, Any], full: bool = False) -> str:
    """Why a dataset cannot be used, and how to get it: in two lines, or (full) the locator's
    whole message with every path and fix."""
    label = DATASET_LABELS.get(entry["name"], entry["name"])
    problem = entry.get("reason") or entry.get("problem") or "not found"
    prefix = f"{entry['name']}: "
    problem = problem.removeprefix(prefix)
    if full:
        return f"{label}: {problem}" + (
            f" (get it: {entry['get']})" if entry.get("get") and entry["get"].split()[0] not in problem else ""
        )
    why = problem.split(";")[0]
    text = f"{label} not available: {why}."
    if entry.get("get"):
        text += f" Get it: {entry['get']}"
        if entry.get("looked_in"):
            text += f", into {entry['looked_in']}/ (or set --data-dir / {env_var('data')})"
    return text


def size_options(networks: list[UserNetwork]) -> list[tuple[str, str]]:
    """small and big, then each network of the user's own in both sizes ("mine small (nets:tiny)":
    value "mine/small"; the factory is told the size; keys name it by its factory, "tiny-small")."""
    return list(SIZE_CHOICES) + [
        (f"{n.name} {size} ({n.model})", f"{n.name}/{size}") for n in networks for _, size in SIZE_CHOICES
    ]


def read_networks() -> tuple[list[UserNetwork], str | None]:
    """The user's networks from networks.toml in the lab's config folder, or none and why."""
    try:
        return load_networks(), None
    except JouleLabError as exc:
        return [], str(exc)


def fallback_entries(note: str = NO_LOADERS) -> list[dict[str, Any]]:
    return [
        {"name": "synthetic", "found": True},
        {"name": "motionsense", "found": False, "reason": note},
        {"name": "extrasensory", "found": False, "reason": note},
    ]


class LabForm(Vertical):
    """Choices in focus order: selectors, mechanisms, numbers, then Run and Cancel."""

    def __init__(self, defaults: dict[str, Any] | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        base = RunSpec()
        defaults = defaults or {}
        self._epochs = defaults.get("epochs", base.epochs)
        self._sample_hz = defaults.get("sample_hz", base.sample_hz)
        # Until engine.worker.data.locate has answered, the real datasets are "checking…", not missing.
        self.entries: list[dict[str, Any]] = [
            {**e, "checking": True} if not e["found"] else e for e in fallback_entries()
        ]
        self.networks, self.networks_problem = read_networks()

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label("Dataset", classes="form-label")
            yield Select(
                dataset_options(self.entries), value="synthetic", allow_blank=False, compact=True, id="dataset"
            )
        yield Static("", id="dataset-note")
        with Horizontal(classes="form-row"):
            yield Label("Network", classes="form-label")
            yield Select(size_options(self.networks), value="small", allow_blank=False, compact=True, id="size")
        if self.networks_problem:
            yield Static(Text(self.networks_problem, style="bold yellow"), id="networks-note")
        with Horizontal(classes="form-row"):
            yield Label("Mode", classes="form-label")
            yield Select(list(MODE_CHOICES), value=MODE_CHOICES[0][1], allow_blank=False, compact=True, id="mode")
        with Horizontal(classes="form-row"):
            yield Label("Mechanisms", classes="form-label")
            yield Tick("normalize", True, compact=True, id="normalize")
            yield Tick("batch-norm", True, compact=True, id="batchnorm")
            yield Tick("augment", False, compact=True, id="augment")
            yield Tick("prune 50%", False, compact=True, id="prune")
        with Horizontal(classes="form-row"):
            yield Label("Epochs", classes="form-label")
            yield NumberField(str(self._epochs), type="integer", compact=True, id="epochs", classes="number")
            yield Label("Trials", classes="form-label-inline")
            yield NumberField("1", type="integer", compact=True, id="trials", classes="number")
            yield Label("Sampling Hz", classes="form-label-inline")
            yield NumberField(f"{self._sample_hz:g}", type="number", compact=True, id="sample-hz", classes="number")
        with Horizontal(classes="form-row"):
            yield Label("Device", classes="form-label")
            yield Select(list(DEVICE_CHOICES), value="auto", allow_blank=False, compact=True, id="device")
            yield Label("Processes", classes="form-label-inline")
            yield NumberField("1", type="integer", compact=True, id="procs-per-node", classes="number")
        yield Static("", id="plan-preview")
        with Horizontal(id="lab-buttons"):
            yield Button("Run  r", variant="primary", compact=True, id="run")
            yield Button("Cancel  x", variant="error", compact=True, id="cancel", disabled=True)
        yield Static("", id="lab-error")
        yield Static(HELP, id="lab-help")

    def on_mount(self) -> None:
        self.preview()

    # -- datasets ------------------------------------------------------------------------
    def set_datasets(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        select = self.query_one("#dataset", Select)
        current = select.value
        select.set_options(dataset_options(entries))
        select.value = current if any(e["name"] == current for e in entries) else "synthetic"
        self._dataset_note()

    def _dataset_note(self) -> None:
        chosen = self.query_one("#dataset", Select).value
        entry = next((e for e in self.entries if e["name"] == chosen), None)
        missing = [e for e in self.entries if not e.get("found")]
        note = self.query_one("#dataset-note", Static)
        if any(e.get("checking") for e in self.entries):
            note.update(Text("checking which real datasets are here…", style="dim"))
        elif entry is not None and not entry.get("found"):
            note.update(Text(dataset_reason(entry), style="bold yellow"))
        elif missing:
            names = ", ".join(DATASET_LABELS.get(e["name"], e["name"]) for e in missing)
            note.update(Text(f"{names}: not available (choose one to see why and how to get it)", style="dim"))
        else:
            note.update("")

    # -- values --------------------------------------------------------------------------
    def choice(self) -> LabChoice:
        """The form as a LabChoice; FormError names the first field that cannot be used."""
        dataset = self._selected("dataset")
        entry = next((e for e in self.entries if e["name"] == dataset), None)
        if entry is not None and entry.get("checking"):
            label = DATASET_LABELS.get(dataset, dataset)
            raise FormError(f"{label}: still checking whether it is here; press r again in a moment")
        if entry is not None and not entry.get("found"):
            label = DATASET_LABELS.get(dataset, dataset)
            raise FormError(
                dataset_reason(entry, full=True),
                short=f"{label} is not available here (see above); choose an available dataset",
            )
        epochs = self._int("epochs", "Epochs", 1, 10_000)
        trials = self._int("trials", "Trials", 1, 100)
        procs = self._int("procs-per-node", "Processes", 1, 1024)
        raw = self.query_one("#sample-hz", Input).value.strip()
        try:
            hz = float(raw)
        except ValueError:
            raise FormError(f"Sampling Hz: {raw!r} is not a number (0.1 to 100)") from None
        if not 0.1 <= hz <= 100:
            raise FormError(f"Sampling Hz: {hz:g} is outside 0.1 to 100")
        box = {
            name: self.query_one(f"#{name}", Checkbox).value for name in ("normalize", "batchnorm", "augment", "prune")
        }
        network, _, size = self._selected("size").rpartition("/")
        chosen = next((n for n in self.networks if n.name == network), None)
        return LabChoice(
            dataset=dataset,
            size=size,
            model=chosen.model if chosen else None,
            model_dir=chosen.folder if chosen else None,
            mode=self._selected("mode"),
            epochs=epochs,
            trials=trials,
            sample_hz=hz,
            device=self._selected("device"),
            procs_per_node=procs,
            **box,
        )

    def _selected(self, widget_id: str) -> str:
        """A selector's value: one of its options (none of the form's selectors allows a blank)."""
        value = self.query_one(f"#{widget_id}", Select).value
        if not isinstance(value, str):
            raise FormError(f"{widget_id}: nothing chosen")
        return value

    def _int(self, widget_id: str, label: str, low: int, high: int) -> int:
        raw = self.query_one(f"#{widget_id}", Input).value.strip()
        try:
            value = int(raw)
        except ValueError:
            raise FormError(f"{label}: {raw!r} is not a whole number ({low} to {high})") from None
        if not low <= value <= high:
            raise FormError(f"{label}: {value} is outside {low} to {high}")
        return value

    def preview(self) -> None:
        preview = self.query_one("#plan-preview", Static)
        try:
            choice = self.choice()
        except FormError as exc:
            preview.update(Text(exc.short, style="bold red"))
            return
        runs = 2 * choice.trials if choice.mode == "paired" else choice.trials
        what = (
            "per trial: transfer, then scratch with the same seed; compared by engine.analysis.stats"
            if choice.mode == "paired"
            else f"{choice.mode}, one per trial"
        )
        preview.update(
            Text.assemble(
                ("Run ", "dim"),
                (f"{runs} worker{'s' if runs > 1 else ''}", "bold"),
                (f" ({what}); mechanisms: {choice.mechanism}", "dim"),
            )
        )

    def set_running(self, running: bool) -> None:
        self.query_one("#run", Button).disabled = running
        self.query_one("#cancel", Button).disabled = not running

    def show_error(self, message: str | None) -> None:
        self.query_one("#lab-error", Static).update(Text(message or "", style="bold red"))

    @on(Select.Changed)
    @on(Checkbox.Changed)
    @on(Input.Changed)
    def _changed(self, event: Select.Changed | Checkbox.Changed | Input.Changed) -> None:
        if isinstance(event, Select.Changed) and event.select.id == "dataset":
            self._dataset_note()
        self.show_error(None)
        self.preview()
