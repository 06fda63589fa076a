"""HAProxy's runtime API over its stats socket: members read from ``show servers state`` and ``show stat``,
and set with ``set server BACKEND/SERVER state ready|drain|maint``, always read back.

Used by the reconciler as its ``Balancer`` port. The socket speaks a small text protocol, one command per
connection (non-interactive mode: HAProxy answers, then closes), so no client library is needed (the ones
on PyPI are unmaintained since 2021). Needs ``stats socket PATH level admin`` in HAProxy's global section.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from haven.domain.controlplane import MemberAdmin, MemberStatus
from haven.domain.errors import NotFound, TemporaryError
from haven.domain.waiting import within

# srv_admin_state bits (HAProxy's server.h): forced, inherited or resolver maintenance (its own
# ``SRV_ADMF_MAINT`` mask, 0x23); forced or inherited drain. Not 0x04 (CMAINT: ``disabled`` in
# haproxy.cfg, a marker that stays once the server is set ready, measured on Debian's 2.6: admin state 4,
# UP, serving) nor 0x40 (HMAINT: its FQDN was set at runtime).
_MAINT_BITS = 0x01 | 0x02 | 0x20
_DRAIN_BITS = 0x08 | 0x10
_OPERATIONAL = {"0": "down", "1": "starting", "2": "up", "3": "stopping"}
# show stat's check_status of a passed check (HAProxy's management guide, "9.1. CSV format"): an
# application's answer only. L4OK (a TCP connect) and L6OK (a TLS handshake) are left out as not known:
# the kernel completes connects for a hung (SIGSTOPped, deadlocked) process until its backlog fills.
_CHECK_PASSED = frozenset({"L7OK", "L7OKC"})
_CHECK_NOT_KNOWN = frozenset({"", "UNK", "INI", "L4OK", "L6OK"})


class HAProxyRuntime:
    def __init__(self, socket_path: str, timeout_s: float = 3.0) -> None:
        self._path = socket_path
        self._timeout_s = timeout_s

    async def members(self) -> Mapping[tuple[str, str], MemberStatus]:
        state = parse_servers_state(await self.command("show servers state"))
        stat = await self.command("show stat -1 4 -1")
        sessions, checks = parse_sessions(stat), parse_check_passed(stat)
        return {
            key: MemberStatus(admin, operational, sessions.get(key, 0), checks.get(key))
            for key, (admin, operational) in state.items()
        }

    async def set_member(self, backend: str, server: str, admin: MemberAdmin) -> MemberStatus:
        answer = (await self.command(f"set server {backend}/{server} state {admin.value}")).strip()
        if answer:  # HAProxy answers nothing on success
            if "No such" in answer:
                raise NotFound(f"HAProxy has no server {backend}/{server}: {answer}")
            raise TemporaryError(
                f"HAProxy refused set server {backend}/{server} state {admin.value}: {answer}"
            )
        member = (await self.members()).get((backend, server))
        if member is None:
            raise NotFound(f"HAProxy no longer lists server {backend}/{server}")
        if member.admin is not admin:
            raise TemporaryError(
                f"HAProxy reports {backend}/{server} {member.admin.value} after it was set {admin.value}"
            )
        return member

    async def command(self, line: str) -> str:
        try:
            reader, writer = await within(asyncio.open_unix_connection(self._path), self._timeout_s)
        except (TimeoutError, OSError) as exc:
            raise TemporaryError(f"cannot reach HAProxy's stats socket {self._path}: {exc}") from exc
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            data = await within(reader.read(), self._timeout_s)
        except (TimeoutError, OSError) as exc:
            raise TemporaryError(f"HAProxy's stats socket failed during {line!r}: {exc}") from exc
        finally:
            writer.close()
        text = data.decode(errors="replace")
        if text.startswith("Permission denied"):
            raise TemporaryError(f"HAProxy's stats socket {self._path} is not at level admin: {text.strip()}")
        return text


def parse_servers_state(text: str) -> dict[tuple[str, str], tuple[MemberAdmin, str]]:
    """``show servers state`` (format 1): (backend, server) -> (admin state, operational state)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header: list[str] = []
    out: dict[tuple[str, str], tuple[MemberAdmin, str]] = {}
    for line in lines:
        if line.startswith("#"):
            header = line[1:].split()
            continue
        fields = line.split()
        if not header or len(fields) < len(header) - 4:  # the version line ("1"), or a truncated row
            continue
        row = dict(zip(header, fields, strict=False))
        bits = int(row["srv_admin_state"])
        admin = (
            MemberAdmin.MAINT
            if bits & _MAINT_BITS
            else MemberAdmin.DRAIN
            if bits & _DRAIN_BITS
            else MemberAdmin.READY
        )
        out[(row["be_name"], row["srv_name"])] = (admin, _OPERATIONAL.get(row["srv_op_state"], "unknown"))
    return out


def parse_sessions(text: str) -> dict[tuple[str, str], int]:
    """``show stat`` CSV: (backend, server) -> current sessions (scur)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    out: dict[tuple[str, str], int] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("svname") in (None, "", "FRONTEND", "BACKEND"):
            continue
        out[(row["pxname"], row["svname"])] = int(row.get("scur") or 0)
    return out


def parse_check_passed(text: str) -> dict[tuple[str, str], bool]:
    """``show stat`` CSV: (backend, server) -> whether HAProxy's own latest completed health check passed
    (``check_status`` L7OK or L7OKC; a check under way is shown as its previous status after "* ").
    Members without checks, none completed yet (UNK, INI), or checked below the application (L4OK,
    L6OK: a hung process still accepts connections) are left out: not known."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    out: dict[tuple[str, str], bool] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        status = (row.get("check_status") or "").lstrip("* ").strip()
        if row.get("svname") in (None, "", "FRONTEND", "BACKEND") or status in _CHECK_NOT_KNOWN:
            continue
        out[(row["pxname"], row["svname"])] = status in _CHECK_PASSED
    return out
