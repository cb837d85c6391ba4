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
    def parse(cls, key: str) -> ConfigKey:
        """A key as written in logs; older keys without a mechanism are the baseline."""
        parts = key.split("/")
        parts += [BASELINE] * (4 - len(parts))
        return cls(parts[0], parts[1], parts[2], parts[3])

    def with_mode(self, mode: str) -> ConfigKey:
        return ConfigKey(self.dataset, self.size, mode, self.mechanism)

    def with_mechanism(self, mechanism: str) -> ConfigKey:
        return ConfigKey(self.dataset, self.size, self.mode, mechanism)
