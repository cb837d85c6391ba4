"""The configuration key, "dataset/size/mode/mechanism": the one place it is built and parsed."""

from __future__ import annotations

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
        procs_per_node: int = 1,
    ) -> ConfigKey:
        """The key of a run's settings, with the size's width, its processes per node and the
        transfer head in its labels."""
        return cls(dataset, size_label(size, width, procs_per_node), mode_label(mode, transfer_head), mechanism)

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

    def with_mode(self, mode: str) -> ConfigKey:
        return ConfigKey(self.dataset, self.size, mode, self.mechanism)

    def with_mechanism(self, mechanism: str) -> ConfigKey:
        return ConfigKey(self.dataset, self.size, self.mode, mechanism)


def size_label(size: str, width: float, procs_per_node: int = 1) -> str:
    """The size as configuration keys show it: "big", "big-x16" for a widened network, "big-p2"
    trained data-parallel over two processes per node (so transfer is compared with scratch at
    the same number of processes)."""
    label = size if width == 1 else f"{size}-x{width:g}"
    return label if procs_per_node == 1 else f"{label}-p{procs_per_node}"


def mode_label(mode: str, transfer_head: str) -> str:
    """The mode as keys show it: "transfer", or "transfer-extend" for the extended head (replace is
    the default and stays implicit, as in older logs)."""
    return mode if mode == "scratch" or transfer_head == "replace" else f"{mode}-{transfer_head}"
