"""The host agent's settings, read from its TOML file (``haven agent --config FILE``).

Who calls it: ``haven.cli.agent`` loads the file once at start and hands the ``AgentConfig`` to
``haven.agent.runner.Agent``; nothing else reads the file or the environment. Mistakes end as a
``ConfigError`` that names the key and says how to fix it.

Example (every key but ``host``, ``engine_url`` and one channel has a default)::

    [agent]
    host = "compute-01"                      # the name the engine knows this hypervisor by
    engine_url = "http://haven.example:8080" # haven serve (or a Masakari-compatible API)
    token_file = "/etc/haven/agent.token"    # X-Auth-Token for the engine (`haven token`)
    state_dir = "/var/lib/haven-agent"       # the spool of undelivered notifications
    libvirt_uri = "qemu:///system"
    processes = ["nova-compute", "libvirtd", "ovs-vswitchd"]
    process_cmdline = { "nova-compute" = "/etc/nova/nova.conf" }  # optional: text the cmdline contains

    [[agent.channels]]
    name = "management"
    etcd = "http://10.0.0.5:2379"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from haven.domain.errors import ConfigError

DEFAULT_PROCESSES = ("nova-compute", "libvirtd", "ovs-vswitchd")
DEFAULT_STATE_DIR = Path("/var/lib/haven-agent")


@dataclass(frozen=True)
class Channel:
    """One liveness channel: a name the engine shows and the etcd endpoint reached over that network."""

    name: str
    etcd: str  # http://HOST:PORT (etcd://HOST:PORT is accepted and means the same)


@dataclass(frozen=True)
class AgentConfig:
    host: str
    engine_url: str
    channels: tuple[Channel, ...]
    token_file: Path | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    cluster: str = "default"  # the etcd key prefix the engines watch (/haven/<cluster>/hosts/...)
    heartbeat_ttl_s: int = 3
    heartbeat_interval_s: float = 1.0
    libvirt_uri: str | None = "qemu:///system"  # None: no libvirt watch (a host without VMs)
    keepalive_interval_s: int = 5  # libvirt keep-alive: a silent libvirtd is noticed after
    keepalive_count: int = 3  # interval * (count + 1) seconds at most
    reconnect_interval_s: float = 2.0
    processes: tuple[str, ...] = DEFAULT_PROCESSES
    process_cmdline: Mapping[str, str] = field(default_factory=dict)  # name -> text its cmdline contains
    process_interval_s: float = 5.0
    retry_min_s: float = 0.5  # delivery back-off while the engine is unreachable
    retry_max_s: float = 30.0


_KEYS: dict[str, type | tuple[type, ...]] = {
    "host": str, "engine_url": str, "token_file": str, "state_dir": str, "cluster": str,
    "heartbeat_ttl_s": int, "heartbeat_interval_s": (int, float), "libvirt_uri": str,
    "keepalive_interval_s": int, "keepalive_count": int, "reconnect_interval_s": (int, float),
    "processes": list, "process_cmdline": dict, "process_interval_s": (int, float),
    "retry_min_s": (int, float), "retry_max_s": (int, float), "channels": list,
}  # fmt: skip


def load_agent_config(path: Path) -> AgentConfig:
    """Read and check ``path``; ConfigError naming the key otherwise."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"agent config {path} does not exist", "pass --config FILE (see README)") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read agent config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"agent config {path} is not valid TOML: {exc}") from exc
    return parse_agent_config(raw, str(path))


def parse_agent_config(raw: dict[str, Any], where: str = "agent config") -> AgentConfig:
    section = raw.get("agent")
    if not isinstance(section, dict):
        raise ConfigError(f"{where} has no [agent] section", 'add [agent] with host = "..." and engine_url')
    for key, value in section.items():
        if key not in _KEYS:
            raise ConfigError(f"{where}: unknown key agent.{key}", f"known keys: {', '.join(sorted(_KEYS))}")
        wanted = _KEYS[key]
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise ConfigError(f"{where}: agent.{key} has the wrong type ({type(value).__name__})")
    for key in ("host", "engine_url"):
        if not section.get(key):
            raise ConfigError(f"{where}: agent.{key} is required", f'add {key} = "..." under [agent]')
    host = str(section["host"])
    if "/" in host:
        raise ConfigError(f"{where}: agent.host {host!r} must not contain '/'")
    engine_url = _http_url(where, "agent.engine_url", str(section["engine_url"]))
    channels = tuple(_channel(where, i, c) for i, c in enumerate(section.get("channels", [])))
    if not channels:
        raise ConfigError(
            f"{where}: no [[agent.channels]]: the engine could not tell this host is alive",
            'add [[agent.channels]] with name = "management" and etcd = "http://HOST:2379"',
        )
    if len({c.name for c in channels}) != len(channels):
        raise ConfigError(f"{where}: two [[agent.channels]] have the same name")
    processes = section.get("processes", list(DEFAULT_PROCESSES))
    if not all(isinstance(p, str) and p and "/" not in p for p in processes):
        raise ConfigError(f"{where}: agent.processes must be a list of process names (no '/')")
    cmdline = section.get("process_cmdline", {})
    for name, pattern in cmdline.items():
        if name not in processes or not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{where}: agent.process_cmdline.{name} must name one of agent.processes "
                              "and give a non-empty text its command line contains")  # fmt: skip
    numbers = {k: section[k] for k in _KEYS if k in section and _KEYS[k] in (int, (int, float))}
    for key, value in numbers.items():
        if value <= 0:
            raise ConfigError(f"{where}: agent.{key} must be positive, not {value}")
    token_file = section.get("token_file")
    return AgentConfig(
        host=host,
        engine_url=engine_url.rstrip("/"),
        channels=channels,
        token_file=Path(token_file) if token_file else None,
        state_dir=Path(section.get("state_dir", DEFAULT_STATE_DIR)),
        cluster=str(section.get("cluster", "default")),
        libvirt_uri=section.get("libvirt_uri", "qemu:///system") or None,
        processes=tuple(processes),
        process_cmdline=dict(cmdline),
        **numbers,
    )


def _channel(where: str, index: int, raw: object) -> Channel:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ConfigError(f"{where}: agent.channels[{index}] needs a name", 'name = "management"')
    name = raw["name"]
    if "/" in name or set(raw) - {"name", "etcd"}:
        raise ConfigError(f"{where}: agent.channels[{index}] ({name}) takes only name and etcd (no '/')")
    etcd = raw.get("etcd")
    if not isinstance(etcd, str):
        raise ConfigError(f'{where}: agent.channels[{index}] ({name}) needs etcd = "http://HOST:2379"')
    if etcd.startswith("etcd://"):
        etcd = "http://" + etcd.removeprefix("etcd://")
    return Channel(name, _http_url(where, f"agent.channels[{index}].etcd", etcd).rstrip("/"))


def _http_url(where: str, key: str, value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{where}: {key} = {value!r} is not an http(s)://HOST:PORT URL")
    return value
