"""Presets: pick a preset file and run its matrix from the lab, one worker at a time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from engine.orchestrate import presets
from engine.store.run_log import RunRecord
from tui import fmt
from tui.lab_plan import DATASET_LABELS

if TYPE_CHECKING:
    from textual import getters

    from tui.app import JouleLabApp


class PresetList(OptionList):
    BINDINGS = [
        Binding("enter", "run", "Run preset"),
        Binding("o", "open_file", "Open file"),
        Binding("u", "slurm", "Submit to Slurm"),
    ]

    class Requested(Message):
        def __init__(self, what: str) -> None:
            super().__init__()
            self.what = what

    def action_run(self) -> None:
        self.post_message(self.Requested("run"))

    def action_open_file(self) -> None:
        self.post_message(self.Requested("open"))

    def action_slurm(self) -> None:
        self.post_message(self.Requested("slurm"))


class SlurmJobsChanged(Message):
    """The Slurm follower's latest look at the submitted jobs (posted from its thread)."""

    def __init__(self, lines: list[str], finished: bool = False, error: str | None = None) -> None:
        super().__init__()
        self.lines, self.finished, self.error = lines, finished, error


# Fields that make one run of a spec differ from another of the same work: not part of the match.
NOT_WORK = {"run_id", "seed", "logs_dir", "config", "preset", "batch", "data_dir", "tdp_w"}


# A spec's work: its fields but those above, as sorted (name, repr of value) pairs.
WorkKey = tuple[tuple[str, str], ...]


def work_key(spec: dict[str, Any]) -> WorkKey:
    return tuple(sorted((k, repr(v)) for k, v in spec.items() if k not in NOT_WORK))


def past_durations(records: list[RunRecord]) -> dict[WorkKey, list[float]]:
    """Seconds each kind of work took on this machine: complete runs on this host, by work key."""
    import socket

    host = socket.gethostname()
    found: dict[WorkKey, list[float]] = {}
    for r in records:
        s = r.summary
        if r.status == "complete" and s is not None and s.duration_s and (s.host or host) == host:
            found.setdefault(work_key(s.spec or r.spec), []).append(s.duration_s)
    return found


def estimate(planned: list[presets.PlannedRun], durations: dict[WorkKey, list[float]]) -> float | None:
    """The plan's duration from past runs of the same work here, or None if any run is new."""
    total = 0.0
    for p in planned:
        seen = durations.get(work_key(p.spec.to_dict()))
        if not seen:
            return None
        total += sum(seen) / len(seen)
    return total


def describe(path: Path, durations: dict[WorkKey, list[float]] | None = None) -> tuple[str, str, set[str]]:
    """(one line for the list, the details, the datasets it needs) for a preset file; a broken
    file says why. The line says how many runs, and how long they took here before (or unknown)."""
    try:
        loaded = presets.load(str(path))
    except presets.PresetError as exc:
        return f"{path.stem}  (cannot be used)", str(exc), set()
    planned = loaded.plan()
    runs = len(planned)
    took = estimate(planned, durations or {})
    how_long = f"~{fmt.duration(took)}" if took is not None else "duration unknown"
    keys = "\n".join(f"  {c.key}" for c in loaded.configs)
    details = (
        f"{loaded.name}: {loaded.description}\n{path}\n{len(loaded.configs)} configurations x "
        f"{loaded.trials} trial{'s' if loaded.trials != 1 else ''} = {runs} runs:\n{keys}"
    )
    details += (
        "\nestimated from past runs of the same specs on this machine"
        if took is not None
        else "\nno past run of some of its specs on this machine: duration unknown"
    )
    return (
        f"{loaded.name}  {runs} run{'s' if runs != 1 else ''}  {how_long}  {loaded.description}",
        details,
        {c.dataset for c in loaded.configs},
    )


class PresetsView(Vertical):
    if TYPE_CHECKING:
        app = getters.app(JouleLabApp)  # for mypy: self.app is the lab (declared only; no import at run time)

    def __init__(self, paths: list[Path], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.paths = list(paths)
        self.details: dict[str, str] = {}
        self.needs: dict[str, set[str]] = {}
        self.missing: dict[str, str] = {}  # dataset -> why it is not available here
        self.durations: dict[WorkKey, list[float]] = {}  # past runs here, for the estimates

    def compose(self) -> ComposeResult:
        yield Static(
            Text.assemble(("Presets", "bold"), ("  run one worker at a time, each streamed to the Live tab", "dim")),
            id="presets-title",
        )
        yield PresetList(id="preset-list")
        yield Static("", id="preset-details")
        yield Static("", id="preset-slurm")

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        option_list = self.query_one(PresetList)
        option_list.clear_options()
        for path in self.paths:
            line, details, needs = describe(path, self.durations)
            self.details[str(path)] = details
            self.needs[str(path)] = needs
            lacking = sorted(needs & set(self.missing))
            if lacking:
                line += f"  (needs {', '.join(DATASET_LABELS.get(d, d) for d in lacking)}: not available)"
            option_list.add_option(Option(line, id=str(path)))
        if self.paths:
            option_list.highlighted = 0
        else:
            self.query_one("#preset-details", Static).update("No preset files found.")

    def add_path(self, path: Path) -> None:
        if path not in self.paths:
            self.paths.append(path)
        self.reload()
        self.query_one(PresetList).highlighted = self.paths.index(path)

    def set_datasets(self, entries: list[dict[str, Any]]) -> None:
        self.missing = {
            e["name"]: e.get("reason") or e.get("problem") or "not found" for e in entries if not e.get("found")
        }
        highlighted = self.query_one(PresetList).highlighted
        self.reload()
        if highlighted is not None and self.paths:
            self.query_one(PresetList).highlighted = min(highlighted, len(self.paths) - 1)

    def set_history(self, records: list[RunRecord]) -> None:
        """Past runs (engine.store.run_log records): each preset's line says how long it took here."""
        self.durations = past_durations(records)
        highlighted = self.query_one(PresetList).highlighted
        self.reload()
        if highlighted is not None and self.paths:
            self.query_one(PresetList).highlighted = min(highlighted, len(self.paths) - 1)

    def unavailable(self, path: Path) -> str | None:
        """Why the preset cannot run here (a dataset it needs is missing), or None."""
        lacking = sorted(self.needs.get(str(path), set()) & set(self.missing))
        if not lacking:
            return None
        reasons = []
        for d in lacking:
            why = self.missing[d].split(";")[0]
            why = why[len(d) + 2 :] if why.startswith(f"{d}: ") else why
            reasons.append(f"{DATASET_LABELS.get(d, d)}: {why}")
        return "; ".join(reasons) + " (choose it on the Lab tab to see how to get it)"

    @property
    def highlighted(self) -> Path | None:
        index = self.query_one(PresetList).highlighted
        return self.paths[index] if index is not None and 0 <= index < len(self.paths) else None

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.query_one("#preset-details", Static).update(Text(self.details.get(event.option.id or "", ""), style="dim"))

    # -- Slurm: `u` submits the highlighted preset, one job per pair, and follows its jobs here --
    @on(PresetList.Requested)
    def _slurm_request(self, message: PresetList.Requested) -> None:
        if message.what != "slurm":
            return  # run and open are the app's
        message.stop()
        path = self.highlighted
        if path is None:
            return
        self.query_one("#preset-slurm", Static).update(Text(f"submitting {path.stem} to Slurm…", style="bold"))
        self.submit_to_slurm(path)

    @work(thread=True, exclusive=True, group="slurm", exit_on_error=False)
    def submit_to_slurm(self, path: Path) -> None:
        """Submit and follow, in a thread; post what happens, never touch a widget."""
        import time

        from textual.worker import get_current_worker

        from engine.orchestrate import slurm

        logs_dir = Path(getattr(self.app, "logs_dir", "logs")).resolve()
        options = slurm.SlurmOptions()
        try:
            slurm.check_cluster(options)
            overrides = {"logs_dir": str(logs_dir)}
            if getattr(self.app, "data_dir", None):
                overrides["data_dir"] = str(self.app.data_dir)
            loaded = presets.load(str(path), overrides)
            record = slurm.submit_plan(loaded.plan(), options, logs_dir, loaded.name)
        except (slurm.SlurmError, presets.PresetError, OSError) as exc:
            self.post_message(SlurmJobsChanged([], True, str(exc)))
            return
        follower = slurm.Follower(record)
        head = f"Slurm batch {record['batch']} ({options.describe()}); `joulelab jobs` lists it"
        while not get_current_worker().is_cancelled:
            try:
                views = follower.poll()
            except slurm.SlurmError:
                time.sleep(1.0)
                continue
            finished = not any(v.state in slurm.ACTIVE for v in views)
            self.post_message(SlurmJobsChanged([head] + [v.line() for v in views], finished))
            if finished:
                return
            time.sleep(1.0)

    @on(SlurmJobsChanged)
    def _slurm_jobs_changed(self, message: SlurmJobsChanged) -> None:
        box = self.query_one("#preset-slurm", Static)
        if message.error:
            box.update(Text(f"Slurm: {message.error}", style="bold red"))
            self.app.notify(message.error, title="Cannot submit to Slurm", severity="error", timeout=10)
            return
        text = "\n".join(message.lines)
        if message.finished:
            text += "\nall jobs ended: their runs are in History (g reloads; m compares)"
        box.update(Text(text))
