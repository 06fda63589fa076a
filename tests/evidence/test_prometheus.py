"""haven.evidence.prometheus: range queries against Debian's real Prometheus scraping a tiny exporter the
test serves; the answers Prometheus can give (refusals, outages, NaN) through httpx's mock transport."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from haven.domain.errors import PermanentError, TemporaryError
from haven.evidence.metrics import RangeSeries, RecordedMetrics
from haven.evidence.prometheus import PrometheusMetrics
from servers.process import free_port
from servers.prometheus import running_prometheus


class Exporter:
    """Serves ``glance_p95_seconds`` at /metrics with whatever value the test sets."""

    def __init__(self) -> None:
        self.value = 0.4
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f'glance_p95_seconds{{service="glance-api"}} {exporter.value}\n'.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    started = Exporter()
    started.thread.start()
    yield started
    started.server.shutdown()
    started.server.server_close()
    started.thread.join(5)


@pytest.fixture
def prometheus(tmp_path: Path, exporter: Exporter) -> Iterator[str]:
    with running_prometheus(tmp_path, "lab", exporter.port) as url:
        yield url


@pytest.mark.slow
async def test_a_range_query_reads_what_prometheus_scraped(prometheus: str, exporter: Exporter) -> None:
    source = PrometheusMetrics(prometheus)
    try:
        start = time.time()
        query = 'glance_p95_seconds{service="glance-api"}'
        deadline = start + 20
        while time.time() < deadline:  # until the first scrape landed
            if await source.query_range(query, start - 5, time.time(), 1.0):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.5)
        exporter.value = 8.2
        changed = time.time()
        seen: list[float] = []
        while time.time() < deadline and 8.2 not in seen:
            await asyncio.sleep(0.5)
            (series,) = await source.query_range(query, start - 5, time.time(), 1.0)
            seen = [v for _, v in series.points]
        assert series.labels["service"] == "glance-api" and series.labels["job"] == "lab"
        assert seen[0] == 0.4 and seen[-1] == 8.2
        assert seen == sorted(seen)  # the rise is seen once, in order: 0.4 ... 0.4, 8.2 ...
        times = [t for t, _ in series.points]
        assert times == sorted(times) and all(
            b - a == pytest.approx(1.0) for a, b in itertools.pairwise(times)
        )
        first_high = next(t for t, v in series.points if v == 8.2)
        assert changed - 1.0 <= first_high <= changed + 3.0
        with pytest.raises(PermanentError, match="refused"):
            await source.query_range("glance_p95_seconds{", start, time.time(), 1.0)
    finally:
        await source.aclose()


async def test_an_unreachable_prometheus_is_a_temporary_error() -> None:
    source = PrometheusMetrics(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    try:
        with pytest.raises(TemporaryError, match="Prometheus at"):
            await source.query_range("up", 0, 10, 1)
    finally:
        await source.aclose()


def _answering(status: int, body: dict[str, Any]) -> PrometheusMetrics:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=body))
    return PrometheusMetrics("http://prometheus.invalid", client=httpx.AsyncClient(transport=transport))


async def test_non_finite_points_are_dropped_and_labels_kept() -> None:
    body = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"job": "x"}, "values": [[1, "0.5"], [2, "NaN"], [3, "+Inf"], [4, "0.7"]]}],
        },
    }
    (series,) = await _answering(200, body).query_range("q", 0, 5, 1)
    assert series == RangeSeries({"job": "x"}, ((1.0, 0.5), (4.0, 0.7)))


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (503, {"status": "error", "errorType": "unavailable"}, TemporaryError),
        (200, {"status": "error", "errorType": "timeout", "error": "query timed out"}, TemporaryError),
        (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}, PermanentError),
        (200, {"status": "success", "data": {"resultType": "vector", "result": []}}, PermanentError),
    ],
)
async def test_prometheus_errors_are_classified(status: int, body: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        await _answering(status, body).query_range("q", 0, 5, 1)


async def test_recorded_answers_are_clipped_to_the_range_and_remember_the_question() -> None:
    recorded = RecordedMetrics({"q": [RangeSeries({"a": "b"}, ((1.0, 1.0), (5.0, 2.0), (9.0, 3.0)))]})
    assert await recorded.query_range("q", 2, 8, 1) == [RangeSeries({"a": "b"}, ((5.0, 2.0),))]
    assert recorded.asked == [("q", 2, 8, 1)]
    with pytest.raises(PermanentError):
        await recorded.query_range("other", 0, 1, 1)
