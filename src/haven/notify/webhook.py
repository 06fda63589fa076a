"""Webhooks: each published event POSTed as JSON to a URL, signed with HMAC-SHA256.

Built by the service wiring from the ``[publish]`` config, called by the
Publisher once per attempt. The receiver checks, with the shared secret::

    X-Haven-Signature: sha256=<hex HMAC-SHA256(secret, f"{X-Haven-Timestamp}.".encode() + body)>

and refuses a timestamp too far from its own clock, so a captured request cannot
be replayed later. ``X-Haven-Event-Id`` stays the same across retries: a
receiver deduplicates on it (delivery is at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Callable

import httpx

from haven.domain.publishing import PublishedEvent
from haven.notify.sinks import DeliveryError

SIGNATURE_HEADER = "X-Haven-Signature"
TIMESTAMP_HEADER = "X-Haven-Timestamp"
EVENT_ID_HEADER = "X-Haven-Event-Id"
EVENT_TYPE_HEADER = "X-Haven-Event"
DEFAULT_TIMEOUT_S = 10.0


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of the signature header for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes, timestamp: str, body: bytes, signed: str, now: float, tolerance_s: float = 300
) -> bool:
    """What a receiver written in Python can call: right signature, and sent recently."""
    try:
        fresh = abs(now - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), signed)


def safe_url(url: str) -> str:
    """The URL without credentials, query or fragment (which may hold tokens): for names and messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class WebhookSink:
    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._secret = secret
        self._wall_clock = wall_clock  # the signature's timestamp is checked against the receiver's clock
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self.name = f"webhook:{safe_url(url)}"

    def __repr__(self) -> str:
        return f"WebhookSink({safe_url(self._url)!r})"  # never the secret

    async def deliver(self, event: PublishedEvent) -> None:
        body = json.dumps(
            {
                "id": event.id,
                "event_type": event.event_type,
                "priority": event.priority.value,
                "timestamp": event.created_at,
                "payload": dict(event.payload),
            },
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(self._wall_clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "haven-webhook",
            EVENT_ID_HEADER: event.id,
            EVENT_TYPE_HEADER: event.event_type,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self._secret, timestamp, body),
        }
        where = safe_url(self._url)
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:  # connection refused, timeout, protocol error: worth another try
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}", retry=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        what = f"{where} answered {status} {response.reason_phrase}"
        if status == 429 or status >= 500:
            raise DeliveryError(what, retry=True, retry_after=_retry_after(response))
        raise DeliveryError(what, retry=False)  # 3xx and 4xx: the same request will not do better

    async def aclose(self) -> None:
        await self._client.aclose()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date, or nothing: haven's own back-off applies
