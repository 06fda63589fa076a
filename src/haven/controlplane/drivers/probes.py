"""Probes of a replica's own health: HTTP (a version document, oslo.middleware's /healthcheck) and TCP.

Used by the reconciler as its ``Prober``. A probe never raises: a refused connection, an unexpected
status, or no answer within ``timeout_s`` (a hung process keeps its port open) is a failed result
with words saying which.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from haven.domain.controlplane import ProbeKind, ProbeResult, ProbeSpec


class NetworkProber:
    """``wall_clock``: stamps results (the reconciler's clock, so results and unit times compare)."""

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self._now = wall_clock
        # No connection reuse: each probe must reach the replica afresh, as a new client would.
        self._client = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), trust_env=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def probe(self, address: str, spec: ProbeSpec) -> ProbeResult:
        try:
            if spec.kind is ProbeKind.HTTP:
                ok, detail = await asyncio.wait_for(self._http(address, spec), spec.timeout_s)
            else:
                ok, detail = await asyncio.wait_for(_tcp(address, spec.port), spec.timeout_s)
        except TimeoutError:
            ok, detail = False, f"no answer within {spec.timeout_s:g} s"
        except (OSError, httpx.HTTPError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return ProbeResult(ok, self._now(), detail)

    async def _http(self, address: str, spec: ProbeSpec) -> tuple[bool, str]:
        url = f"http://{_host(address)}:{spec.port}{spec.path}"
        response = await self._client.get(url, timeout=spec.timeout_s)
        ok = response.status_code in spec.expect_status
        return ok, f"GET {spec.path}: {response.status_code}"


async def _tcp(address: str, port: int) -> tuple[bool, str]:
    _, writer = await asyncio.open_connection(address, port)
    writer.close()
    await writer.wait_closed()
    return True, f"tcp {port}: connected"


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
