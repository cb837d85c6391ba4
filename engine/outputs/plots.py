"""`joulelab plot`: power over time and energy-to-accuracy curves, as a PNG or SVG.

Modelled series are drawn dashed and labelled "(modelled)", so a picture never passes an
estimate off as a measurement.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from engine.core.errors import JouleLabError
from engine.outputs.export import curve_table, samples_table
from engine.store.run_log import RunRecord

LINESTYLE = {"counter": "-", "polled": "-.", "modelled": "--"}


class PlotError(JouleLabError):
    """A plot that cannot be made; one line."""


def run_names(records: list[RunRecord]) -> dict[str, str]:
    """Run id -> what a legend calls it: its configuration and seed, as the tables name runs
    ("synthetic/small/transfer/baseline s0"); the run id is added where two would read the same,
    and stands alone for a run that has no configuration."""
    names = {}
    for r in records:
        config = str(r.summary.key) if r.summary is not None else r.spec.get("config")
        seed = r.spec.get("seed")
        names[r.run_id] = f"{config} s{seed}" if config and seed is not None else r.run_id
    counts = Counter(names.values())
    return {rid: name if counts[name] == 1 or name == rid else f"{name} ({rid})" for rid, name in names.items()}


def plot_runs(records: list[RunRecord], out: Path) -> None:
    if out.suffix.lower() not in (".png", ".svg"):
        raise PlotError(f"{out}: the output must end in .png or .svg")
    import matplotlib

    matplotlib.use("Agg")  # no display needed (servers, SSH)
    import matplotlib.pyplot as plt

    samples, curve = samples_table(records), curve_table(records)
    if samples.empty and curve.empty:
        raise PlotError("the selected runs have no power samples or epochs to plot")
    names = run_names(records)
    fig, (ax_power, ax_curve) = plt.subplots(1, 2, figsize=(13, 4.8))
    for (run_id, domain), df in samples.groupby(["run_id", "domain"], sort=False):
        source = df["source"].iloc[0]
        label = f"{names.get(run_id, run_id)} {domain}" + (" (modelled)" if source == "modelled" else "")
        ax_power.plot(df["t_s"], df["watts"], LINESTYLE.get(source, "-"), label=label, linewidth=1)
    ax_power.set_xlabel("time since start (s)")
    ax_power.set_ylabel("power (W)")
    ax_power.set_title("Power per domain")
    for run_id, df in curve.groupby("run_id", sort=False):
        for phase, part in df.groupby("phase", sort=False):
            source = part["source"].iloc[0]
            label = f"{names.get(run_id, run_id)} {phase}" + (" (modelled)" if source == "modelled" else "")
            ax_curve.plot(
                part["cumulative_j"], 100 * part["val_accuracy"], LINESTYLE.get(source, "-"), marker="o", label=label
            )
    ax_curve.set_xlabel("cumulative energy in the phase (J)")
    ax_curve.set_ylabel("validation accuracy (%)")
    ax_curve.set_title("Energy to accuracy")
    for ax in (ax_power, ax_curve):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    except OSError as exc:
        raise PlotError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
