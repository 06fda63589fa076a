"""The shipped Prometheus rules (deploy/prometheus/haven-rules.yml): ``promtool check rules`` accepts them,
``promtool test rules`` evaluates them over written series (the control-plane rule names its service as
the cause haven's Alertmanager inhibition matches on), and Debian's real Prometheus, scraping haven's own
/metrics after a canary round whose token probe failed, fires HavenApiProbeFailing."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from haven.canary.model import CanarySettings
from haven.canary.runner import CanaryRunner
from haven.canary.sim import SimCanaryCloud
from haven.cloud.sim import CloudSpec, build_cloud
from haven.domain.clock import VirtualClock
from haven.service.metrics import HavenMetrics
from haven.store import Store
from servers.process import ServerProcess, free_port, require

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "haven-rules.yml"
PROMTOOL = Path("/usr/bin/promtool")
PROMETHEUS = Path("/usr/bin/prometheus")

UNIT_TESTS = """\
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'haven_controlplane_replica_healthy{{service="mariadb", host="ctl-1", job="haven"}}'
        values: '1 0 0 0'
      - series: 'haven_canary_success{{zone="az1", job="haven"}}'
        values: '1 1 0'
    alert_rule_test:
      - eval_time: 1m
        alertname: HavenControlPlaneReplicaUnhealthy
        exp_alerts: []
      - eval_time: 3m
        alertname: HavenControlPlaneReplicaUnhealthy
        exp_alerts:
          - exp_labels: {{severity: warning, haven_role: cause, cause: mariadb, service: mariadb, host: ctl-1,
                         job: haven}}
            exp_annotations:
              summary: "mariadb on ctl-1 is not healthy (haven's control plane)"
              description: "`haven controlplane status` shows its probe and what haven did"
      - eval_time: 2m
        alertname: HavenCanaryFailing
        exp_alerts:
          - exp_labels: {{severity: warning, haven_role: symptom, zone: az1, job: haven}}
            exp_annotations:
              summary: "The latest canary boot in zone az1 failed or was slow"
              description: "`haven explain` names its ranked causes"
"""


def test_promtool_checks_the_shipped_rules() -> None:
    promtool = require(PROMTOOL, "prometheus")
    done = subprocess.run(
        [str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "SUCCESS: 8 rules found" in done.stdout, done.stdout + done.stderr


def test_promtool_evaluates_the_rules_over_written_series(tmp_path: Path) -> None:
    promtool = require(PROMTOOL, "prometheus")
    tests = tmp_path / "haven-rules.test.yml"
    tests.write_text(UNIT_TESTS.format(rules=RULES))
    done = subprocess.run(
        [str(promtool), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
    # The same check fails on a wrong expectation (the test can fail).
    tests.write_text(UNIT_TESTS.format(rules=RULES).replace("cause: mariadb", "cause: rabbitmq"))
    wrong = subprocess.run(
        [str(promtool), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert wrong.returncode != 0


@pytest.fixture
def haven_metrics(tmp_path: Path) -> Iterator[tuple[Store, int]]:
    with Store.open(f"sqlite:///{tmp_path}/haven.db") as store:
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
        try:
            yield store, server.server_address[1]
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


async def test_a_real_prometheus_fires_the_probe_rule_from_haven_s_metrics(
    tmp_path: Path, haven_metrics: tuple[Store, int]
) -> None:
    binary = require(PROMETHEUS, "prometheus")
    store, target = haven_metrics
    clock = VirtualClock()
    cloud = build_cloud(CloudSpec(hosts=2, vms=0, zones=1, seed=1), clock)[0]
    nova = SimCanaryCloud(cloud, clock)
    nova.identity_down = True  # Keystone refuses: the token probe fails
    await CanaryRunner(nova, store, clock, CanarySettings(poll_s=0.25, zones=("az1",))).round()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        f"  - job_name: haven\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
    )
    args = [str(binary), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    server = ServerProcess("prometheus", args, tmp_path / "prometheus.log").start()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        firing: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                try:
                    answer = (await client.get(f"{url}/api/v1/alerts")).json()
                    firing = [a for a in answer["data"]["alerts"] if a["state"] == "firing"]
                except (httpx.TransportError, ValueError, KeyError):
                    firing = []
                if any(a["labels"]["alertname"] == "HavenApiProbeFailing" for a in firing):
                    break
                await asyncio.sleep(0.5)
        (probe,) = [a for a in firing if a["labels"]["alertname"] == "HavenApiProbeFailing"]
        assert probe["labels"]["probe"] == "token" and probe["labels"]["haven_role"] == "symptom"
        assert probe["annotations"]["summary"] == "haven's token API probe failed"
        assert not [a for a in firing if a["labels"]["alertname"] in ("HavenDown", "HavenCanaryFailing")]
    finally:
        server.stop()
