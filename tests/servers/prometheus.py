"""Debian's real Prometheus for a test: started in a folder of its own, scraping one target every second.

Used by tests/evidence (range queries), tests/explain (the default metric queries over haven's own
/metrics) and tests/api (a real scrape of the API's /metrics); stopped exactly as started.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx

from servers.process import ServerProcess, free_port, require

PROMETHEUS = Path("/usr/bin/prometheus")


@contextlib.contextmanager
def running_prometheus(folder: Path, job: str, target_port: int) -> Iterator[str]:
    """Prometheus scraping ``127.0.0.1:target_port`` as ``job``; its URL once it is ready."""
    binary = require(PROMETHEUS, "prometheus")
    port = free_port()
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: {job}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
    )
    args = [str(binary), f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    server = ServerProcess("prometheus", args, folder / "prometheus.log").start()
    try:
        url = f"http://127.0.0.1:{port}"
        server.wait_until(lambda: _ready(url), 20, "readiness")
        yield url
    finally:
        server.stop()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
