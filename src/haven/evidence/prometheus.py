"""Prometheus' HTTP API: ``GET /api/v1/query_range``, its answer turned into RangeSeries.

Built by the service wiring (or ``haven explain``) from ``[diagnosis] prometheus_url``; read by
haven.explain through the MetricsSource port. httpx's errors end here: an unreachable or failing server is a
TemporaryError, a query Prometheus refuses (``bad_data``, HTTP 400/422) a PermanentError.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from haven.domain.errors import PermanentError, TemporaryError
from haven.evidence.metrics import RangeSeries


class PrometheusMetrics:
    def __init__(self, url: str, *, timeout_s: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self._url = url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._own_client = client is None

    def __repr__(self) -> str:
        return f"PrometheusMetrics({self._url!r})"

    async def query_range(self, query: str, start: float, end: float, step_s: float) -> list[RangeSeries]:
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
        try:
            response = await self._client.get(f"{self._url}/api/v1/query_range", params=params)
        except httpx.HTTPError as exc:
            raise TemporaryError(f"Prometheus at {self._url}: {type(exc).__name__}: {exc}", 5.0) from exc
        body = _json(response)
        if response.status_code in (400, 422) or body.get("errorType") == "bad_data":
            raise PermanentError(f"Prometheus refused {query!r}: {body.get('error', response.text[:200])}")
        if response.status_code != 200 or body.get("status") != "success":
            raise TemporaryError(f"Prometheus at {self._url} answered {response.status_code}", 5.0)
        return _series(body, query)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _series(body: dict[str, Any], query: str) -> list[RangeSeries]:
    data = body.get("data") or {}
    if data.get("resultType") != "matrix":
        raise PermanentError(f"{query!r} is not a range vector (got {data.get('resultType')!r})")
    found = []
    for item in data.get("result", []):
        points = []
        for t, v in item.get("values", []):
            value = float(v)
            if math.isfinite(value):  # "NaN" (a ratio over nothing) and "+Inf" say nothing about a baseline
                points.append((float(t), value))
        labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
        found.append(RangeSeries(labels, tuple(points)))
    return found
