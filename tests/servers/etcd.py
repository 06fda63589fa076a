"""A real etcd (Debian's etcd-server, /usr/bin/etcd) for tests, on free loopback ports.

``etcd_server`` (session): one single-member etcd with a temporary data dir, client and peer ports
free on 127.0.0.1, stopped at the end of the session. ``etcd`` (function): the same server, made
sure to be running before the test (a previous test may have killed it) and after it: a test may
``kill()`` (SIGKILL), ``pause()``/``resume()`` (SIGSTOP/SIGCONT), ``stop()``, ``start()`` or
``restart()`` it; the data dir survives, as it would
in production. Each test gets its own ``cluster`` name (``etcd.cluster``), so keys never collide.

Import the fixtures in a conftest.py: ``from servers.etcd import etcd, etcd_server  # noqa: F401``.
Without /usr/bin/etcd the tests skip, unless CI is set (then they fail).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.lab.etcd import ETCD, EtcdServer
from servers.process import require

__all__ = ["EtcdServer", "etcd", "etcd_server"]


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    binary = require(ETCD, "etcd-server")
    folder = Path(tempfile.mkdtemp(prefix="haven-etcd-"))
    server = EtcdServer(binary, folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def etcd(etcd_server: EtcdServer) -> Iterator[EtcdServer]:
    etcd_server.start()
    etcd_server.cluster = f"t{uuid.uuid4().hex[:10]}"
    yield etcd_server
    etcd_server.resume()
    etcd_server.start()
