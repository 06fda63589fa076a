"""Coordination between haven's processes: who leads (elector), and which hosts' agents are alive (leases).

Who calls it: ``haven serve`` builds its elector with ``elector_from_url`` (``--coordination``):
no URL gives the in-process ``SingleNodeElector`` (the default, no servers), ``etcd://HOST:PORT``
an ``EtcdElector``. How the engine uses ``is_leader()`` / ``epoch()`` / ``wait_leading()`` is in
election.py's docstring. ``haven agent`` uses ``leases.HostHeartbeat``; the engine's detector reads
``leases.HostLeaseView``. This layer imports only haven.domain; etcd types and errors stay inside.

Modules: etcd.py (the client boundary, and which client and why), watching.py (watches that survive etcd
restarts), election.py (contract + single node), election_etcd.py, leases.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from haven.coordination.election import Elector, LeaderStatus, SingleNodeElector
from haven.coordination.election_etcd import DEFAULT_TTL_S, EtcdElector
from haven.coordination.etcd import DEFAULT_TIMEOUT_S, EtcdClient
from haven.domain.errors import ConfigError

__all__ = [
    "Elector",
    "EtcdClient",
    "EtcdElector",
    "EtcdEndpoint",
    "LeaderStatus",
    "SingleNodeElector",
    "elector_from_url",
    "parse_etcd_url",
]

_FORMAT_HINT = "use --coordination etcd://HOST:PORT, e.g. etcd://127.0.0.1:2379"


@dataclass(frozen=True)
class EtcdEndpoint:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"etcd://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_etcd_url(url: str) -> EtcdEndpoint:
    """``etcd://HOST:PORT`` -> endpoint; a ``ConfigError`` naming what is wrong otherwise."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"coordination URL {url!r}: {exc}", hint=_FORMAT_HINT) from exc
    if parts.scheme != "etcd":
        scheme = parts.scheme or "missing"
        raise ConfigError(
            f"coordination URL {url!r}: scheme must be etcd://, not {scheme}", hint=_FORMAT_HINT
        )
    if not parts.hostname:
        raise ConfigError(f"coordination URL {url!r} has no host", hint=_FORMAT_HINT)
    if port is None or port == 0:
        raise ConfigError(f"coordination URL {url!r} has no port (etcd's client port is usually 2379)",
                          hint=_FORMAT_HINT)  # fmt: skip
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"coordination URL {url!r}: only etcd://HOST:PORT is understood", hint=_FORMAT_HINT)
    return EtcdEndpoint(parts.hostname, port)


def elector_from_url(
    url: str | None,
    identity: str,
    *,
    cluster: str = "default",
    ttl_s: int = DEFAULT_TTL_S,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Elector:
    """The elector for ``--coordination URL``: none -> single node; ``etcd://HOST:PORT`` -> etcd.

    Validates the URL now (``ConfigError``); reachability is checked when ``run()`` starts
    (``CoordinationUnavailable`` naming the URL). Call ``await elector.aclose()`` at shutdown.
    """
    if not identity or "\0" in identity:
        raise ConfigError(f"engine identity {identity!r} must be a non-empty string",
                          hint="pass a stable name per engine, e.g. the host name")  # fmt: skip
    if url is None or url == "":
        return SingleNodeElector(identity)
    endpoint = parse_etcd_url(url)
    client = EtcdClient(endpoint.http_url, timeout_s=timeout_s, display_url=endpoint.url)
    return EtcdElector(client, identity, cluster=cluster, ttl_s=ttl_s)
