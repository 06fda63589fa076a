"""Prometheus Alertmanager's API v2 as one of haven's ports: post a batch of alerts, read back what it holds.

Used by haven.explain.alerting (haven's incidents, grouped by root cause, sent on a timer) and by tests.
An alert is labels (its identity: Alertmanager groups, routes and inhibits by them), annotations (words),
and its interval: ``ends_at`` in the future keeps it firing until then, unless sent again; ``ends_at`` at
or before now resolves it. One ``post`` is one HTTP request: the alerts in it reach Alertmanager together
(how haven avoids its inhibition misfiring when the symptom arrives before its cause).

Errors cross as haven's own: no answer, or a 5xx, is a TemporaryError (the next send retries); a 4xx (a
bad label, for instance) a PermanentError with Alertmanager's words.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from haven.domain.errors import PermanentError, TemporaryError

API = "/api/v2/alerts"


@dataclass(frozen=True, slots=True)
class AmAlert:
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: float = 0.0
    ends_at: float = 0.0
    generator_url: str = ""

    @property
    def fingerprint(self) -> tuple[tuple[str, str], ...]:
        """Its identity, as Alertmanager's: the sorted labels."""
        return tuple(sorted(self.labels.items()))

    def document(self) -> dict[str, Any]:
        """The API v2 ``postableAlert``."""
        found: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": _rfc3339(self.starts_at),
            "endsAt": _rfc3339(self.ends_at),
        }
        if self.generator_url:
            found["generatorURL"] = self.generator_url
        return found


def _rfc3339(at: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
    return f"{whole}.{int((at % 1) * 1000):03d}Z"


class Alertmanager:
    """One Alertmanager (or a load balancer before several) at ``url``; a client per call."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s

    async def post(self, alerts: Sequence[AmAlert]) -> None:
        """Every alert in one request (their order kept)."""
        if not alerts:
            return
        await self._call("POST", [a.document() for a in alerts])

    async def alerts(self, *, inhibited: bool = True, silenced: bool = True) -> list[dict[str, Any]]:
        """What Alertmanager holds (``status.state``: active, suppressed; ``inhibitedBy``: by what)."""
        params = {"inhibited": str(inhibited).lower(), "silenced": str(silenced).lower()}
        found = await self._call("GET", None, params)
        return list(found) if isinstance(found, list) else []

    async def _call(self, method: str, body: object, params: Mapping[str, str] | None = None) -> Any:
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s, trust_env=False) as client:
                response = await client.request(method, f"{self.url}{API}", json=body, params=params)
        except httpx.HTTPError as exc:
            raise TemporaryError(f"Alertmanager at {self.url} did not answer: {exc}") from exc
        if response.status_code >= 500:
            raise TemporaryError(f"Alertmanager at {self.url}: {response.status_code} {response.text[:200]}")
        if response.status_code >= 400:
            raise PermanentError(
                f"Alertmanager at {self.url} refused: {response.status_code} {response.text[:300]}"
            )
        return response.json() if response.content else None
