"""haven's one configuration object, read from a TOML file; every mistake is named with its fix.

Called by the CLI (which alone knows argv and the environment) before anything
is opened or changed, so a bad file stops haven with nothing touched.

    [database]
    url = "sqlite:////var/lib/haven/haven.db"     # or postgresql+psycopg://...
    [detection]
    heartbeat_interval_s = 1.0
    grace_s = 3.0
    gate_share = 0.5
    [recovery]
    max_parallel_evacuations = 32
    evacuate_all_instances = false
    [cloud]
    driver = "simulated"                           # the embedded default
    hosts = 30
    vms = 300
    seed = 1
    [[segments]]
    name = "segment-az1"
    recovery_method = "reserved_host"
    [fencing]                                      # see haven.fencing.config for every key
    default_driver = "none"                        # default: "sim" on the simulated cloud
    [[fencing.hosts]]
    name = "compute-1"
    driver = "redfish"
    address = "https://10.0.0.11"
    username = "admin"
    password_env = "COMPUTE1_BMC_PASSWORD"
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from haven.domain.errors import ConfigError
from haven.domain.incidents import RecoveryMethod
from haven.domain.settings import DetectionSettings, EngineSettings, RecoverySettings
from haven.fencing.config import FencingConfig, parse_fencing

CONFIG_FILE = "haven.toml"
DB_FILE = "haven.db"
CLOUD_DRIVERS = ("simulated",)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SimulatedCloudConfig:
    hosts: int = 30
    vms: int = 300
    seed: int = 1


@dataclass(frozen=True, slots=True)
class HavenConfig:
    home: Path
    database_url: str
    engine: EngineSettings = field(default_factory=EngineSettings)
    cloud_driver: str = "simulated"
    simulated: SimulatedCloudConfig = field(default_factory=SimulatedCloudConfig)
    segment_methods: Mapping[str, RecoveryMethod] = field(default_factory=dict)
    source: Path | None = None
    fencing: FencingConfig = field(default_factory=FencingConfig)


def load_config(home: Path, path: Path | None = None) -> HavenConfig:
    """Read ``path`` (or ``home/haven.toml`` when it exists); without a file, the embedded defaults."""
    if path is None and (home / CONFIG_FILE).is_file():
        path = home / CONFIG_FILE
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read(path)
    where = str(path) if path else "defaults"
    _only(raw, {"database", "detection", "recovery", "cloud", "segments", "fencing"}, where)
    database = _table(raw, "database", where)
    _only(database, {"url"}, f"{where} [database]")
    url = database.get("url", f"sqlite:///{home / DB_FILE}")
    if not isinstance(url, str) or not url:
        raise ConfigError(
            f"{where}: [database] url must be a non-empty string", 'e.g. url = "sqlite:///haven.db"'
        )
    cloud = _table(raw, "cloud", where)
    driver = cloud.pop("driver", "simulated")
    if driver not in CLOUD_DRIVERS:
        raise ConfigError(
            f"{where}: [cloud] driver {driver!r} is not known",
            f"use one of: {', '.join(CLOUD_DRIVERS)} (OpenStack arrives with the real-Nova work)",
        )
    engine = EngineSettings(
        detection=_settings(DetectionSettings, _table(raw, "detection", where), f"{where} [detection]"),
        recovery=_settings(RecoverySettings, _table(raw, "recovery", where), f"{where} [recovery]"),
    )
    check_settings(engine, where)
    return HavenConfig(
        home=home,
        database_url=url,
        engine=engine,
        cloud_driver=driver,
        simulated=_settings(SimulatedCloudConfig, cloud, f"{where} [cloud]"),
        segment_methods=_segment_methods(raw.get("segments", []), where),
        source=path,
        # The simulated cloud's BMCs fence its hosts unless the file says otherwise.
        fencing=parse_fencing(raw.get("fencing"), where, "sim" if driver == "simulated" else "none"),
    )


def check_settings(engine: EngineSettings, where: str = "settings") -> None:
    """Refuse timings that would defeat detection's safety rules, naming the fix."""
    d, r = engine.detection, engine.recovery
    if d.heartbeat_interval_s <= 0:
        raise ConfigError(f"{where}: [detection] heartbeat_interval_s must be positive")
    if d.grace_s < 2 * d.heartbeat_interval_s:
        raise ConfigError(
            f"{where}: [detection] grace_s ({d.grace_s:g}) is shorter than two heartbeat intervals "
            f"({2 * d.heartbeat_interval_s:g} s): a host would be declared dead before the observer gate "
            "could see its neighbours fall silent",
            "make grace_s at least twice heartbeat_interval_s",
        )
    if not 0 < d.gate_share < 1:
        raise ConfigError(f"{where}: [detection] gate_share must be between 0 and 1, got {d.gate_share:g}")
    if r.max_parallel_evacuations < 1:
        raise ConfigError(f"{where}: [recovery] max_parallel_evacuations must be at least 1")
    timings = (
        "fence_poll_interval_s",
        "verify_poll_interval_s",
        "fence_timeout_s",
        "verify_timeout_s",
        "step_timeout_s",
    )
    for name in timings:
        if getattr(r, name) <= 0:
            raise ConfigError(f"{where}: [recovery] {name} must be positive")


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}", "check the path given to --config"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML: {exc}", "fix the line named above"
        ) from None


def _table(raw: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{name}] must be a table", f"write it as a [{name}] section")
    return dict(value)


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}", f"known keys: {', '.join(sorted(allowed))}"
        )


def _settings(cls: type[T], table: Mapping[str, Any], where: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    _only(table, set(fields), where)
    defaults = cls()
    for key, value in table.items():
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            raise ConfigError(f"{where}: {key} must be a {expected.__name__}, got {value!r}")
        if expected in (int, float) and value < 0:
            raise ConfigError(f"{where}: {key} must not be negative, got {value!r}")
    return dataclasses.replace(defaults, **table)  # type: ignore[type-var]


def _segment_methods(segments: object, where: str) -> dict[str, RecoveryMethod]:
    if not isinstance(segments, list):
        raise ConfigError(f"{where}: segments must be an array of tables", "write each as [[segments]]")
    methods: dict[str, RecoveryMethod] = {}
    for entry in segments:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}: each [[segments]] needs a name", 'e.g. name = "segment-az1"')
        _only(entry, {"name", "recovery_method"}, f"{where} segment {entry['name']}")
        method = entry.get("recovery_method", "auto")
        try:
            methods[entry["name"]] = RecoveryMethod(method)
        except ValueError:
            raise ConfigError(
                f"{where}: segment {entry['name']} has unknown recovery_method {method!r}",
                f"use one of: {', '.join(m.value for m in RecoveryMethod)}",
            ) from None
    return methods
