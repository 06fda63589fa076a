"""memcached in the HA lab, behind keystonemiddleware and Keystone's own cache: its command line, the
APIs' and Keystone's options, its stats.

Who calls it: haven.lab.ha (each controller's ``memcached.service`` and the API units' environment) and
tests/lab/test_ha_memcached.py (``stats``: ground truth from memcached itself). Pure but for ``stats``,
which reads memcached through haven's probe's socket loop (service_probes.memcached_ask).
"""

from __future__ import annotations

import asyncio

from haven.controlplane.drivers.service_probes import ProbeFailed, memcached_ask
from haven.lab.process import LabServiceError

# memcached behind keystonemiddleware, as the install guide, Kolla-Ansible and OpenStack-Helm deploy it:
# one per controller (the catalogue's ``memcached.service``, Debian's binary), on the controller's address,
# and every API replica's ``[keystone_authtoken] memcached_servers`` lists them all, so a token validated
# once by any process of any replica is a cache hit for every other (without it each gunicorn process
# keeps its own in-process cache: a restarted replica asked Keystone again for every client's token).
# keystonemiddleware's defaults kept where they fit: the advanced pool (oslo.cache's, python-memcached
# underneath: the tool venvs pin it), token_cache_time 300 s. Changed: socket_timeout 3 -> 1 s, the
# longest a request waits on a memcached that accepts connections but never answers (a SIGSTOPped
# one, a frozen controller) before that server is marked dead; dead_retry 300 -> 60 s, how long the
# pool then leaves it out (its keys rehash to the other memcached) before trying it again. A killed
# memcached refuses at once, costs nothing, and is marked dead the same way. No
# memcache_security_strategy (Kolla sets ENCRYPT): the lab's caches listen on loopback only.
MEMCACHED = "/usr/bin/memcached"  # Debian's memcached (scripts/install-system-deps.sh)
MEMCACHED_UNIT = "memcached.service"  # the catalogue's unit
MEMCACHE = {
    "MEMCACHE_USE_ADVANCED_POOL": "true",
    "MEMCACHE_POOL_SOCKET_TIMEOUT": "1",
    "MEMCACHE_POOL_DEAD_RETRY": "60",
}
MEMCACHED_MB = 16  # -m: the lab's tokens take a few KiB each
# Keystone's own ``[cache]`` on the same memcacheds, as Kolla-Ansible's keystone.conf sets it (backend
# oslo_cache.memcache_pool, python-memcached underneath: keystone's tool venv pins it). Without it every
# validation re-expanded the token's role assignments: 0.40-0.55 CPU s each (py-spy: 86 % in
# TokenModel.roles), 8 threads meeting one new token waited 19-20 s on the two replicas; with it
# 0.006-0.02 CPU s (docs/controlplane.md, the cold-token stall). ``[token] cache_on_issue`` (on by
# default) puts a token issued by either replica in the cache at once. The pool's socket timeout and
# dead retry as keystonemiddleware's above, for the same reasons.
KEYSTONE_CACHE = {
    "ENABLED": "true",
    "BACKEND": "oslo_cache.memcache_pool",
    "MEMCACHE_SOCKET_TIMEOUT": "1",
    "MEMCACHE_DEAD_RETRY": "60",
}


def memcached_command(address: str, port: int) -> str:
    """The unit's ``ExecStart``: listening on ``address`` only; -U 0: no UDP; -u memcache: it will not
    run as root (Debian's package makes that user)."""
    return f"{MEMCACHED} -l {address} -p {port} -U 0 -m {MEMCACHED_MB} -c 256 -t 2 -u memcache"


def authtoken_env(servers: list[str]) -> str:
    """keystonemiddleware's cache options through oslo.config's environment source (it wins over the
    lab's config files, which the plain lab's services share and keep without memcached)."""
    if not servers:
        return ""
    options = {"MEMCACHED_SERVERS": ",".join(servers), **MEMCACHE}
    return "".join(f"Environment=OS_KEYSTONE_AUTHTOKEN__{key}={value}\n" for key, value in options.items())


def keystone_cache_env(servers: list[str]) -> str:
    """Keystone's ``[cache]`` through oslo.config's environment source (it wins over keystone.conf's
    ``enabled = false``, which the plain lab's Keystone keeps: it has no memcached)."""
    if not servers:
        return ""
    options = {**KEYSTONE_CACHE, "MEMCACHE_SERVERS": ",".join(servers)}
    return "".join(f"Environment=OS_CACHE__{key}={value}\n" for key, value in options.items())


def stats(address: str, port: int, timeout_s: float = 2.0) -> dict[str, str]:
    """memcached's own ``stats`` over its text protocol (curr_items, get_hits, get_misses, ...)."""
    try:
        data = asyncio.run(memcached_ask(address, port, "stats", timeout_s))
    except (OSError, ProbeFailed) as exc:  # TimeoutError is an OSError
        raise LabServiceError(f"memcached on {address}:{port} gave no stats: {exc}") from exc
    found: dict[str, str] = {}
    for line in data.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "STAT":
            found[parts[1]] = parts[2]
    if not found:
        raise LabServiceError(f"memcached on {address}:{port} answered no stats: {data[:200]!r}")
    return found
