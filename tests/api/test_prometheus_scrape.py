"""A real Prometheus (Debian's prometheus, 2.42) scrapes haven's open /metrics and reads the figures back.

The API runs under uvicorn in a thread on a free loopback port, over the store of a real
drill whose events fed the metrics; Prometheus scrapes it every second without any
credentials, and its query API must return the drill's counts. This proves that the
exposition (content type and text) is what a Prometheus 2.x server accepts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from haven.api.app import create_app
from haven.domain.clock import VirtualClock
from haven.drill.run import DrillOptions, run_drill
from haven.service.metrics import HavenMetrics
from haven.store import Store
from servers.process import free_port, port_open
from servers.prometheus import running_prometheus

from .conftest import TOKEN, FakeIntake


@pytest.fixture
def haven_api(tmp_path: Path) -> Iterator[int]:
    """haven's API on a free port, over the state and metrics of a host-power-loss drill."""
    url = f"sqlite:///{tmp_path}/drill.db"
    with Store.open(url) as store:
        metrics = HavenMetrics(store)
        report = asyncio.run(run_drill(DrillOptions("host-power-loss", store_url=url), metrics.observe))
        assert report.verdict == "recovered"
        clock = VirtualClock()
        app = create_app(store, FakeIntake(store, clock), TOKEN, clock, metrics=metrics)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, name="haven-api")  # no signal handlers off main
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not port_open(port) and time.monotonic() < deadline:
                time.sleep(0.05)
            yield port
        finally:
            server.should_exit = True
            thread.join(10)


@pytest.fixture
def prometheus(tmp_path: Path, haven_api: int) -> Iterator[str]:
    with running_prometheus(tmp_path, "haven", haven_api) as url:
        yield url


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_a_real_prometheus_scrapes_the_open_metrics(prometheus: str) -> None:
    finished = 'haven_notifications_total{type="COMPUTE_HOST",status="finished"}'
    deadline = time.monotonic() + 20
    while not _query(prometheus, finished) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert [float(r["value"][1]) for r in _query(prometheus, finished)] == [1.0]
    assert [float(r["value"][1]) for r in _query(prometheus, 'up{job="haven"}')] == [1.0]
    dead = _query(prometheus, 'haven_hosts{condition="dead"}')
    assert [float(r["value"][1]) for r in dead] == [1.0]
    detected = _query(prometheus, 'haven_detection_latency_seconds_count{since="suspected"}')
    assert [float(r["value"][1]) for r in detected] == [1.0]
