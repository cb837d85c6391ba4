"""Settings from the environment: every `JOULELAB_*` variable, read here and nowhere else.

    settings = Settings.from_env()     # os.environ, validated; a bad value is one line, exit 2
    settings.stall_s                   # typed attributes, with their defaults
    env_var("logs")                    # "JOULELAB_LOGS": the name, for messages and help texts

Each field is one variable, `JOULELAB_<FIELD>` (upper case), and says what it is for. A command
line option beats its variable where both exist (`--logs` over JOULELAB_LOGS); the readers of a
setting take the option first and fall back to these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from engine.core.errors import JouleLabError

PREFIX = "JOULELAB_"

# The world's average grid intensity in 2023 (Ember, Global Electricity Review 2024: 480 g/kWh),
# CodeCarbon's fallback too. Used for gCO2e wherever no intensity is set.
DEFAULT_CARBON_INTENSITY = 480.0


class SettingsError(JouleLabError):
    """A JOULELAB_* variable holds a value that cannot be used."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """JouleLab's settings from the environment; each field is `JOULELAB_<FIELD>`."""

    logs: Annotated[
        Path | None,
        msgspec.Meta(description="Logs directory, where runs are written and read (default ./logs; --logs wins)."),
    ] = None
    data: Annotated[
        Path | None,
        msgspec.Meta(
            description="Folder of the real datasets (default: the user cache folder's data/; --data-dir wins)."
        ),
    ] = None
    cache: Annotated[
        Path | None,
        msgspec.Meta(
            description="Cache root: parsed datasets, source networks, calibrations "
            "(default: the platform's user cache folder for joulelab)."
        ),
    ] = None
    config: Annotated[
        Path | None,
        msgspec.Meta(
            description="The lab's configuration folder, where networks.toml names your own networks "
            "(default: the platform's user config folder for joulelab)."
        ),
    ] = None
    state: Annotated[
        Path | None,
        msgspec.Meta(
            description="State root: what must outlive a run, such as a GPU power limit a killed run "
            "could not restore (default: the platform's user state folder for joulelab)."
        ),
    ] = None
    powercap_root: Annotated[
        Path | None,
        msgspec.Meta(description="Where the RAPL powercap tree is read (default /sys/class/powercap); tests."),
    ] = None
    stall_s: Annotated[
        float,
        msgspec.Meta(gt=0, description="Seconds a worker may send nothing before it is declared stalled."),
    ] = 30.0
    carbon_intensity: Annotated[
        Annotated[float, msgspec.Meta(ge=0)] | None,
        msgspec.Meta(
            description="Grid carbon intensity in g CO2e per kWh, for the lab's gCO2e and CodeCarbon "
            "exports (default: the world average, 480; --carbon-intensity wins).",
        ),
    ] = None
    measure_channel: Annotated[
        str | None,
        msgspec.Meta(
            description="Set by `joulelab measure` for the command it runs: the Unix socket where a "
            "`joulelab.run` inside the command hands its phases to the measuring run. Not for users."
        ),
    ] = None
    slurm: Annotated[
        str | None,
        msgspec.Meta(
            description="Set by the Slurm executor for its workers: the job's requested and granted "
            "resources, as JSON. Not for users."
        ),
    ] = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (os.environ by default). An empty variable counts as unset."""
        env = os.environ if environ is None else environ
        raw: dict[str, Any] = {}
        for name in cls.__struct_fields__:
            value = env.get(env_var(name))
            if value:
                raw[name] = value
        try:
            return msgspec.convert(raw, cls, strict=False, dec_hook=_path)
        except msgspec.ValidationError as e:
            field = str(e).rpartition("$.")[2].rstrip("`").strip()
            where = env_var(field) if field in cls.__struct_fields__ else "a JOULELAB_* variable"
            value = raw.get(field, "")
            why = str(e).split(" - at ")[0]
            raise SettingsError(f"{where}={value!r} cannot be used ({why}); fix or unset it") from None

    def carbon(self, value: float | None = None) -> tuple[float, str]:
        """The carbon intensity in force and where it comes from: the given value (an option), else
        JOULELAB_CARBON_INTENSITY, else the default. The lab's gCO2e and every export agree."""
        if value is not None:
            return float(value), "set for this session"
        if self.carbon_intensity is not None:
            return self.carbon_intensity, env_var("carbon_intensity")
        return DEFAULT_CARBON_INTENSITY, f"world average 2023 (Ember); set {env_var('carbon_intensity')}"

    def config_root(self) -> Path:
        """The lab's configuration folder: JOULELAB_CONFIG, else the platform's user config folder."""
        return config_root_of(self.config)

    def cache_root(self) -> Path:
        """The cache root: JOULELAB_CACHE, else the platform's user cache folder for joulelab."""
        if self.cache is not None:
            return self.cache.expanduser()
        import platformdirs

        return Path(platformdirs.user_cache_dir("joulelab"))

    def state_root(self) -> Path:
        """The state root: JOULELAB_STATE, else the platform's user state folder for joulelab. Not
        the cache: clearing a cache must not forget that a GPU was left capped."""
        if self.state is not None:
            return self.state.expanduser()
        import platformdirs

        return Path(platformdirs.user_state_dir("joulelab"))


def config_root_of(value: Path | None) -> Path:
    import platformdirs

    return value.expanduser() if value is not None else Path(platformdirs.user_config_dir("joulelab"))


def _path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(kind)


def env_var(field: str) -> str:
    """The variable of a settings field: env_var("stall_s") == "JOULELAB_STALL_S"."""
    if field not in Settings.__struct_fields__:
        raise KeyError(field)
    return PREFIX + field.upper()


def settings() -> Settings:
    """The settings of this process's environment now (read on each call: tests and the lab change
    the environment, and reading a few variables costs microseconds)."""
    return Settings.from_env()
