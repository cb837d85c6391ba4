"""The configuration key, "dataset/size/mode/mechanism": the one place it is built and parsed."""

from __future__ import annotations

import re

import msgspec

BASELINE = "baseline"  # the mechanism of a key that names none (logs from before mechanisms)


class ConfigKey(msgspec.Struct, frozen=True):
    """What a run's configuration is, as keys and tables show it (size and mode carry their
    labels: "big-x16", "transfer-extend")."""

    dataset: str
    size: str
    mode: str
    mechanism: str = BASELINE

    def __str__(self) -> str:
        return f"{self.dataset}/{self.size}/{self.mode}/{self.mechanism}"

    @classmethod
    def of(
        cls,
        dataset: str,
        size: str,
        mode: str,
        mechanism: str,
        width: float = 1.0,
        transfer_head: str = "replace",
        network: str | None = None,
        procs_per_node: int = 1,
    ) -> ConfigKey:
        """The key of a run's settings, with the size's width, a user network's name, its
        processes per node and the transfer head in its labels."""
        return cls(
            dataset, size_label(size, width, network, procs_per_node), mode_label(mode, transfer_head), mechanism
        )

    @property
    def across_modes(self) -> str:
        """The group whose configurations differ only in mode (transfer is compared with scratch)."""
        return f"{self.dataset}/{self.size}/{self.mechanism}"

    @property
    def across_mechanisms(self) -> str:
        """The group whose configurations differ only in mechanism (each against the baseline)."""
        return f"{self.dataset}/{self.size}/{self.mode}"

    @classmethod
    def parse(cls, key: str) -> ConfigKey:
        """A key as written in logs; older keys without a mechanism are the baseline."""
        parts = key.split("/")
        parts += [BASELINE] * (4 - len(parts))
        return cls(parts[0], parts[1], parts[2], parts[3])

    @property
    def procs_per_node(self) -> int:
        """The data-parallel processes per node its size label carries ("small-p2": 2; else 1)."""
        match = PROCS_SUFFIX.search(self.size)
        return int(match.group(1)) if match else 1

    def with_procs_per_node(self, procs: int) -> ConfigKey:
        """The same configuration at `procs` processes per node (1: the single-process run)."""
        size = PROCS_SUFFIX.sub("", self.size)
        return ConfigKey(self.dataset, size if procs == 1 else f"{size}-p{procs}", self.mode, self.mechanism)

    def with_mode(self, mode: str) -> ConfigKey:
        return ConfigKey(self.dataset, self.size, mode, self.mechanism)

    def with_mechanism(self, mechanism: str) -> ConfigKey:
        return ConfigKey(self.dataset, self.size, self.mode, mechanism)


PROCS_SUFFIX = re.compile(r"-p(\d+)$")  # size_label's mark of a data-parallel run


def size_label(size: str, width: float, network: str | None = None, procs_per_node: int = 1) -> str:
    """The size as configuration keys show it: "big", "big-x16" for a widened network,
    "tiny_cnn-small" for a user network (its factory's name, engine.core.spec.model_name), and
    "big-p2" trained data-parallel over two processes per node (so transfer is compared with
    scratch at the same number of processes)."""
    label = size if network is None else f"{network}-{size}"
    label = label if width == 1 else f"{label}-x{width:g}"
    return label if procs_per_node == 1 else f"{label}-p{procs_per_node}"


def mode_label(mode: str, transfer_head: str) -> str:
    """The mode as keys show it: "transfer", or "transfer-extend" for the extended head (replace is
    the default and stays implicit, as in older logs)."""
    return mode if mode == "scratch" or transfer_head == "replace" else f"{mode}-{transfer_head}"


POWER_LIMIT = "power-limit"  # the mechanism's name; its keys carry the limit


def power_limit_label(watts: float | None, fraction: float | None) -> str | None:
    """The power limit as keys show it: "power-limit-250W", "power-limit-x0.8" (of the GPU's
    default limit), or None when no limit is set."""
    if watts is not None:
        return f"{POWER_LIMIT}-{watts:g}W"
    if fraction is not None:
        return f"{POWER_LIMIT}-x{fraction:g}"
    return None


def with_power_limit(mechanism: str, watts: float | None, fraction: float | None) -> str:
    """A key's mechanism with the power limit in it, so runs at different limits are different
    configurations: the limit alone for the baseline, "amp+power-limit-250W" beside another."""
    label = power_limit_label(watts, fraction)
    if label is None:
        return mechanism
    names = [n for n in mechanism.split("+") if n not in (BASELINE, POWER_LIMIT)]
    return "+".join([*names, label])
