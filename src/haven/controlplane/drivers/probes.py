"""Probes of a replica's own health: HTTP (a version document, oslo.middleware's /healthcheck), TCP, and
the service's own protocol (haven.controlplane.drivers.service_probes: a Keystone token round trip, an
SQL query, an AMQP round trip, Nova's service list, a Nova RPC ping, memcached's ``version``). Nova's
service list depends on Keystone: when it fails for Keystone's reason, the replica is judged by its
version document (``_nova``).
Keystone's own probe (a token issued and validated on the replica) refused haven's probe account (401 to
its password: CredentialsRefused) judges the replica by its version document too, and its result says so
(``credentials_refused``, the reconciler's ``probe_credentials`` alert): a wrong password in haven's
configuration never drains or restarts Keystone.

Used by the reconciler as its ``Prober``. A probe never raises: a refused connection, an unexpected
status, or no answer within ``timeout_s`` (a hung process keeps its port open) is a failed result
with words saying which.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import httpx

from haven.controlplane.drivers import service_probes as sp
from haven.domain.controlplane import ProbeKind, ProbeResult, ProbeSpec
from haven.domain.waiting import within

_ANSWERED = (OSError, httpx.HTTPError, ValueError)


class NetworkProber:
    """``wall_clock``: stamps results (the reconciler's clock, so results and unit times compare);
    ``environ``: where the probes' passwords and Nova's transport URL are read (``password_env``...);
    ``tokens``: the Keystone tokens kept for the probes that need one (``nova_services``)."""

    def __init__(
        self,
        wall_clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
        tokens: sp.TokenCache | None = None,
    ) -> None:
        self._now = wall_clock
        self._environ = dict(environ or {})
        # No connection reuse: each probe must reach the replica afresh, as a new client would.
        self._client = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), trust_env=False)
        self._tokens = tokens if tokens is not None else sp.TokenCache()
        self._rpc = sp.NovaRpc()
        # Keystone's own probe, per probe spec: when each replica last issued haven's account a token, and
        # since when each has refused it (``_refusal``).
        self._issued: dict[str, dict[str, float]] = {}
        self._refusing: dict[tuple[str, str], float] = {}

    async def close(self) -> None:
        await self._client.aclose()
        await asyncio.to_thread(self._rpc.close)

    async def probe(self, address: str, spec: ProbeSpec, host: str = "") -> ProbeResult:
        """``host``: the controller's name (Nova's ``host`` of its conductor and scheduler)."""
        refused = False
        try:
            if spec.kind is ProbeKind.NOVA_SERVICES:
                detail = await self._nova(f"http://{_host(address)}:{spec.port}", spec)
            else:
                try:
                    detail = await within(self._probe(address, spec, host or address), spec.timeout_s)
                    if spec.kind is ProbeKind.KEYSTONE:
                        self._issued.setdefault(repr(spec), {})[address] = self._now()
                        self._refusing.pop((repr(spec), address), None)
                except sp.CredentialsRefused as exc:  # Keystone's own probe: a 401 to haven's password
                    self._refusal(address, spec, exc)
                    refused = True
                    base = f"http://{_host(address)}:{spec.port}"
                    detail = await within(
                        sp.version_document(self._client, base, spec, str(exc)), spec.timeout_s
                    )
            ok = True
        except (TimeoutError, httpx.TimeoutException):  # the client's own timeout may fire first
            # "no answer within": the planner's TIMED_OUT (a hung replica is killed before its restart)
            ok, detail = False, f"no answer within {spec.timeout_s:g} s"
        except sp.ProbeFailed as exc:
            ok, detail = False, str(exc)
        except _ANSWERED as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a client library's own error (PyMySQL, py-amqp, oslo.messaging)
            ok, detail = False, f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
        refused = refused or (spec.kind is ProbeKind.NOVA_SERVICES and bool(self._tokens.refused(spec)))
        return ProbeResult(ok, self._now(), detail, credentials_refused=refused)

    def _refusal(self, address: str, spec: ProbeSpec, exc: sp.CredentialsRefused) -> None:
        """A 401 to haven's password from Keystone's replica at ``address`` is haven's configuration only
        while no other replica has issued the account a token since this one began refusing it: a replica
        that refuses what another accepts (a stale database, a wrong connection) fails, as any. Every
        replica refusing (a rotated password: the others' tokens predate the refusals) stays haven's."""
        since = self._refusing.setdefault((repr(spec), address), self._now())
        others = [a for a, at in self._issued.get(repr(spec), {}).items() if a != address and at >= since]
        if others:
            raise sp.ProbeFailed(f"{exc}; but Keystone at {', '.join(sorted(others))} issues it tokens")

    async def _nova(self, base: str, spec: ProbeSpec) -> str:
        """nova-api's deep probe, where a failure that is Keystone's is not the replica's.

        Keystone's: no token to be had (``_token``); keystonemiddleware's 503 (it could not validate the
        token with Keystone: once its cache of a kept token ends, at once on a restarted replica); a 401
        to the kept token when Keystone issues no new one; an os-services call with no answer in time. The
        503 and the timeout are Keystone's only when Keystone fails haven too (``_keystone_down``: a new
        token asked for now): keystonemiddleware answers the same 503 for the replica's own trouble with
        Keystone (its service credentials, its auth_url, its network), and a hung replica times out as
        one waiting on a hung Keystone. Then the replica is judged by its version document (HAProxy's
        check; a hung replica fails it too), and the detail says why: a Keystone outage neither drains nor
        restarts a nova-api replica, nor keeps one haven restarted out of the load balancer. A 401 with
        Keystone up gets one retry with a new token (revoked, expired early); a second 401 is the
        replica's. Keystone refusing haven's own account (401 to its password: CredentialsRefused) is
        judged the same way, by the version document, and each result says so (``credentials_refused``,
        the reconciler's ``probe_credentials`` alert): haven's configuration, not Keystone's health. Each
        request has the probe's timeout; the token fetch its own (a slow Keystone is not a late
        nova-api)."""
        token, why = await self._token(spec)
        renewed = False
        while token is not None:
            try:
                return await within(sp.nova_services(self._client, base, spec, token), spec.timeout_s)
            except sp.KeystoneUnavailable as exc:
                # keystonemiddleware says the same for the replica's own trouble reaching Keystone (its
                # service credentials, its auth_url, its network): Keystone's only if it fails haven too.
                down = await self._keystone_down(spec)
                if down is None:
                    raise sp.ProbeFailed(
                        f"{exc}, while Keystone issues haven a token: the replica's own validation fails"
                    ) from None
                why = f"{exc}; {down}"
                break
            except (TimeoutError, httpx.TimeoutException):
                # A hung Keystone hangs the replica's validation: Keystone's only if it fails haven too
                # (then the version document tells a hung replica, which does not answer it either).
                down = await self._keystone_down(spec)
                if down is None:
                    raise
                why = f"GET {sp.NOVA_SERVICES_PATH}: no answer within {spec.timeout_s:g} s; {down}"
                break
            except sp.TokenRefused as refused:
                self._tokens.forget(spec, token)
                if renewed:
                    raise sp.ProbeFailed(f"{refused} to a new token") from None
                token, why = await self._token(spec)
                why = f"{refused}, then {why}"
                renewed = True
        return await within(sp.version_document(self._client, base, spec, why), spec.timeout_s)

    async def _keystone_down(self, spec: ProbeSpec) -> str | None:
        """None when Keystone issues haven a new token now (within the probe's timeout), else why not:
        a deep probe's failure is put on Keystone only when Keystone fails haven too. A missing
        password is the probe's own failure (ProbeFailed)."""
        password = sp.secret(self._environ, spec.password_env)
        try:
            await within(self._tokens.issue_new(self._client, spec, password), spec.timeout_s)
            return None
        except (TimeoutError, httpx.TimeoutException):
            return f"Keystone issues no token either (no answer within {spec.timeout_s:g} s)"
        except sp.CredentialsRefused as exc:
            return f"Keystone issues haven no token either ({exc})"
        except (sp.ProbeFailed, *_ANSWERED) as exc:
            return f"Keystone issues no token either ({type(exc).__name__}: {exc})"

    async def _token(self, spec: ProbeSpec) -> tuple[str | None, str]:
        """The kept (or a new) token for ``spec``'s account, or None and why none could be had. A
        missing password is the probe's own failure (ProbeFailed), not Keystone's."""
        password = sp.secret(self._environ, spec.password_env)
        try:
            return await within(self._tokens.get(self._client, spec, password), spec.timeout_s), ""
        except (TimeoutError, httpx.TimeoutException):
            why = f"no answer within {spec.timeout_s:g} s"
        except _ANSWERED as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except sp.ProbeFailed as exc:
            why = str(exc)
        return None, f"no token from Keystone: {why}"

    async def _probe(self, address: str, spec: ProbeSpec, host: str) -> str:
        base = f"http://{_host(address)}:{spec.port}"
        match spec.kind:
            case ProbeKind.HTTP:
                return await self._http(base, spec)
            case ProbeKind.TCP:
                return await _tcp(address, spec.port)
            case ProbeKind.KEYSTONE:
                return await sp.keystone(self._client, base, spec, self._environ)
            case ProbeKind.NOVA_SERVICES:
                return await self._nova(base, spec)
            case ProbeKind.SQL:
                return await sp.in_thread(sp.sql, address, spec, self._environ)
            case ProbeKind.AMQP:
                return await sp.in_thread(sp.amqp_round_trip, address, spec, self._environ)
            case ProbeKind.NOVA_RPC:
                return await sp.in_thread(self._rpc.ping, host, spec, self._environ)
            case ProbeKind.MEMCACHED:
                return await sp.memcached_version(address, spec)

    async def _http(self, base: str, spec: ProbeSpec) -> str:
        response = await self._client.get(f"{base}{spec.path}", timeout=spec.timeout_s)
        if response.status_code not in spec.expect_status:
            raise sp.ProbeFailed(f"GET {spec.path}: {response.status_code}")
        return f"GET {spec.path}: {response.status_code}"


async def _tcp(address: str, port: int) -> str:
    _, writer = await asyncio.open_connection(address, port)
    writer.close()
    await writer.wait_closed()
    return f"tcp {port}: connected"


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
