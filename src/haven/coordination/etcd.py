"""haven's boundary to etcd: the few calls the elector and the host leases need, async, errors translated.

Who calls it: ``haven.coordination.election_etcd`` (leader election), ``haven.coordination.leases``
(host heartbeats) and ``haven.coordination.watching`` (watches that survive an etcd restart).
Nothing outside haven.coordination sees etcd types or etcd errors.

Which client, and why
---------------------
Evaluated: **etcd3gw** 2.7 (OpenStack-maintained, since dropped from the lock; grpc-gateway JSON over HTTP,
synchronous) and **aetcd** 1.0 (asyncio over gRPC, maintained). Chosen: neither as a library, but
etcd's own documented grpc-gateway JSON API (the same one etcd3gw speaks) through **httpx**'s
async client, which haven already depends on. Why:

- etcd3gw's watch hangs forever, silently, when its stream ends (etcd restart; measured, see
  FACTS.md): its reader runs in a hidden thread and the iterator never learns the stream died.
  Half of what the elector and the lease view need is that watch.
- importing etcd3gw imports futurist, which imports eventlet (present through oslo.messaging):
  a DeprecationWarning at import (fatal under our filterwarnings=error) and eventlet loaded into
  the engine for nothing; and every call would cost a thread.
- aetcd would add grpcio and protobuf to the engine for what is a handful of small posts per
  second, and its watch would still need the liveness check haven does anyway.
- With httpx every call is a coroutine with its own timeout (no threads, nothing blocks the
  loop), the end of a watch stream is an exception the caller sees, and cancelling a watch closes
  its connection. The part written here is ~10 endpoints of JSON (lease grant/keepalive/revoke,
  txn, range, put, deleterange, status, watch).

Errors: connection failures and timeouts become ``CoordinationUnavailable`` (naming the URL);
any other etcd answer haven cannot use becomes ``CoordinationError``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from haven.domain.errors import CoordinationError, CoordinationUnavailable

DEFAULT_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd stores it; ``create_revision`` is unique and grows across the whole cluster."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True)
class WatchEvent:
    """A put or a delete (lease expiry and revoke are deletes) at ``kv.mod_revision``."""

    deleted: bool
    kv: KeyValue


@dataclass(frozen=True)
class Status:
    """Who answered and in which raft term: a restarted single-node etcd answers in a new term."""

    member_id: str
    raft_term: int
    revision: int


class WatchCompacted(CoordinationError):
    """The revision to watch from was compacted away: re-read the keys, then watch again."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"etcd compacted history up to revision {compact_revision}")
        self.compact_revision = compact_revision


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str) -> str:
    """The range end that selects every key starting with ``prefix`` (its last byte plus one)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw).decode()


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(raw["key"]).decode(),
        value=_unb64(raw.get("value", "")),
        create_revision=int(raw.get("create_revision", 0)),
        mod_revision=int(raw.get("mod_revision", 0)),
        lease=int(raw.get("lease", 0)),
    )


class EtcdClient:
    """One etcd endpoint (``http://host:port``); ``url`` is what errors name."""

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, display_url: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.url = display_url or self.base_url
        self.timeout_s = timeout_s
        self._http = httpx.AsyncClient(base_url=f"{self.base_url}/v3/", timeout=timeout_s)
        self._severed = False

    async def aclose(self) -> None:
        await self._http.aclose()

    def sever(self) -> None:
        """Cut this client off for good: every later call fails as if etcd were unreachable.

        The leader-loss drill uses it to model a SIGKILLed engine inside one process: nothing more
        reaches etcd from it (no keep-alive, no revoke), so its lease is left to expire on its own.
        """
        self._severed = True

    async def _post(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self._severed:
            raise self.unavailable(f"{what} (client severed)")
        try:
            response = await self._http.post(path, json=payload)
        except httpx.TransportError as exc:  # connect/read errors and timeouts
            raise self.unavailable(what, exc) from exc
        if response.status_code == 200:
            answer: dict[str, Any] = response.json()
            return answer
        if response.status_code in (502, 503, 504):
            raise self.unavailable(f"{what} (HTTP {response.status_code})")
        try:
            detail = response.json().get("error") or response.text
        except ValueError:
            detail = response.text
        raise CoordinationError(f"etcd at {self.url}: {what} failed (HTTP {response.status_code}): {detail}")

    def unavailable(self, what: str, exc: BaseException | None = None) -> CoordinationUnavailable:
        cause = f" ({type(exc).__name__})" if exc is not None else ""
        return CoordinationUnavailable(
            f"etcd at {self.url} cannot be reached: {what} failed{cause}",
            hint="check that etcd runs and listens there (etcdctl --endpoints=... endpoint health)",
        )

    async def status(self) -> Status:
        raw = await self._post("status", "maintenance/status", {})
        header = raw.get("header", {})
        return Status(str(header.get("member_id", "")), int(header.get("raft_term", 0)),
                      int(header.get("revision", 0)))  # fmt: skip

    # --- leases ---------------------------------------------------------------------------------

    async def grant(self, ttl_s: int) -> tuple[int, int]:
        """A new lease: (id, granted TTL; etcd raises too short TTLs to its minimum)."""
        raw = await self._post("lease grant", "lease/grant", {"TTL": ttl_s, "ID": 0})
        return int(raw["ID"]), int(raw["TTL"])

    async def keepalive(self, lease_id: int) -> int:
        """Refresh a lease; its remaining TTL, or 0 when it no longer exists (expired or revoked)."""
        raw = await self._post("lease keep-alive", "lease/keepalive", {"ID": lease_id})
        return max(0, int(raw.get("result", {}).get("TTL", 0)))

    async def revoke(self, lease_id: int) -> None:
        """Revoke a lease (its keys are deleted); a lease already gone is not an error."""
        try:
            await self._post("lease revoke", "kv/lease/revoke", {"ID": lease_id})
        except CoordinationError as exc:
            if "not found" not in str(exc):
                raise

    # --- keys -----------------------------------------------------------------------------------

    async def create(self, key: str, value: bytes, lease_id: int) -> tuple[bool, KeyValue | None]:
        """Create ``key`` only if absent (create_revision == 0): (created?, the key as it now is)."""
        enc = _b64(key)
        txn = {
            "compare": [{"key": enc, "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
            "success": [{"request_put": {"key": enc, "value": base64.b64encode(value).decode(),
                                         "lease": lease_id}},
                        {"request_range": {"key": enc}}],
            "failure": [{"request_range": {"key": enc}}],
        }  # fmt: skip
        raw = await self._post("create-if-absent transaction", "kv/txn", txn)
        ranges = [answer.get("response_range", {}) for answer in raw.get("responses", [])]
        kvs = [kv for found in ranges for kv in found.get("kvs", [])]
        return bool(raw.get("succeeded", False)), (_kv(kvs[0]) if kvs else None)

    async def put(self, key: str, value: bytes, lease_id: int = 0) -> int:
        """Write ``key``; the store's revision after the write."""
        payload: dict[str, Any] = {"key": _b64(key), "value": base64.b64encode(value).decode()}
        if lease_id:
            payload["lease"] = lease_id
        raw = await self._post("put", "kv/put", payload)
        return int(raw.get("header", {}).get("revision", 0))

    async def get(self, key: str, *, prefix: bool = False) -> tuple[int, list[KeyValue]]:
        """(store revision, the key or every key under the prefix)."""
        payload: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            payload["range_end"] = _b64(prefix_end(key))
        raw = await self._post("range read", "kv/range", payload)
        return int(raw.get("header", {}).get("revision", 0)), [_kv(kv) for kv in raw.get("kvs", [])]

    async def delete(self, key: str) -> None:
        await self._post("delete", "kv/deleterange", {"key": _b64(key)})

    # --- watch ----------------------------------------------------------------------------------

    async def watch(self, key: str, *, prefix: bool, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        """Batches of events from ``start_revision`` on; ends by raising, never silently.

        ``CoordinationUnavailable`` when the connection breaks or ends, ``WatchCompacted`` when
        ``start_revision`` is gone from etcd's history.
        """
        if self._severed:
            raise self.unavailable("watch (client severed)")
        create: dict[str, Any] = {"key": _b64(key), "start_revision": start_revision}
        if prefix:
            create["range_end"] = _b64(prefix_end(key))
        try:
            async with self._http.stream(
                "POST",
                "watch",
                json={"create_request": create},
                timeout=httpx.Timeout(self.timeout_s, read=None),
            ) as response:
                if response.status_code != 200:
                    body = (await response.aread()).decode(errors="replace")
                    status = response.status_code
                    raise CoordinationError(f"etcd at {self.url}: watch refused (HTTP {status}): {body}")
                async for line in response.aiter_lines():
                    if line.strip():
                        events = self._watch_events(json.loads(line))
                        if events:
                            yield events
        except httpx.TransportError as exc:
            raise self.unavailable("watch", exc) from exc
        raise self.unavailable("watch (stream ended)")

    def _watch_events(self, chunk: dict[str, Any]) -> list[WatchEvent]:
        result = chunk.get("result")
        if result is None:
            raise CoordinationError(f"etcd at {self.url}: watch error: {chunk.get('error', chunk)}")
        if int(result.get("compact_revision", 0)):
            raise WatchCompacted(int(result["compact_revision"]))
        if result.get("canceled"):
            raise CoordinationError(f"etcd at {self.url}: watch canceled: {result.get('cancel_reason', '')}")
        return [
            WatchEvent(deleted=event.get("type") == "DELETE", kv=_kv(event["kv"]))
            for event in result.get("events", [])
        ]
