"""The explainer's default metric queries against Debian's real Prometheus scraping haven's own /metrics
after a canary round: every query is one Prometheus accepts, and haven's series carry the canary's and
the probes' figures as the store has them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from haven.canary.model import CanarySettings, durations
from haven.canary.runner import CanaryRunner
from haven.canary.sim import SimCanaryCloud
from haven.cloud.sim import CloudSpec, build_cloud
from haven.domain.clock import VirtualClock
from haven.evidence.prometheus import PrometheusMetrics
from haven.explain.config import DEFAULT_METRICS, parse_diagnosis
from haven.service.metrics import HavenMetrics
from haven.store import Store
from servers.process import free_port
from servers.prometheus import running_prometheus

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path}/haven.db") as opened:
        yield opened


@pytest.fixture
def haven_metrics(store: Store) -> Iterator[int]:
    """haven's /metrics exposition of ``store``, served on a free port."""
    metrics = HavenMetrics(store)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = metrics.exposition()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def prometheus(tmp_path: Path, haven_metrics: int) -> Iterator[str]:
    with running_prometheus(tmp_path, "haven", haven_metrics) as url:
        yield url


async def test_every_default_query_runs_and_haven_s_own_series_are_there(
    store: Store, prometheus: str
) -> None:
    clock = VirtualClock()
    cloud = build_cloud(CloudSpec(hosts=2, vms=0, zones=1, seed=1), clock)[0]
    settings = CanarySettings(poll_s=0.25)
    (run,) = (await CanaryRunner(SimCanaryCloud(cloud, clock), store, clock, settings).round()).runs
    took = durations(run.phases)
    source = PrometheusMetrics(prometheus)
    try:
        start = time.time()
        query = 'max(haven_canary_phase_seconds{phase="image"})'
        while not await source.query_range(query, start - 5, time.time(), 1.0):  # the first scrape
            assert time.time() < start + 20, "Prometheus never scraped haven"
            await asyncio.sleep(0.3)
        answers = {
            q.query: await source.query_range(q.query, start - 5, time.time(), 1.0) for q in DEFAULT_METRICS
        }
    finally:
        await source.aclose()
    expected = {"accepted": took["accepted"], "scheduled": took["scheduled"], "image": took["image"],
                "spawned": took["spawned"]}  # fmt: skip
    for phase, seconds in expected.items():
        (series,) = answers[f'max(haven_canary_phase_seconds{{phase="{phase}"}})']
        assert series.points[-1][1] == pytest.approx(seconds)
    for probe in ("token", "server-list"):
        (series,) = answers[f'max(haven_api_probe_seconds{{probe="{probe}"}})']
        assert series.points  # a probe on the simulated cloud takes ~0 s, but it is there
    # No RabbitMQ exporter is scraped here: its queries are accepted and answer nothing.
    assert answers["sum(rabbitmq_queue_messages_unacked)"] == []


def test_the_defaults_apply_unless_the_file_lists_metrics_or_turns_them_off() -> None:
    assert parse_diagnosis({"prometheus_url": "http://p:9090"}, "f").settings.metrics == DEFAULT_METRICS
    own = {"node": "glance-api", "metric": "p95", "query": "q"}
    assert [m.query for m in parse_diagnosis({"metrics": [own]}, "f").settings.metrics] == ["q"]
    assert parse_diagnosis({"default_metrics": False}, "f").settings.metrics == ()
