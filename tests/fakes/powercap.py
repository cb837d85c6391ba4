"""A fake powercap tree: real files laid out as Linux lays out /sys/class/powercap.

Linux keeps the zones under /sys/devices/virtual/powercap/<control type>/<zone>/<subzone> and links
every zone, subzones included, from /sys/class/powercap/<zone>. This fake does the same under a
temporary directory (`PowercapTree.root` is the class directory to hand to the meter).

Counters are rewritten in place (same inode), as sysfs values change under an open file; a test
moves one with `advance()`, which wraps at max_energy_range_uj exactly as the kernel counter does
(0..max inclusive, then 0).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

# The value Intel parts with the common 61 uJ energy unit report (0xFFFFFFFF * 61035 nJ, rounded
# down to uJ the way the kernel does).
INTEL_MAX_UJ = 262143328850
AMD_MAX_UJ = 65532610987


class PowercapTree:
    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.root = self.base / "class" / "powercap"
        self.devices = self.base / "devices" / "virtual" / "powercap"
        self.root.mkdir(parents=True, exist_ok=True)
        self.devices.mkdir(parents=True, exist_ok=True)
        self._dirs: dict[str, Path] = {}
        self._max: dict[str, int | None] = {}

    # -- building --------------------------------------------------------------------------

    def add_zone(
        self,
        zone: str,
        name: str,
        energy_uj: int = 0,
        max_energy_range_uj: int | None = INTEL_MAX_UJ,
        max_power_uw: int | None = None,
        power_limit_uw: int | None = None,
    ) -> Path:
        """Add zone `intel-rapl:0` (top level) or `intel-rapl:0:2` (subzone of intel-rapl:0).
        `max_power_uw` / `power_limit_uw` write constraint 0 as the kernel lays it out
        (constraint_0_name, _power_limit_uw, _time_window_us, _max_power_uw)."""
        ctype, *numbers = zone.split(":")
        ctype_dir = self.devices / ctype
        if not ctype_dir.exists():
            ctype_dir.mkdir()
            (ctype_dir / "enabled").write_text("1\n")
            link = self.root / ctype
            if not link.exists():
                link.symlink_to(os.path.relpath(ctype_dir, self.root))
        if len(numbers) == 1:
            zdir = ctype_dir / zone
        else:
            parent = ":".join([ctype, *numbers[:-1]])
            zdir = self._dirs[parent] / zone
        zdir.mkdir()
        (zdir / "name").write_text(name + "\n")
        (zdir / "enabled").write_text("1\n")
        if max_energy_range_uj is not None:
            (zdir / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n")
        (zdir / "energy_uj").write_text(f"{energy_uj}\n")
        if max_power_uw is not None or power_limit_uw is not None:
            (zdir / "constraint_0_name").write_text("long_term\n")
            (zdir / "constraint_0_time_window_us").write_text("999424\n")
            (zdir / "constraint_0_power_limit_uw").write_text(f"{power_limit_uw or max_power_uw}\n")
            if max_power_uw is not None:
                (zdir / "constraint_0_max_power_uw").write_text(f"{max_power_uw}\n")
        (self.root / zone).symlink_to(os.path.relpath(zdir, self.root))
        self._dirs[zone] = zdir
        self._max[zone] = max_energy_range_uj
        return zdir

    # -- changing --------------------------------------------------------------------------

    def path(self, zone: str, file: str = "energy_uj") -> Path:
        return self._dirs[zone] / file

    def energy(self, zone: str) -> int:
        return int(self.path(zone).read_text())

    def set_energy(self, zone: str, uj: int) -> None:
        with open(self.path(zone), "r+") as f:  # in place, like a sysfs value
            f.seek(0)
            f.truncate()
            f.write(f"{uj}\n")

    def advance(self, zone: str, uj: int) -> int:
        """Let the zone use `uj` microjoules; the counter wraps like the kernel's. Returns the number
        of wraps that took place."""
        top = self._max[zone]
        assert top is not None, f"{zone} has no max_energy_range_uj to wrap at"
        total = self.energy(zone) + uj
        self.set_energy(zone, total % (top + 1))
        return total // (top + 1)

    def remove(self, zone: str, file: str = "energy_uj") -> None:
        self.path(zone, file).unlink()

    def make_unreadable(self, zone: str) -> None:
        """chmod 000 energy_uj, as Linux >= 5.10 makes it for everyone but root."""
        self.path(zone).chmod(0)


class ReadClock:
    """Stands in for the meter's clock (engine.worker.meters.rapl._now): each read happens `step` seconds
    after the previous one. The meter judges wrap, reset and lost wraps by what the domain's power
    bound allows between reads, so tests that move a counter by hand say how much time passed."""

    def __init__(self, step: float = 1.0) -> None:
        self.t = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t

    def within_wrap(self, meter, fraction: float = 0.8) -> None:
        """Space reads at `fraction` of the meter's shortest wrap period (the fastest legal pace)."""
        self.step = fraction * min(d["shortest_wrap_period_s"] for d in meter.manifest()["domains"])


def enforce_permissions(reader: Callable[[str], bytes]) -> Callable[[str], bytes]:
    """Wrap a file reader so it refuses files with no read bit for others, raising exactly what
    open() raises for an unprivileged user (PermissionError, EACCES). Tests running as root, where
    chmod 000 does not stop reads, use it to drive the meter's real permission path."""

    def read(path: str) -> bytes:
        mode = os.stat(path).st_mode
        if not mode & stat.S_IROTH:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return reader(path)

    return read


# -- machines ------------------------------------------------------------------------------


def intel_desktop(base: Path, psys: bool = False, mmio: bool = True) -> PowercapTree:
    """One socket: package-0 with core, uncore and dram subzones; optionally psys; the same package
    again through intel-rapl-mmio, as laptops and desktops since Tiger Lake show it."""
    t = PowercapTree(base)
    t.add_zone("intel-rapl:0", "package-0", energy_uj=1_000_000)
    t.add_zone("intel-rapl:0:0", "core", energy_uj=400_000)
    t.add_zone("intel-rapl:0:1", "uncore", energy_uj=50_000)
    t.add_zone("intel-rapl:0:2", "dram", energy_uj=300_000)
    if psys:
        t.add_zone("intel-rapl:1", "psys", energy_uj=5_000_000)
    if mmio:
        t.add_zone("intel-rapl-mmio:0", "package-0", energy_uj=1_000_007)
    return t


def intel_server(base: Path, sockets: int = 2) -> PowercapTree:
    """`sockets` packages, each with a dram subzone (Xeon servers)."""
    t = PowercapTree(base)
    for s in range(sockets):
        t.add_zone(f"intel-rapl:{s}", f"package-{s}", energy_uj=10_000_000 * (s + 1))
        t.add_zone(f"intel-rapl:{s}:0", "dram", energy_uj=2_000_000 * (s + 1))
    return t


def amd_epyc(base: Path, sockets: int = 1) -> PowercapTree:
    """AMD Zen under the intel_rapl_msr driver: the same `intel-rapl` names, a core subzone, no dram."""
    t = PowercapTree(base)
    for s in range(sockets):
        t.add_zone(f"intel-rapl:{s}", f"package-{s}", energy_uj=7_000_000 * (s + 1), max_energy_range_uj=AMD_MAX_UJ)
        t.add_zone(f"intel-rapl:{s}:0", "core", energy_uj=3_000_000, max_energy_range_uj=AMD_MAX_UJ)
    return t


def amd_multi_die(base: Path) -> PowercapTree:
    """AMD Threadripper/EPYC showing one zone per die, every die reading the one socket counter."""
    t = PowercapTree(base)
    t.add_zone("intel-rapl:0", "package-0-die-0", energy_uj=10_360_237_493, max_energy_range_uj=AMD_MAX_UJ)
    t.add_zone("intel-rapl:1", "package-0-die-1", energy_uj=10_360_237_493, max_energy_range_uj=AMD_MAX_UJ)
    return t


def intel_multi_die(base: Path) -> PowercapTree:
    """Intel multi-die Xeon (Cascade Lake-AP): each die has its own counter and dram."""
    t = PowercapTree(base)
    t.add_zone("intel-rapl:0", "package-0-die-0", energy_uj=1_000_000)
    t.add_zone("intel-rapl:0:0", "dram", energy_uj=100_000)
    t.add_zone("intel-rapl:1", "package-0-die-1", energy_uj=9_000_000)
    t.add_zone("intel-rapl:1:0", "dram", energy_uj=900_000)
    return t
