"""Fixtures of the control plane's tests: real systemd in a PID namespace and real HAProxy (see servers),
and haven's network prober."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from haven.controlplane.drivers.probes import NetworkProber

from .servers import haproxy_factory, systemd_hosts, systemd_ns

__all__ = ["haproxy_factory", "prober", "systemd_hosts", "systemd_ns"]


@pytest.fixture
async def prober() -> AsyncIterator[NetworkProber]:
    """haven's network prober with the process's own environment (a test module may override it)."""
    p = NetworkProber()
    yield p
    await p.close()
