"""RedfishFencer: the Fencer protocol over Redfish BMCs, through sushy.

Built by haven.fencing.registry for the hosts configured with ``driver = "redfish"``; the
recovery engine's fence step calls it. Power off is a ``ForceOff`` reset (no graceful
shutdown: the host is presumed broken and must stop at once); whether it took effect is
only known from the BMC's ``PowerState``, which the fence step polls through
``power_status`` (steps never sleep, so nothing here waits for a state).

sushy is synchronous, so every call runs in a bounded thread pool with a deadline. Its
errors are translated here, at the boundary: no answer, a timeout or a 5xx become
TemporaryError (the fence step retries until its timeout); 401/403 (wrong credentials)
and 404 (no such system) become PermanentError (retrying cannot help). Messages name the
host and the BMC's address, never the password. ``power_status`` reports UNKNOWN when the
BMC does not answer, like the simulated BMCs, so an unreachable BMC is never read as off.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import sushy  # type: ignore[import-untyped]
from sushy import exceptions as sushy_errors

from haven.domain.errors import CloudError, PermanentError, TemporaryError
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower
from haven.fencing.blocking import BlockingCalls
from haven.fencing.config import BmcConfig, Secret

T = TypeVar("T")
_SYSTEMS = "/redfish/v1/Systems/"


class RedfishFencer:
    """Fences the hosts whose BMC speaks Redfish; one sushy client per BMC, made on first use."""

    def __init__(self, bmcs: Iterable[BmcConfig], environ: Mapping[str, str]) -> None:
        self._bmcs = {bmc.host: bmc for bmc in bmcs}
        # Resolved now, so a missing variable stops haven at start-up rather than mid-incident.
        self._passwords = {host: bmc.resolve_password(environ) for host, bmc in self._bmcs.items()}
        self._clients: dict[HostName, sushy.Sushy] = {}
        self._lock = threading.Lock()
        self._calls = BlockingCalls("redfish")

    async def power_off(self, host: HostName) -> None:
        await self._run(host, "power off", lambda: self._reset(host, sushy.ResetType.FORCE_OFF))

    async def power_on(self, host: HostName) -> None:
        await self._run(host, "power on", lambda: self._reset(host, sushy.ResetType.ON))

    async def power_status(self, host: HostName) -> BmcPower:
        try:
            return await self._run(host, "power status", lambda: _power(self._system(host).power_state))
        except TemporaryError:
            return BmcPower.UNKNOWN

    def close(self) -> None:
        self._calls.close()

    # ---- in the pool ------------------------------------------------------------------

    async def _run(self, host: HostName, what: str, call: Callable[[], T]) -> T:
        bmc = self._bmc(host)
        # The deadline covers the client's own connect and read timeouts plus its first login.
        return await self._calls.run(lambda: self._translated(bmc, what, call), 3 * bmc.timeout_s, bmc.where)

    def _translated(self, bmc: BmcConfig, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except sushy_errors.SushyError as exc:
            if not isinstance(exc, sushy_errors.AccessError | sushy_errors.ResourceNotFoundError):
                self._forget(bmc.host)  # a fresh client (and session) next time
            raise _translate(exc, bmc, what) from None

    def _reset(self, host: HostName, value: str) -> None:
        system = self._system(host)
        try:
            system.reset_system(value)
        except sushy_errors.HTTPError:
            # Some BMCs refuse ForceOff on a host that is already off (and On when on): that is
            # success; anything else is re-raised for translation.
            already = sushy.PowerState.OFF if value == sushy.ResetType.FORCE_OFF else sushy.PowerState.ON
            system.refresh()
            if system.power_state != already:
                raise

    def _system(self, host: HostName) -> sushy.resources.system.system.System:
        bmc = self._bmc(host)
        client = self._client(bmc)
        return client.get_system(_SYSTEMS + bmc.system_id if bmc.system_id else None)

    def _client(self, bmc: BmcConfig) -> sushy.Sushy:
        with self._lock:
            client = self._clients.get(bmc.host)
        if client is None:
            password: Secret = self._passwords[bmc.host]
            client = sushy.Sushy(
                bmc.address,
                username=bmc.username,
                password=password.reveal(),
                verify=bmc.verify_tls,
                connect_timeout=bmc.timeout_s,
                read_timeout=bmc.timeout_s,
                # The fence step does the retrying, on its own schedule: one attempt per call here.
                server_side_retries=1,
                server_side_retries_delay=1,
            )
            with self._lock:
                self._clients[bmc.host] = client
        return client

    def _forget(self, host: HostName) -> None:
        with self._lock:
            self._clients.pop(host, None)

    def _bmc(self, host: HostName) -> BmcConfig:
        try:
            return self._bmcs[host]
        except KeyError:
            raise PermanentError(f"{host} has no Redfish BMC configured") from None


def _power(state: str | None) -> BmcPower:
    if state == sushy.PowerState.OFF:
        return BmcPower.OFF
    if state is None:
        return BmcPower.UNKNOWN
    return BmcPower.ON  # on, powering on, powering off (not off yet), paused


def _translate(exc: sushy_errors.SushyError, bmc: BmcConfig, what: str) -> CloudError:
    """A haven error for a sushy error; its text names host and address, never the password."""
    prefix = f"{what} through the {bmc.where}"
    if isinstance(exc, sushy_errors.AccessError):
        return PermanentError(
            f"{prefix}: the BMC refused the credentials of user {bmc.username!r} (HTTP {exc.status_code}); "
            "check username and password"
        )
    if isinstance(exc, sushy_errors.ResourceNotFoundError):
        if "/Systems" not in str(exc):
            return PermanentError(f"{prefix}: no Redfish service answers there (HTTP 404); check address")
        system = bmc.system_id or "(the default system)"
        return PermanentError(f"{prefix}: the BMC has no system {system}; check system_id")
    if isinstance(exc, sushy_errors.ConnectionError) and "SSL" in str(exc):
        return PermanentError(
            f"{prefix}: the BMC's TLS certificate is not trusted ({_tls_cause(exc)}); install its CA, "
            "or set verify_tls = false for this host in a lab"
        )
    if isinstance(exc, sushy_errors.ConnectionError):
        return TemporaryError(f"{prefix}: the BMC did not answer ({_cause(exc)})")
    if isinstance(exc, sushy_errors.ServerSideError):
        return TemporaryError(f"{prefix}: the BMC failed (HTTP {exc.status_code})")
    if isinstance(exc, sushy_errors.HTTPError):
        return PermanentError(f"{prefix}: the BMC refused the request (HTTP {exc.status_code})")
    return PermanentError(f"{prefix}: {type(exc).__name__}")


def _cause(exc: sushy_errors.ConnectionError) -> str:
    text = str(exc)
    for marker in ("Connection refused", "timed out", "Name or service not known", "No route to host"):
        if marker in text:
            return marker.lower()
    return "connection failed"


def _tls_cause(exc: sushy_errors.ConnectionError) -> str:
    text = str(exc)
    for marker in ("self-signed certificate", "certificate verify failed", "hostname mismatch"):
        if marker in text:
            return marker
    return "TLS handshake failed"
