"""Per-host fencing configuration: which BMC fences which host, read from haven.toml's [fencing].

Called by haven.service.config (which reads the file) and by haven.fencing.registry (which
builds the drivers). Every mistake is named with its key and how to fix it; passwords are
held in ``Secret`` so that no repr, log line or error message can show them.

    [fencing]
    default_driver = "none"        # hosts not listed: "none" (not fenced: notify only) or "sim"
    [[fencing.hosts]]
    name = "compute-1"
    driver = "redfish"             # "redfish", "ipmi" or "sim"
    address = "https://10.0.0.11"  # redfish: the BMC's base URL; ipmi: its host name or IP
    username = "admin"
    password_env = "COMPUTE1_BMC_PASSWORD"   # or password = "..." (the file must then be private)
    system_id = "1"                # redfish only; default: the BMC's only system
    verify_tls = true              # redfish only; false only for labs with self-signed certificates
    port = 623                     # ipmi only
    timeout_s = 5.0                # one BMC call, bounded
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from haven.domain.errors import ConfigError
from haven.domain.ids import HostName

DRIVERS = ("redfish", "ipmi", "sim")
DEFAULT_DRIVERS = ("none", "sim")
_KINDS = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}
_HOST_KEYS = {
    "name", "driver", "address", "username", "password", "password_env",
    "system_id", "verify_tls", "port", "timeout_s",
}  # fmt: skip


class Secret:
    """A password: readable through ``reveal()`` only, shown as *** everywhere else."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class BmcConfig:
    """How to reach one host's BMC; the password is given or named by an environment variable."""

    host: HostName
    driver: str
    address: str = ""
    username: str = ""
    password: Secret | None = None
    password_env: str = ""
    system_id: str = ""
    verify_tls: bool = True
    port: int = 623
    timeout_s: float = 5.0

    @property
    def where(self) -> str:
        """How error messages name this BMC (never with credentials)."""
        return f"BMC of {self.host} at {self.address}" if self.address else f"BMC of {self.host}"

    def resolve_password(self, environ: Mapping[str, str]) -> Secret:
        """The password, from the file or from the environment variable it names."""
        if self.password is not None:
            return self.password
        value = environ.get(self.password_env)
        if not value:
            raise ConfigError(
                f"[[fencing.hosts]] {self.host}: environment variable {self.password_env} "
                "(password_env) is not set or empty",
                f"export {self.password_env} with the BMC password before starting haven",
            )
        return Secret(value)


@dataclass(frozen=True, slots=True)
class FencingConfig:
    default_driver: str = "sim"
    hosts: Mapping[HostName, BmcConfig] = field(default_factory=dict)


def parse_fencing(raw: object, where: str, default_driver: str) -> FencingConfig:
    """The [fencing] table of a config file; ``default_driver`` applies when the file names none."""
    if raw is None:
        return FencingConfig(default_driver=default_driver)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [fencing] must be a table", "write it as a [fencing] section")
    unknown = sorted(set(raw) - {"default_driver", "hosts"})
    if unknown:
        raise ConfigError(
            f"{where}: [fencing] has unknown key(s) {', '.join(unknown)}", "known keys: default_driver, hosts"
        )
    default = raw.get("default_driver", default_driver)
    if default not in DEFAULT_DRIVERS:
        raise ConfigError(
            f"{where}: [fencing] default_driver {default!r} is not known",
            'use "none" (hosts without a [[fencing.hosts]] entry are not fenced, so not evacuated) or "sim"',
        )
    entries = raw.get("hosts", [])
    if not isinstance(entries, list):
        raise ConfigError(
            f"{where}: [fencing] hosts must be an array of tables", "write each as [[fencing.hosts]]"
        )
    hosts: dict[HostName, BmcConfig] = {}
    for entry in entries:
        bmc = _host(entry, where)
        if bmc.host in hosts:
            raise ConfigError(
                f"{where}: [[fencing.hosts]] {bmc.host} is listed twice", "keep one entry per host"
            )
        hosts[bmc.host] = bmc
    return FencingConfig(default_driver=str(default), hosts=hosts)


def _host(entry: object, where: str) -> BmcConfig:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise ConfigError(f"{where}: each [[fencing.hosts]] needs a name", 'e.g. name = "compute-1"')
    name = HostName(entry["name"])
    at = f"{where} [[fencing.hosts]] {name}"
    unknown = sorted(set(entry) - _HOST_KEYS)
    if unknown:
        raise ConfigError(
            f"{at}: unknown key(s) {', '.join(unknown)}", f"known keys: {', '.join(sorted(_HOST_KEYS))}"
        )
    driver = entry.get("driver")
    if driver not in DRIVERS:
        raise ConfigError(f"{at}: driver {driver!r} is not known", f"use one of: {', '.join(DRIVERS)}")
    if driver == "sim":
        return BmcConfig(host=name, driver="sim")
    values: dict[str, Any] = {
        key: _typed(entry, key, kind, at)
        for key, kind in (
            ("address", str), ("username", str), ("password_env", str), ("system_id", str),
            ("verify_tls", bool), ("port", int), ("timeout_s", float),
        )
        if key in entry
    }  # fmt: skip
    if not values.get("address"):
        example = "https://10.0.0.11" if driver == "redfish" else "10.0.0.11"
        raise ConfigError(f"{at}: address is required for driver {driver}", f'e.g. address = "{example}"')
    if not values.get("username"):
        raise ConfigError(f"{at}: username is required for driver {driver}", 'e.g. username = "admin"')
    password = entry.get("password")
    if (password is None) == (not values.get("password_env")):
        raise ConfigError(
            f"{at}: give exactly one of password or password_env",
            'prefer password_env = "NAME_OF_A_VARIABLE" holding the BMC password',
        )
    if password is not None and (not isinstance(password, str) or not password):
        raise ConfigError(f"{at}: password must be a non-empty string")
    if driver == "redfish":
        _check_url(values["address"], at)
    else:
        wrong = sorted({"system_id", "verify_tls"} & set(entry))
        if wrong:
            raise ConfigError(f"{at}: {', '.join(wrong)} only apply to driver redfish", "remove them")
        if not 0 < values.get("port", 623) < 65536:
            raise ConfigError(f"{at}: port must be between 1 and 65535, got {values['port']}")
    if driver == "redfish" and "port" in entry:
        raise ConfigError(f"{at}: port only applies to driver ipmi", "put the port in the address URL")
    if values.get("timeout_s", 1.0) <= 0:
        raise ConfigError(f"{at}: timeout_s must be positive")
    return BmcConfig(
        host=name, driver=driver, password=Secret(password) if password is not None else None, **values
    )


def _typed(entry: Mapping[str, Any], key: str, kind: type, at: str) -> Any:
    value = entry[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{at}: {key} must be {_KINDS[kind]}, got {value!r}")
    return value


def _check_url(address: str, at: str) -> None:
    if "@" in address:  # checked first, so that the message never repeats a password
        raise ConfigError(
            f"{at}: address must not carry credentials", "use username and password_env instead"
        )
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{at}: address {address!r} is not a Redfish base URL", 'e.g. address = "https://10.0.0.11"'
        )
