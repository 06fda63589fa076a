"""Probes that speak the service's own protocol: a Keystone token round trip, an SQL query, an AMQP round
trip, Nova's service list, a Nova RPC ping of a conductor or scheduler and memcached's ``version``.

Called by haven.controlplane.drivers.probes.NetworkProber, which bounds each with the probe's timeout and
turns what these raise into a failed result. Each function returns the words of a pass and raises
ProbeFailed (or the client's own error) for a failure. Blocking clients (PyMySQL, py-amqp,
oslo.messaging) run in a thread; each sets its own socket timeouts too, so a hung server never leaves a
thread waiting for long after the probe has given up. Passwords and the transport URL come from the
environment variables the ProbeSpec names (``password_env``, ``transport_url_env``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from haven.domain.controlplane import ProbeSpec
from haven.domain.waiting import within
from haven.evidence.transport_url import tls_for

log = logging.getLogger(__name__)


class ProbeFailed(Exception):
    """The service answered, and its answer is a failure (a 401, a wrong status, no message back)."""


class TokenRefused(ProbeFailed):
    """The replica answered 401 to the kept token (expired, revoked): the prober forgets it and tries
    once with a new one."""


class CredentialsRefused(ProbeFailed):
    """Keystone answered 401 to haven's own probe account (a wrong or rotated password, a disabled or
    deleted user, no role on the project): Keystone works, haven's configuration does not. Not
    Keystone down, never the replica's failure."""


class KeystoneUnavailable(ProbeFailed):
    """The replica's keystonemiddleware could not validate the token with Keystone (its 503): Keystone's
    failure, not the replica's. The prober judges the replica by its version document instead."""


# What keystonemiddleware's auth_token answers (503) when Keystone cannot be reached or fails the
# validation (keystonemiddleware 13.0.1, auth_token/__init__.py: ConnectFailure, DiscoveryFailure,
# RequestTimeout or ServiceError -> webob's HTTPServiceUnavailable with these words, in every body
# webob writes: text, HTML, JSON).
KEYSTONE_UNAVAILABLE = "The Keystone service is temporarily unavailable"


def secret(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name)
    if value is None:
        raise ProbeFailed(f"environment variable {name} is not set")
    return value


def _password_auth(spec: ProbeSpec, password: str) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": spec.user, "domain": {"id": "default"}, "password": password}},
        }
    }
    if spec.project:
        auth["scope"] = {"project": {"name": spec.project, "domain": {"id": "default"}}}
    return {"auth": auth}


async def _issue(
    client: httpx.AsyncClient, auth_url: str, spec: ProbeSpec, password: str
) -> tuple[str, float]:
    """A new token and how long it is valid (Keystone's ``expires_at - issued_at``; an hour if unsaid)."""
    response = await client.post(
        f"{auth_url.rstrip('/')}/auth/tokens", json=_password_auth(spec, password), timeout=spec.timeout_s
    )
    token = response.headers.get("X-Subject-Token")
    if response.status_code == 401:
        raise CredentialsRefused(
            f"POST /v3/auth/tokens: 401: Keystone refuses haven's probe account {spec.user!r}"
            + (f" (project {spec.project!r})" if spec.project else "")
        )
    if response.status_code != 201 or not token:
        raise ProbeFailed(f"POST /v3/auth/tokens: {response.status_code}")
    return str(token), _lifetime(response)


def _lifetime(response: httpx.Response) -> float:
    try:
        body = response.json()["token"]
        issued, expires = (
            datetime.fromisoformat(body[k].replace("Z", "+00:00")) for k in ("issued_at", "expires_at")
        )
        return (expires - issued).total_seconds()
    except (ValueError, KeyError, TypeError, AttributeError):
        return 3600.0  # Keystone's default token lifetime


async def issue_token(client: httpx.AsyncClient, auth_url: str, spec: ProbeSpec, password: str) -> str:
    return (await _issue(client, auth_url, spec, password))[0]


async def keystone(client: httpx.AsyncClient, base: str, spec: ProbeSpec, environ: Mapping[str, str]) -> str:
    """Issue a token from this Keystone, then validate it there: its database, keys and tokens work."""
    url = f"{base}/v3"
    token = await issue_token(client, url, spec, secret(environ, spec.password_env))
    headers = {"X-Auth-Token": token, "X-Subject-Token": token}
    response = await client.get(f"{url}/auth/tokens", headers=headers, timeout=spec.timeout_s)
    if response.status_code != 200:
        raise ProbeFailed(f"token issued, its validation answered {response.status_code}")
    return "token issued and validated"


@dataclass(frozen=True, slots=True)
class _Kept:
    token: str
    issued: float  # the cache's clock
    expires: float


class TokenCache:
    """One Keystone token per (auth_url, user, project) for the Nova service-list probes of every replica.

    The token comes from Keystone once, not at every probe (one request at a time per key: the probes of
    a pass share it), and is renewed after ``renew_s`` or half its lifetime, whichever comes first. A
    renewal that fails keeps the token in hand until it expires: it spares Keystone a request per probe,
    and a replica that still has the token in keystonemiddleware's cache (``token_cache_time``, 300 s
    by default, per process without memcached) still answers the deep probe. It does not keep a Keystone
    outage from reaching the probes: once a replica's cache of the token ends, or at once on a restarted
    replica, keystonemiddleware asks Keystone, cannot, and answers 503. The prober
    (haven.controlplane.drivers.probes) turns that, a token that cannot be had, and a refused token
    Keystone cannot replace into a judgement by the replica's version document: Keystone's failure is
    never the replica's, whatever the planner knows of Keystone's health (Keystone's own probe,
    ``GET /v3``, passes while its database is down).
    ``forget`` drops a token a replica refused (401), so the next ``get`` asks Keystone for a new one.
    ``refused`` says whether Keystone's latest answer to the account (a renewal's too) was a 401
    (CredentialsRefused), until it issues one a token again.
    """

    def __init__(self, renew_s: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._tokens: dict[tuple[str, str, str], _Kept] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._refused: dict[tuple[str, str, str], str] = {}  # account -> Keystone's 401, in words
        self._renew_s = renew_s
        self._clock = clock
        self.issued = 0  # tokens issued so far (what a test counts)

    async def get(self, client: httpx.AsyncClient, spec: ProbeSpec, password: str) -> str:
        key = _account(spec)
        async with self._locks.setdefault(key, asyncio.Lock()):
            kept = self._tokens.get(key)
            now = self._clock()
            if kept is not None and now < min(kept.issued + self._renew_s, (kept.issued + kept.expires) / 2):
                return kept.token
            try:
                token, lifetime = await self.issue_new(client, spec, password)
            except Exception:
                if kept is not None and self._clock() < kept.expires - spec.timeout_s:
                    log.info(
                        "token renewal from %s failed: the kept token is used until it expires", spec.auth_url
                    )
                    return kept.token
                raise
            self.issued += 1
            self._tokens[key] = _Kept(token, now, now + lifetime)
            return token

    async def issue_new(self, client: httpx.AsyncClient, spec: ProbeSpec, password: str) -> tuple[str, float]:
        """A new token from Keystone (not kept: ``get`` keeps its own), noting whether it refused the
        account."""
        try:
            issued = await _issue(client, spec.auth_url, spec, password)
        except CredentialsRefused as exc:
            self._refused[_account(spec)] = str(exc)
            raise
        self._refused.pop(_account(spec), None)
        return issued

    def refused(self, spec: ProbeSpec) -> str:
        """Keystone's 401 to ``spec``'s account in words when its latest answer was one, else ""."""
        return self._refused.get(_account(spec), "")

    def forget(self, spec: ProbeSpec, token: str) -> None:
        key = _account(spec)
        kept = self._tokens.get(key)
        if kept is not None and kept.token == token:
            del self._tokens[key]


def _account(spec: ProbeSpec) -> tuple[str, str, str]:
    return (spec.auth_url, spec.user, spec.project)


NOVA_SERVICES_PATH = "/v2.1/os-services"


async def nova_services(client: httpx.AsyncClient, base: str, spec: ProbeSpec, token: str) -> str:
    """Nova's service list from this nova-api with ``token``: it authenticates the token
    (keystonemiddleware) and reads Nova's API and cell databases, what a replica's first real requests
    pay for (seconds on a restarted one: its first server lists took 3.5 to over 30 s on the loaded lab).

    Raises TokenRefused for a 401 and KeystoneUnavailable for keystonemiddleware's 503 (Keystone could
    not validate the token): the prober decides what those mean. Any other status is the replica's."""
    response = await client.get(
        f"{base}{NOVA_SERVICES_PATH}", headers={"X-Auth-Token": token}, timeout=spec.timeout_s
    )
    if response.status_code == 401:
        raise TokenRefused(f"GET {NOVA_SERVICES_PATH}: 401")
    if response.status_code == 503 and KEYSTONE_UNAVAILABLE in response.text:
        raise KeystoneUnavailable(
            f"GET {NOVA_SERVICES_PATH}: 503 from keystonemiddleware: {KEYSTONE_UNAVAILABLE}"
        )
    if response.status_code != 200:
        raise ProbeFailed(f"GET {NOVA_SERVICES_PATH}: {response.status_code}")
    services = response.json().get("services")
    if not isinstance(services, list):
        raise ProbeFailed(f"GET {NOVA_SERVICES_PATH}: no service list in the answer")
    return f"os-services: {len(services)} services"


async def version_document(client: httpx.AsyncClient, base: str, spec: ProbeSpec, why: str) -> str:
    """nova-api's shallow check (HAProxy's): its version document, for when the deep probe failed for
    Keystone's reason (``why``) and says nothing of the replica. A replica that does not answer even this
    fails (and times out when hung) as under any probe."""
    response = await client.get(f"{base}/", timeout=spec.timeout_s)
    if response.status_code not in (200, 300):
        raise ProbeFailed(f"GET /: {response.status_code} ({why})")
    return f"GET /: {response.status_code}, version document only ({why})"


def sql(address: str, spec: ProbeSpec, environ: Mapping[str, str]) -> str:
    import pymysql  # type: ignore[import-untyped]

    connection = pymysql.connect(
        host=address,
        port=spec.port,
        user=spec.user,
        password=secret(environ, spec.password_env),
        database=spec.project or None,
        connect_timeout=spec.timeout_s,
        read_timeout=spec.timeout_s,
        write_timeout=spec.timeout_s,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(spec.query)
            rows = cursor.fetchall()
    finally:
        connection.close()
    return f"{spec.query}: {len(rows)} row(s)"


def amqp_round_trip(address: str, spec: ProbeSpec, environ: Mapping[str, str]) -> str:
    """Connect, declare a private queue, publish one message to it and get it back.

    TLS as the transport URL in ``transport_url_env`` says (``?ssl=1&ssl_ca_file=PATH``, as oslo.messaging
    reads it: haven.evidence.transport_url), so a TLS-only RabbitMQ is probed as Nova reaches it: with
    ``ssl_ca_file`` its certificate must name ``address``, the host connected to, as kombu checks Nova's
    (the password goes to no server a certificate of that CA for another name would let through); a
    refused handshake is a failure naming the CA its certificate was verified against and the name."""
    import amqp  # type: ignore[import-untyped]

    target = f"{address}:{spec.port}"
    url = secret(environ, spec.transport_url_env) if spec.transport_url_env else ""
    tls = tls_for(url, target) if url else False
    deadline = time.monotonic() + spec.timeout_s
    connection = amqp.Connection(
        host=target,
        userid=spec.user,
        password=secret(environ, spec.password_env),
        virtual_host=spec.project or "/",
        connect_timeout=spec.timeout_s,
        read_timeout=spec.timeout_s,
        write_timeout=spec.timeout_s,
        ssl=tls,
    )
    try:
        connection.connect()
    except Exception as exc:
        connection.collect()
        if not isinstance(exc, ssl.SSLError):
            raise
        against = tls.get("ca_certs") if isinstance(tls, dict) else None
        name = tls.get("server_hostname") if isinstance(tls, dict) else None
        raise ProbeFailed(
            f"TLS handshake with {target} failed: {exc} (the CA: "
            f"{f'ssl_ca_file {against}' if against else 'the system CAs; the URL names no ssl_ca_file'}"
            f"{f'; the name its certificate must carry: {name}' if name else ''})"
        ) from exc
    try:
        channel = connection.channel()
        queue, _, _ = channel.queue_declare(queue="", exclusive=True, auto_delete=True)
        body = uuid.uuid4().hex
        channel.basic_publish(amqp.Message(body), exchange="", routing_key=queue)
        while time.monotonic() < deadline:
            message = channel.basic_get(queue, no_ack=True)
            if message is not None:
                if message.body in (body, body.encode()):
                    return "published and got back"
                raise ProbeFailed("a message came back that was not ours")
            time.sleep(0.02)
        raise ProbeFailed(f"the message did not come back within {spec.timeout_s:g} s")
    finally:
        if connection.connected:
            connection.close()
        else:
            connection.collect()


# memcached's text protocol (its doc/protocol.txt): one command line, then an answer whose last line says
# it is whole: one line for most commands (``VERSION <v>``, ``STORED``), ``END`` after ``stats`` and after
# ``get``'s values (``VALUE <key> <flags> <bytes>``, then that many bytes of data), or a refusal.
_MEMCACHED_REFUSALS = (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")
_MEMCACHED_LISTS = ("get", "gets", "stats")  # answered with lines up to END; the others with one line


async def memcached_ask(address: str, port: int, command: str, timeout_s: float) -> bytes:
    """Send ``command`` (``version``, ``stats``, ``get KEY``, a ``set`` line with its data) to memcached
    and return its whole answer,
    the connection included, within ``timeout_s``. The one home of memcached's socket loop: haven's
    probe, the HA lab's ``stats`` and its tests read memcached through it. Asynchronous, so a probe of a
    hung memcached holds no thread (the blocking probes share asyncio's few default threads).

    Raises TimeoutError when the answer is not whole in time (a SIGSTOPped memcached: the kernel accepts
    the connection, nobody answers), OSError when the connection is refused or reset, and ProbeFailed
    when memcached closes the connection before its answer ends or refuses the command."""
    verb = command.split(" ", 1)[0]

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(address, port)
        try:
            writer.write(command.encode() + b"\r\n")
            await writer.drain()
            data = b""
            while not _answered(data, one_line=verb not in _MEMCACHED_LISTS):
                chunk = await reader.read(65536)
                if not chunk:
                    raise ProbeFailed(
                        f"memcached closed the connection after {len(data)} bytes of its answer to {verb}"
                    )
                data += chunk
            return data
        finally:
            writer.close()

    try:
        data = await within(exchange(), timeout_s)
    except TimeoutError:
        raise TimeoutError(f"memcached's answer to {verb} not whole within {timeout_s:g} s") from None
    first = data.split(b"\r\n", 1)[0]
    if first.split(b" ", 1)[0] in _MEMCACHED_REFUSALS:
        raise ProbeFailed(f"memcached refused {verb}: {first[:120].decode(errors='replace')!r}")
    return data


def _answered(data: bytes, one_line: bool) -> bool:
    """Whether ``data`` holds a whole answer: its first line for a one-line command or a refusal, else
    every ``VALUE`` block and the ``END`` line after them."""
    at = 0
    while (end := data.find(b"\r\n", at)) >= 0:
        line = data[at:end]
        if at == 0 and (one_line or line.split(b" ", 1)[0] in _MEMCACHED_REFUSALS):
            return True
        if line == b"END":
            return True
        at = end + 2
        if line.startswith(b"VALUE "):
            fields = line.split()
            if len(fields) < 4 or not fields[3].isdigit():
                raise ProbeFailed(f"memcached sent a malformed value line: {line[:120]!r}")
            at += int(fields[3]) + 2  # the data block and its CRLF
    return False


async def memcached_version(address: str, spec: ProbeSpec) -> str:
    """memcached's ``version`` on this replica: any answer but ``VERSION <v>`` is a failure."""
    answer = await memcached_ask(address, spec.port, "version", spec.timeout_s)
    line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    if not line.startswith("VERSION "):
        raise ProbeFailed(f"version: memcached answered {line[:120]!r}, not VERSION")
    return f"memcached {line.removeprefix('VERSION ')}"


# The ping: a method no endpoint has, at a version the service's manager accepts, so its dispatcher
# answers NoSuchMethod; a name ending in "_ignore_errors" makes oslo.messaging's server log that at debug
# level only, so a ping every few seconds leaves no traceback in nova-conductor's log.
PING_METHOD = "haven_ping_ignore_errors"
NOVA_EXCHANGE = "nova"
_VERSIONS = {"conductor": "3.0", "scheduler": "4.0", "compute": "6.0"}  # their managers' major versions


class NovaRpc:
    """RPC pings on Nova's bus: one oslo.messaging transport per transport URL, made on first use."""

    def __init__(self) -> None:
        self._transports: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _transport(self, url: str) -> Any:
        with self._lock:
            transport = self._transports.get(url)
            if transport is None:
                from oslo_config import cfg

                oslo_messaging = _oslo_messaging()
                conf = cfg.ConfigOpts()
                conf([], project="haven-probe", default_config_files=[], default_config_dirs=[])
                register_globals(conf)
                transport = oslo_messaging.get_rpc_transport(conf, url=url)
                self._transports[url] = transport
            return transport

    def ping(self, host: str, spec: ProbeSpec, environ: Mapping[str, str]) -> str:
        oslo_messaging = _oslo_messaging()
        transport = self._transport(secret(environ, spec.transport_url_env))
        # Nova's RPC goes through its own control exchange ("nova", nova/rpc.py), not oslo.messaging's
        # default ("openstack"): a ping sent there reaches no queue and times out against a live service.
        target = oslo_messaging.Target(
            exchange=NOVA_EXCHANGE, topic=spec.topic, server=host, version=_VERSIONS.get(spec.topic)
        )
        client = oslo_messaging.get_rpc_client(transport, target, timeout=spec.timeout_s)
        try:
            client.call({}, PING_METHOD)
        except oslo_messaging.MessagingTimeout:
            raise ProbeFailed(f"{spec.topic} on {host}: no answer within {spec.timeout_s:g} s") from None
        except (
            oslo_messaging.rpc.dispatcher.NoSuchMethod,
            oslo_messaging.rpc.dispatcher.UnsupportedVersion,
            oslo_messaging.RemoteError,
        ) as answered:
            return f"{spec.topic} on {host} answered ({type(answered).__name__})"
        return f"{spec.topic} on {host} answered"

    def close(self, timeout_s: float = 10.0) -> None:
        """Clean each transport up, giving up on one after ``timeout_s``.

        oslo.messaging's cleanup joins its reply-queue thread with no timeout, and that thread does not
        stop while the broker hangs (a SIGSTOPped RabbitMQ: it waits on the connection for ever), so an
        unguarded close had not returned after 40 s (the likely cause of the first pytest's hang in
        its teardown); with a live broker it takes up to 5 s (the thread's consume timeout grows to 5 s).
        The cleanup runs in a daemon thread; one that is still blocked is left behind (its threads are
        daemons too), and the next close does not wait for it again.
        """
        with self._lock:
            transports = list(self._transports.values())
            self._transports.clear()
        for transport in transports:
            cleanup = threading.Thread(target=transport.cleanup, name="haven-rpc-cleanup", daemon=True)
            cleanup.start()
            cleanup.join(timeout_s)
            if cleanup.is_alive():
                log.warning(
                    "oslo.messaging's transport cleanup still blocked after %g s: left behind", timeout_s
                )


def _oslo_messaging() -> Any:
    """oslo.messaging, imported the first time in a daemon thread of its own that nobody joins.

    Importing it imports eventlet, and a thread that first imports eventlet never releases its
    thread-state lock when it ends (eventlet 0.41, Python 3.11: ``import eventlet`` in a
    ``threading.Thread``, then ``join`` never returns although the thread is gone). The probes run in
    asyncio's default executor, whose shutdown at the end of ``asyncio.run`` joins its threads without
    a timeout: with nova_rpc probes, haven's control plane never finished stopping.
    """
    if "oslo_messaging" not in sys.modules:
        imported = threading.Event()

        def load() -> None:
            try:
                importlib.import_module("haven.notify.oslo")
            finally:
                imported.set()

        threading.Thread(target=load, name="haven-oslo-import", daemon=True).start()
        imported.wait(120)
    from haven.notify.oslo import oslo_messaging  # an import that failed above fails here, told

    return oslo_messaging


# Options oslo.messaging's RPC client reads from the client's config but registers on the global cfg.CONF
# only (its own ConfFixture registers the same ones): (module, attribute, group).
_GLOBAL_OPTS = (
    ("oslo_messaging._metrics.client", "oslo_messaging_metrics", "oslo_messaging_metrics"),
    ("oslo_messaging._tracing.client", "oslo_messaging_tracing", "oslo_messaging_tracing"),
)


def register_globals(conf: Any) -> None:
    for module, attribute, group in _GLOBAL_OPTS:
        try:
            opts = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):
            continue  # an older oslo.messaging without it
        conf.register_opts(opts, group=group)


async def in_thread(call: Any, *args: Any) -> str:
    result: str = await asyncio.to_thread(call, *args)
    return result
