"""IpmiFencer: the Fencer protocol over IPMI 2.0 (lanplus) BMCs, through pyghmi.

Built by haven.fencing.registry for the hosts configured with ``driver = "ipmi"``; the
recovery engine's fence step calls it. Each call opens an RMCP+ session, sends the raw
chassis command (Chassis Control "power down"/"power up", or Get Chassis Status) and
logs out: no keep-alive session lingers, and no OEM probing delays a fence. Power down
is sent even when the host already reads off, so it stays off; whether it took effect
is only known from the chassis status, which the fence step polls through
``power_status`` (nothing here waits).

Cipher suites: pyghmi proposes suite 17 (SHA-256) first and, when a BMC refuses it as the
IPMI spec says a suite-3-only BMC must, retries with suite 3 (SHA-1) on its own; there is
no public knob to choose the suite, and none is needed against a BMC that follows the
spec. (virtualbmc's server accepts the suite-17 proposal and then answers in suite 3,
which no client can follow; the test fixture in tests/servers/ipmi.py makes the emulator
refuse instead, like a real suite-3-only BMC, and so exercises pyghmi's fallback.)

pyghmi shares sessions between Command objects through class-level tables, and one of
them keeps a stale entry after logout (see ``_forget_stale_login``); the entry for this
BMC is dropped before each login. pyghmi is synchronous: calls run in a bounded thread
pool with a deadline, so a dead BMC port fails in bounded time. Errors are translated
here: no answer becomes TemporaryError (retried by the fence step until its timeout),
refused credentials become PermanentError. Messages name the host and BMC address, never
the password. ``power_status`` reports UNKNOWN when the BMC does not answer, like the simulated BMCs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from pyghmi import exceptions as pyghmi_errors  # type: ignore[import-untyped]
from pyghmi.ipmi import command as ipmi_command  # type: ignore[import-untyped]
from pyghmi.ipmi.private import session as ipmi_session  # type: ignore[import-untyped]

from haven.domain.errors import CloudError, PermanentError, TemporaryError
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower
from haven.fencing.blocking import BlockingCalls
from haven.fencing.config import BmcConfig

# IPMI 2.0 spec, chassis commands (netfn 0x00): 0x01 Get Chassis Status, 0x02 Chassis Control.
_CHASSIS, _GET_STATUS, _CONTROL = 0x00, 0x01, 0x02
_POWER_DOWN, _POWER_UP = 0x00, 0x01
_AUTH_FAILURES = ("password", "unauthorized", "invalid user", "privilege", "authentication", "kg")


class IpmiFencer:
    """Fences the hosts whose BMC speaks IPMI over LAN (RMCP+)."""

    def __init__(self, bmcs: Iterable[BmcConfig], environ: Mapping[str, str]) -> None:
        self._bmcs = {bmc.host: bmc for bmc in bmcs}
        # Resolved now, so a missing variable stops haven at start-up rather than mid-incident.
        self._passwords = {host: bmc.resolve_password(environ) for host, bmc in self._bmcs.items()}
        self._calls = BlockingCalls("ipmi")

    async def power_off(self, host: HostName) -> None:
        await self._run(host, "power off", _CONTROL, [_POWER_DOWN])

    async def power_on(self, host: HostName) -> None:
        await self._run(host, "power on", _CONTROL, [_POWER_UP])

    async def power_status(self, host: HostName) -> BmcPower:
        try:
            data = await self._run(host, "power status", _GET_STATUS, [])
        except TemporaryError:
            return BmcPower.UNKNOWN
        return BmcPower.ON if data and data[0] & 0x01 else BmcPower.OFF

    def close(self) -> None:
        self._calls.close()

    async def _run(self, host: HostName, what: str, cmd: int, data: list[int]) -> list[int]:
        bmc = self._bmc(host)
        # pyghmi gives up on a silent BMC after about 5.5 s by itself; the deadline is a backstop.
        deadline = max(bmc.timeout_s, 8.0) + 2.0
        return await self._calls.run(lambda: self._call(bmc, what, cmd, data), deadline, bmc.where)

    def _call(self, bmc: BmcConfig, what: str, cmd: int, data: list[int]) -> list[int]:
        prefix = f"{what} through the {bmc.where}:{bmc.port}"
        password = self._passwords[bmc.host].reveal()
        _forget_stale_login(bmc, password)
        try:
            session = ipmi_command.Command(
                bmc=bmc.address, userid=bmc.username, password=password, port=bmc.port, keepalive=False
            )
        except pyghmi_errors.PyghmiException as exc:
            raise _translate_login(exc, bmc, prefix) from None
        try:
            response: dict[str, Any] = session.raw_command(netfn=_CHASSIS, command=cmd, data=data)
        except pyghmi_errors.PyghmiException as exc:
            raise TemporaryError(f"{prefix}: the BMC did not answer the command ({_short(exc)})") from None
        finally:
            _logout(session)
        if "error" in response:
            raise _translate_reply(str(response["error"]), prefix)
        return list(response.get("data", []))

    def _bmc(self, host: HostName) -> BmcConfig:
        try:
            return self._bmcs[host]
        except KeyError:
            raise PermanentError(f"{host} has no IPMI BMC configured") from None


def _translate_login(exc: Exception, bmc: BmcConfig, prefix: str) -> CloudError:
    text = _short(exc)
    if any(marker in text.lower() for marker in _AUTH_FAILURES):
        return PermanentError(
            f"{prefix}: the BMC refused the credentials of user {bmc.username!r} ({text}); "
            "check username and password"
        )
    return TemporaryError(f"{prefix}: the BMC did not answer ({text})")


def _translate_reply(error: str, prefix: str) -> CloudError:
    if "timeout" in error.lower():
        return TemporaryError(f"{prefix}: the BMC did not answer the command ({error})")
    if "privilege" in error.lower():
        return PermanentError(f"{prefix}: the BMC user may not do this ({error}); give it operator rights")
    return TemporaryError(f"{prefix}: the BMC refused the command ({error})")


def _forget_stale_login(bmc: BmcConfig, password: str) -> None:
    """Drop pyghmi's record of an earlier login to this BMC, so the next one really logs in.

    pyghmi 1.6.19 files a login in progress under (bmc, user, password, port, kg) as given
    (str), but removes it under the encoded values (bytes), so the entry outlives the
    session; a later Command with the same credentials is handed that logged-out session
    and fails ("'<' not supported between 'float' and 'NoneType'"). Each call here logs
    in and out, so the entry is always stale by then.
    """
    ipmi_session.Session.initting_sessions.pop((bmc.address, bmc.username, password, bmc.port, None), None)


def _short(exc: Exception) -> str:
    # pyghmi's messages carry no credentials; the first line is enough and bounds the length.
    # A silent BMC makes pyghmi raise with no message at all.
    text = str(exc) if exc.args and exc.args[0] else "no answer"
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def _logout(session: ipmi_command.Command) -> None:
    with contextlib.suppress(Exception):  # a failed logout must not hide the command's own result
        session.ipmi_session.logout()
