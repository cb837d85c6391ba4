"""RAPL: CPU package, DRAM and platform energy from the Linux powercap counters.

Where the counters live
    /sys/class/powercap (or the powercap_root setting, or the `root` argument) holds one entry per
    power zone, named `<control type>:<n>[:<m>...]`. The kernel's RAPL drivers (Intel, and AMD
    since Linux 5.8) register the control type `intel-rapl`; Intel also registers `intel-rapl-mmio`
    (the same packages through another interface) and, on newer servers, TPMI-based zones.
    Top-level zones are named (file `name`) `package-N`, `package-N-die-M` or `psys`; a package's
    subzones are `core`, `uncore` and `dram`.

What is measured
    - every package (kind "cpu"), once: a package seen through a second interface
      (intel-rapl-mmio) is the same counter and is skipped; on AMD multi-die parts every die zone
      mirrors the one socket counter, so mirrored dies are detected and skipped;
    - every `dram` subzone (kind "dram"); it is not part of the package's energy;
    - `psys` (kind "platform"): the whole SoC/platform. It contains the packages, so it is
      reported but never added to them (see Domain.kind);
    - `core`/`uncore` are parts of their package and are listed in the manifest, not measured.

Wraparound
    The kernel computes energy_uj = raw * unit and max_energy_range_uj = 0xFFFFFFFF * unit
    (drivers/powercap/intel_rapl_common.c: get_max_energy_counter() returns
    rapl_unit_xlate(ENERGY_STATUS_MASK)), so energy_uj runs over 0..max_energy_range_uj
    inclusive and then restarts at 0. We take one wrap as max_energy_range_uj + 1 microjoules:
    delta = (new - old) mod (max_energy_range_uj + 1), summed in integer microjoules. This is
    exact for a counter that steps in whole microjoules; on hardware the true period is
    max + one energy unit (15-61 uJ), so each wrap (about 262 kJ at the common 61 uJ unit) may be
    off by < 61 uJ (< 3e-10 relative), which the kernel's own integer units already exceed. Several
    wraps within a phase are exact as long as the counter is read at least once per wrap period
    (minutes to hours; the sampler reads at 10 Hz). A zone with no max_energy_range_uj cannot be
    read wrap-safe and is not used.

Wrap, reset or lost: what is physically possible decides
    A counter that reads less than before has either wrapped or been reset (a driver reload, a
    firmware reset, a hypervisor migrating the guest). Between two reads `dt` seconds apart the
    domain can have used at most max_w * dt joules, where max_w is the domain's power bound:
    the largest constraint_*_max_power_uw its zone exposes, else the largest
    constraint_*_power_limit_uw, in both cases times POWER_MARGIN (power limits are averages over
    a time window; bursts above them are allowed), else DEFAULT_MAX_W for its kind (above any
    socket or DIMM set made today). Then, per read:
      - dt * max_w >= one wrap (the shortest wrap period has passed, e.g. the worker was stopped):
        wraps may have been lost, so the energy of that interval is unknown: nothing is added and
        the domain is a gap for the phase;
      - the forward difference (new - old) mod range exceeds max_w * (dt + READ_SLACK_S): no
        wrap can explain it (the slack covers the counter's own update period, about 1 ms, and
        reads timed in user space a scheduler delay away from the counter's update);
        the counter was reset (or stepped): nothing is added, and the domain is a gap;
      - otherwise it is the energy used (a decrease is a wrap) and is added.
    A reset therefore never adds energy, and an interval whose energy is unknown is never shown
    as a counter value: gaps are reported through take_gaps() (see engine.worker.meters.sampler).

Permissions
    Since Linux 5.10 energy_uj is readable by root only (CVE-2020-8694, "Platypus"). Opening the
    meter checks with os.access and then an actual read, and fails with one line naming the fix.

Why not pyRAPL's reader
    pyRAPL (the named dependency) hard-codes /sys/class/powercap/intel-rapl, so it cannot be
    pointed at a fake tree or a container mount; it returns raw counter values with no wraparound
    handling (a difference across a wrap comes out negative); it opens the files without
    permission handling (a PermissionError on Linux >= 5.10); it requires a DRAM zone on every
    socket to report DRAM at all and ignores psys and multi-die packages; and importing it adds a
    handler to the root logger and logs a warning. So this meter reads the files itself. It uses
    pyRAPL for one thing it does well and that does not depend on the powercap path: counting the
    CPU sockets from /sys/devices/system/cpu, to check that every socket has a package counter
    (only when reading the real /sys tree).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from engine.core.energy import Domain
from engine.core.settings import settings
from engine.worker.meters.base import Meter, MeterError, MeterUnavailable

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"

_TOP_ZONE = re.compile(r"^(?P<ctype>[a-z0-9-]*rapl[a-z0-9-]*):(?P<n>\d+)$")
_PACKAGE = re.compile(r"^package-(?P<pkg>\d+)(?:-die-(?P<die>\d+))?$")
# Subzones that are parts of their package: reported in the manifest, never measured.
_PART_OF_PACKAGE = ("core", "uncore")
# Power bounds (see "Wrap, reset or lost"): a zone's own limits times POWER_MARGIN, else these.
POWER_MARGIN = 2.0
READ_SLACK_S = 0.05
DEFAULT_MAX_W = {"cpu": 1000.0, "dram": 500.0, "platform": 2000.0}
_CONSTRAINT = re.compile(r"^constraint_\d+_(max_power_uw|power_limit_uw)$")


# The clock the counter reads are timed by (a test replaces it to replay reads at chosen times).
_now = time.monotonic


def powercap_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The powercap directory to read: the argument, else the powercap_root setting, else /sys."""
    if root is not None:
        return Path(root)
    return settings().powercap_root or Path(DEFAULT_POWERCAP_ROOT)


def _read_bytes(path: str) -> bytes:
    """One fresh read of a sysfs attribute (sysfs regenerates the value on every open/read)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 64)
    finally:
        os.close(fd)


def _read_int(path: str) -> int:
    data = _read_bytes(path)
    try:
        return int(data)
    except ValueError:
        raise ValueError(f"{path} holds {data[:32]!r}, not a whole number") from None


def _read_name(zone_dir: Path) -> str | None:
    try:
        return _read_bytes(str(zone_dir / "name")).decode("utf-8", "replace").strip()
    except OSError:
        return None


class IgnoredZone(TypedDict):
    """A zone found but not measured, and why (listed in the manifest)."""

    zone: str
    name: str | None
    why: str


@dataclass
class _Zone:
    """One counter to read, and where its value stands."""

    domain: Domain
    path: str  # .../energy_uj
    zone: str  # e.g. "intel-rapl:0:2"
    max_uj: int
    max_w: float = 0.0  # the most power the domain can draw (see "Wrap, reset or lost")
    max_w_from: str = ""
    last_uj: int = 0
    last_t: float = 0.0
    total_uj: int = 0

    @property
    def modulus(self) -> int:
        return self.max_uj + 1


def _ctype_order(ctype: str) -> tuple[int, str]:
    # The MSR interface (intel-rapl) is the reference; other interfaces only fill in packages
    # it does not have.
    return (0 if ctype == "intel-rapl" else 1, ctype)


def _pyrapl_socket_ids() -> list[int] | None:
    """CPU socket ids from pyRAPL's topology reader, without its import-time logging."""
    root_logger = logging.getLogger()
    guard = None
    if not root_logger.handlers:
        # logging.warning() at pyRAPL import would otherwise call basicConfig() on our root logger.
        guard = logging.NullHandler()
        root_logger.addHandler(guard)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        from pyRAPL.device_api import get_socket_ids

        return sorted(set(get_socket_ids()))
    except Exception:  # pyRAPL missing or the topology unreadable: the check is only advisory
        return None
    finally:
        logging.disable(previous)
        if guard is not None:
            root_logger.removeHandler(guard)


class RaplMeter(Meter):
    """Cumulative joules of every RAPL package, DRAM and psys zone since the meter was opened."""

    def __init__(self, root: str | os.PathLike[str] | None = None, check_sockets: bool | None = None) -> None:
        self.root = powercap_root(root)
        self._lock = threading.Lock()
        self._ignored: list[IgnoredZone] = []
        self._notes: list[str] = []
        self._ctypes: list[str] = []
        self._gaps: dict[str, str] = {}  # domain -> why, since the last take_gaps()
        zones = self._discover()
        self._open_counters(zones)
        self._zones = zones
        self.domains = tuple(z.domain for z in zones)
        if check_sockets is None:
            check_sockets = self.root.resolve() == Path(DEFAULT_POWERCAP_ROOT).resolve()
        if check_sockets:
            self._check_sockets()

    # -- discovery -------------------------------------------------------------------------

    def _discover(self) -> list[_Zone]:
        root = self.root
        if not root.is_dir():
            raise MeterUnavailable(f"RAPL: {root} not present (virtual machine or non-Linux?)")
        try:
            entries = sorted(os.listdir(root))
        except OSError as exc:
            raise MeterUnavailable(f"RAPL: cannot list {root}: {exc.strerror}") from None

        top: list[tuple[str, int, str]] = []
        for entry in entries:
            m = _TOP_ZONE.match(entry)
            if m:
                top.append((m["ctype"], int(m["n"]), entry))
        if not top:
            raise MeterUnavailable(
                f"RAPL: no RAPL zones in {root} (CPU without RAPL, or the driver is not loaded: "
                "`sudo modprobe intel_rapl_msr`)"
            )
        top.sort(key=lambda t: (_ctype_order(t[0]), t[1]))

        packages: dict[str, tuple[str, Path]] = {}  # package name -> (zone, dir)
        psys: tuple[str, Path] | None = None
        for _ctype, _n, zone in top:
            zdir = root / zone
            name = _read_name(zdir)
            if name is None:
                self._ignore(zone, None, "no readable name file")
            elif _PACKAGE.match(name):
                if name in packages:
                    self._ignore(zone, name, f"same package as {packages[name][0]} (another interface)")
                else:
                    packages[name] = (zone, zdir)
            elif name == "psys":
                if psys is not None:
                    self._ignore(zone, name, f"same platform counter as {psys[0]} (another interface)")
                else:
                    psys = (zone, zdir)
            else:
                self._ignore(zone, name, "not a package or platform zone")

        candidates: list[tuple[Domain, str, Path]] = []  # (domain, zone, dir)
        for name, (zone, zdir) in sorted(packages.items(), key=lambda kv: _package_key(kv[0])):
            candidates.append((Domain(name, "counter", f"rapl:{name}", "cpu"), zone, zdir))
            for sub, sdir in self._subzones(zone, zdir):
                sname = _read_name(sdir)
                if sname == "dram":
                    dname = "dram-" + name[len("package-") :]
                    candidates.append((Domain(dname, "counter", f"rapl:{dname}", "dram"), sub, sdir))
                elif sname in _PART_OF_PACKAGE:
                    self._ignore(sub, sname, f"part of {name}, which is measured whole")
                else:
                    self._ignore(sub, sname, "unknown subzone")
        if psys is not None:
            candidates.append((Domain("psys", "counter", "rapl:psys", "platform"), psys[0], psys[1]))

        zones: list[_Zone] = []
        for domain, zone, zdir in candidates:
            max_path = zdir / "max_energy_range_uj"
            try:
                max_uj = _read_int(str(max_path))
            except FileNotFoundError:
                self._ignore(zone, domain.name, "no max_energy_range_uj: its counter cannot be read wrap-safe")
                continue
            except (OSError, ValueError) as exc:
                self._ignore(zone, domain.name, f"max_energy_range_uj unreadable: {_why(exc)}")
                continue
            if max_uj <= 0:
                self._ignore(zone, domain.name, f"max_energy_range_uj is {max_uj}: cannot be read wrap-safe")
                continue
            max_w, max_w_from = _power_bound(zdir, domain.kind)
            zones.append(_Zone(domain, str(zdir / "energy_uj"), zone, max_uj, max_w, max_w_from))
        # The permission fix names only the interfaces actually read.
        self._ctypes = sorted({z.zone.split(":")[0] for z in zones}, key=_ctype_order)

        if not any(z.domain.kind == "cpu" for z in zones):
            skipped = [i for i in self._ignored if i["name"] and _PACKAGE.match(i["name"])]
            if skipped:
                first = skipped[0]
                raise MeterUnavailable(f"RAPL: {first['zone']} ({first['name']}): {first['why']}")
            raise MeterUnavailable(
                f"RAPL: no CPU package zone in {root} (only: "
                f"{', '.join(sorted({i['name'] or i['zone'] for i in self._ignored}))})"
            )
        return zones

    def _subzones(self, zone: str, zdir: Path) -> list[tuple[str, Path]]:
        """Children `<zone>:<m>`, found inside the zone's directory and, as sysfs also links them,
        at the top of the powercap root; the same directory is taken once."""
        pattern = re.compile(re.escape(zone) + r":(\d+)$")
        found: dict[str, tuple[int, str, Path]] = {}
        for base in (zdir, self.root):
            try:
                names = os.listdir(base)
            except OSError:
                continue
            for entry in names:
                m = pattern.match(entry)
                if m:
                    path = base / entry
                    key = os.path.realpath(path)
                    found.setdefault(key, (int(m[1]), entry, path))
        return [(entry, path) for _, entry, path in sorted(found.values())]

    def _ignore(self, zone: str, name: str | None, why: str) -> None:
        self._ignored.append({"zone": zone, "name": name, "why": why})

    # -- opening ---------------------------------------------------------------------------

    def _open_counters(self, zones: list[_Zone]) -> None:
        for z in zones:
            try:
                if not os.access(z.path, os.R_OK):
                    raise PermissionError(13, "Permission denied", z.path)
                z.last_uj = _read_int(z.path)
                z.last_t = _now()
            except PermissionError:
                raise MeterUnavailable(self._permission_message(z.path)) from None
            except FileNotFoundError:
                raise MeterUnavailable(f"RAPL: {z.path} missing") from None
            except (OSError, ValueError) as exc:
                raise MeterUnavailable(f"RAPL: reading {z.path} failed: {_why(exc)}") from None
            if not 0 <= z.last_uj <= z.max_uj:
                raise MeterUnavailable(f"RAPL: {z.path} reads {z.last_uj}, outside 0..max_energy_range_uj={z.max_uj}")
        self._drop_mirrored_dies(zones)

    def _permission_message(self, path: str) -> str:
        globs = " ".join(f"{self.root}/{c}:*/energy_uj {self.root}/{c}:*/*/energy_uj" for c in self._ctypes)
        return f"RAPL: {path} is not readable (root-only since Linux 5.10); run as root or `sudo chmod a+r {globs}`"

    def _drop_mirrored_dies(self, zones: list[_Zone]) -> None:
        """On AMD multi-die parts every `package-N-die-M` zone reads the one socket counter.

        Read die 0, die M, die 0 back to back: a mirror lies between the two reads of die 0 (it
        is the same counter a few microseconds apart); an independent die (Intel multi-die
        Xeons) almost never does. Mirrors are dropped so the socket is counted once.
        """
        first_die: dict[str, _Zone] = {}
        for z in list(zones):
            m = _PACKAGE.match(z.domain.name)
            if not m or m["die"] is None or z.domain.kind != "cpu":
                continue
            pkg = m["pkg"]
            if pkg not in first_die:
                first_die[pkg] = z
                continue
            ref = first_die[pkg]
            try:
                a = _read_int(ref.path)
                b = _read_int(z.path)
                c = _read_int(ref.path)
            except (OSError, ValueError):
                continue
            if a <= b <= c:
                zones.remove(z)
                # Its DRAM subzone (if any) mirrors the same way; drop it with the die.
                dram = "dram-" + z.domain.name[len("package-") :]
                for d in [d for d in zones if d.domain.name == dram]:
                    zones.remove(d)
                self._ignore(z.zone, z.domain.name, f"mirrors {ref.domain.name} (same socket counter)")

    def _check_sockets(self) -> None:
        sockets = _pyrapl_socket_ids()
        if sockets is None:
            return
        measured = {int(m["pkg"]) for z in self._zones if (m := _PACKAGE.match(z.domain.name))}
        unmeasured = [s for s in sockets if s not in measured]
        if unmeasured:
            self._notes.append(
                f"{len(sockets)} CPU socket(s) but no package counter for socket(s) "
                f"{', '.join(map(str, unmeasured))}: their energy is not measured"
            )

    # -- reading ---------------------------------------------------------------------------

    def read(self) -> dict[str, float]:
        with self._lock:
            raws = []
            for z in self._zones:
                try:
                    raws.append(_read_int(z.path))
                except FileNotFoundError:
                    raise MeterError(f"RAPL: {z.path} vanished") from None
                except (OSError, ValueError) as exc:
                    raise MeterError(f"RAPL: reading {z.path} failed: {_why(exc)}") from None
            now = _now()
            out = {}
            for z, raw in zip(self._zones, raws, strict=True):
                used, why = _energy_between(z, raw, now - z.last_t)
                if why is not None:
                    self._gaps[z.domain.name] = why
                z.total_uj += used
                z.last_uj, z.last_t = raw, now
                out[z.domain.name] = z.total_uj / 1e6
            return out

    def take_gaps(self) -> dict[str, str]:
        with self._lock:
            gaps, self._gaps = self._gaps, {}
            return gaps

    def manifest(self) -> dict[str, Any]:
        return {
            "meter": "rapl",
            "root": str(self.root),
            "scope": "whole CPU packages and DRAM (every process on the machine)",
            "domains": [
                {
                    "domain": z.domain.name,
                    "kind": z.domain.kind,
                    "method": z.domain.method,
                    "zone": z.zone,
                    "max_energy_range_uj": z.max_uj,
                    "max_power_w": z.max_w,
                    "max_power_from": z.max_w_from,
                    "shortest_wrap_period_s": z.modulus / 1e6 / z.max_w,
                }
                for z in self._zones
            ],
            "ignored": list(self._ignored),
            "notes": list(self._notes),
            "wraparound": "delta = (new - old) mod (max_energy_range_uj + 1), in integer microjoules, when "
            "max_power_w x elapsed time allows it; otherwise a reset or lost wraps: nothing "
            "added and the phase flagged as a gap",
        }


def _energy_between(z: _Zone, raw: int, dt: float) -> tuple[int, str | None]:
    """Microjoules used since the last read, or (0, why) when the counter cannot say."""
    dt = max(dt, 0.0)
    if z.max_w * dt * 1e6 >= z.modulus:
        period = z.modulus / 1e6 / z.max_w
        return 0, (
            f"RAPL {z.domain.name}: not read for {dt:.1f} s, longer than its shortest wrap period "
            f"({period:.3g} s at {z.max_w:g} W): wraps may be lost, so its energy over those "
            f"{dt:.1f} s is unknown and not counted"
        )
    forward = (raw - z.last_uj) % z.modulus
    if forward > z.max_w * (dt + READ_SLACK_S) * 1e6:
        what = "went back" if raw < z.last_uj else "jumped ahead"
        return 0, (
            f"RAPL {z.domain.name}: counter {what} from {z.last_uj} to {raw} uJ in {dt:.3g} s, more than "
            f"{z.max_w:g} W can use: a reset, not counted"
        )
    return forward, None


def _power_bound(zdir: Path, kind: str) -> tuple[float, str]:
    """The most power a zone's domain can draw, and where that bound comes from."""
    found: dict[str, list[int]] = {"max_power_uw": [], "power_limit_uw": []}
    try:
        names = os.listdir(zdir)
    except OSError:
        names = []
    for name in names:
        m = _CONSTRAINT.match(name)
        if m:
            try:
                value = _read_int(str(zdir / name))
            except (OSError, ValueError):
                continue
            if value > 0:
                found[m[1]].append(value)
    for key in ("max_power_uw", "power_limit_uw"):
        if found[key]:
            return max(found[key]) / 1e6 * POWER_MARGIN, f"{POWER_MARGIN:g} x constraint_*_{key}"
    return DEFAULT_MAX_W.get(kind, max(DEFAULT_MAX_W.values())), f"default for {kind}"


def _package_key(name: str) -> tuple[int, int]:
    m = _PACKAGE.match(name)
    assert m is not None
    return int(m["pkg"]), int(m["die"] or 0)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def open_rapl(root: str | os.PathLike[str] | None = None, check_sockets: bool | None = None) -> RaplMeter:
    """Open the RAPL meter, or raise MeterUnavailable with the one-line reason."""
    return RaplMeter(root, check_sockets=check_sockets)
