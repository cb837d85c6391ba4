"""A synthetic, MotionSense-shaped dataset: the offline default, always labelled synthetic.

Each subject walks with a gait signature of their own: a step frequency, the harmonic content of
each axis, the phone's resting orientation in the pocket (the gravity direction) and how noisy
they are. Signatures are drawn from one population, so some subjects resemble each other and a
network has real work to do; feature detectors learned on one group transfer to another, as they
do on the real data. Recordings are 50 Hz, 6 channels (rotationRate xyz, userAcceleration+gravity
xyz), cut into windows exactly like MotionSense.
"""

from __future__ import annotations

import numpy as np

from engine.worker.data import PreparedData, Split, assemble, chronological_windows
from engine.worker.data.groups import check_groups, complete_groups

RATE_HZ = 50.0
CHANNELS = ("rotationRate.x", "rotationRate.y", "rotationRate.z", "acc.x", "acc.y", "acc.z")
HARMONICS = 3
TRAIN_FRACTION = 0.8


def _subject_recording(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """One subject's (time, 6) recording, from a signature drawn from the population."""
    n = int(seconds * RATE_HZ)
    step_hz = rng.uniform(1.5, 2.1)
    amplitudes = rng.gamma(2.0, 0.25, size=(6, HARMONICS)) * np.array([1.0, 0.6, 0.35])
    phases = rng.uniform(0, 2 * np.pi, size=(6, HARMONICS))
    gravity = rng.normal(size=3)
    gravity /= np.linalg.norm(gravity)
    noise = rng.uniform(0.15, 0.35)

    t = np.arange(n) / RATE_HZ
    # The pace drifts slowly within a walk (+-4 %), so no two windows are identical.
    drift = 1 + 0.04 * np.sin(2 * np.pi * t / rng.uniform(20, 40) + rng.uniform(0, 2 * np.pi))
    phase_t = 2 * np.pi * step_hz * np.cumsum(drift) / RATE_HZ
    signal = np.zeros((n, 6))
    for k in range(HARMONICS):
        signal += amplitudes[:, k] * np.sin((k + 1) * phase_t[:, None] + phases[:, k])
    signal[:, 3:] += gravity
    signal += rng.normal(scale=noise, size=signal.shape)
    return signal.astype(np.float32)


def subject_ids(n: int) -> list[str]:
    return [str(i) for i in range(1, n + 1)]


def load(
    subjects: int,
    seconds: float,
    window: int,
    stride: int,
    seed: int,
    source_group: tuple[str, ...] | None,
    target_group: tuple[str, ...] | None,
) -> PreparedData:
    ids = subject_ids(subjects)
    # The population is fixed (seed 0 of its own stream) so "subject 7" is the same person in every
    # run; the run's seed varies the recording noise, as a new session of the same people would.
    population = np.random.default_rng(np.random.SeedSequence([0x6A6F756C, 0]))
    signatures_seed = population.integers(0, 2**32, size=subjects)
    recordings = {}
    for sid, sig_seed in zip(ids, signatures_seed):
        sig_rng = np.random.default_rng(np.random.SeedSequence([int(sig_seed), seed]))
        recordings[sid] = _subject_recording(sig_rng, seconds)

    source, target, rule = complete_groups(ids, source_group, target_group, "subject")
    check_groups(source, target, ids, "synthetic")

    def split(group: tuple[str, ...]) -> Split:
        return assemble(
            [(sid, *chronological_windows(recordings[sid], window, stride, TRAIN_FRACTION)) for sid in group]
        )

    return PreparedData(
        name="synthetic",
        synthetic=True,
        kind="windows",
        source=split(source),
        target=split(target),
        info={
            "generator": "engine.worker.data.synthetic (per-subject gait signatures)",
            "subjects": subjects,
            "seconds_per_subject": seconds,
            "rate_hz": RATE_HZ,
            "channels": list(CHANNELS),
            "window": window,
            "stride": stride,
            "split": f"chronological {TRAIN_FRACTION:.0%} train / rest test per subject, gap of one window",
            "groups": rule,
            "source_group": list(source),
            "target_group": list(target),
        },
    )
