"""Write MotionSense's public files into the format of a dataset of your own, the door proven on known data.

    python examples/motionsense_to_custom.py ../shared/data/motionsense DATA_DIR [--name ms-own]

reads ``A_DeviceMotion_data/<act>_<trial>/sub_<n>.csv`` (as the official zip unpacks) and writes
``DATA_DIR/custom/<name>/data.npz`` with the arrays a dataset of your own has:

- ``x``: float32 windows (samples, 6 channels, 128 samples): gyroscope xyz and total acceleration
  xyz (userAcceleration + gravity), every 10 samples: the dataset authors' protocol, and the
  built-in loader's;
- ``label``: the subject (1-24), what the study identifies;
- ``time``: each window's first sample (trials one after another on one clock), for the order;
- ``split``: "train" or "test", MotionSense's own split as the built-in loader makes it: trials
  1-9 train and 11-16 test when both are present, otherwise each recording's first 80 % train and
  the rest test, with a gap of one window.

A study run on ``dataset = "<name>"`` then gives the same splits, class counts and, seed for seed,
the same accuracies as ``dataset = "motionsense"`` (tests/test_custom_motionsense.py shows it).
This script uses numpy and pandas only, as a script of your own would.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd

WINDOW, STRIDE, TRAIN_FRACTION = 128, 10, 0.8
LAST_TRAIN_TRIAL, FIRST_TEST_TRIAL = 9, 11
TRIAL_CLOCK = 10_000_000  # samples between the starts of two trials on the time axis


def windows(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, channels, WINDOW) windows of a (rows, channels) recording, and each one's first row."""
    starts = np.arange(0, len(signal) - WINDOW + 1, STRIDE)
    idx = starts[:, None] + np.arange(WINDOW)[None, :]
    return np.ascontiguousarray(signal[idx].transpose(0, 2, 1), dtype=np.float32), starts


def channels(path: Path) -> np.ndarray:
    """gyroscope xyz + (userAcceleration + gravity) xyz, float32, as MotionSense's own notebook."""
    raw = pd.read_csv(path).iloc[:, 1:].to_numpy(dtype=np.float64).astype(np.float32)
    return np.concatenate([raw[:, 6:9], raw[:, 9:12] + raw[:, 3:6]], axis=1)


def convert(motionsense: Path, data_dir: Path, name: str) -> Path:
    root = motionsense / "A_DeviceMotion_data"
    recordings = []  # (trial, folder, subject, path)
    for folder in root.iterdir():
        m = re.fullmatch(r"[a-z]+_(\d+)", folder.name)
        if folder.is_dir() and m:
            for csv in folder.glob("sub_*.csv"):
                recordings.append((int(m.group(1)), folder.name, int(csv.stem[4:]), csv))
    recordings.sort(key=lambda r: (r[0], r[1], r[2]))
    trials = sorted({r[0] for r in recordings})
    by_trial = any(t <= LAST_TRAIN_TRIAL for t in trials) and any(t >= FIRST_TEST_TRIAL for t in trials)

    xs, labels, times, splits = [], [], [], []
    for n, (trial, _folder, subject, path) in enumerate(recordings):
        signal = channels(path)
        if by_trial:
            parts = [(signal, 0, "train" if trial <= LAST_TRAIN_TRIAL else "test")]
        else:
            cut = int(len(signal) * TRAIN_FRACTION)
            parts = [(signal[:cut], 0, "train"), (signal[cut + WINDOW :], cut + WINDOW, "test")]
        for part, offset, split in parts:
            x, starts = windows(part)
            xs.append(x)
            labels.append(np.full(len(x), subject))
            times.append(n * TRIAL_CLOCK + offset + starts)
            splits.append(np.full(len(x), split))
    out = data_dir / "custom" / name
    out.mkdir(parents=True, exist_ok=True)
    np.savez(
        out / "data.npz",
        x=np.concatenate(xs),
        label=np.concatenate(labels),
        time=np.concatenate(times),
        split=np.concatenate(splits),
    )
    return out / "data.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("motionsense", type=Path, help="the folder holding A_DeviceMotion_data/")
    parser.add_argument("data_dir", type=Path, help="the data folder to write custom/<name>/data.npz into")
    parser.add_argument("--name", default="ms-own", help="the dataset's name in presets (default ms-own)")
    args = parser.parse_args()
    print(f"wrote {convert(args.motionsense, args.data_dir, args.name)}")


if __name__ == "__main__":
    main()
