"""Fixtures for the fencing tests: one Redfish emulator and one set of IPMI BMCs per session.

Each emulates a few hosts so that tests touching different hosts do not disturb each
other; a test that changes power puts it back on first (see ``FenceRig.fresh_host``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from servers.ipmi import IpmiBmcs, start_vbmc
from servers.redfish import RedfishBmc, start_sushy

HOSTS = ("bmc-host-1", "bmc-host-2", "bmc-host-3")
PASSWORD = "Sup3r-s3cret-BMC"  # distinctive, so a leak into a message or a log is easy to spot


@pytest.fixture(scope="session")
def redfish_bmc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedfishBmc]:
    bmc = start_sushy(tmp_path_factory.mktemp("sushy"), HOSTS, PASSWORD)
    yield bmc
    bmc.process.stop()


@pytest.fixture(scope="session")
def ipmi_bmcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpmiBmcs]:
    bmcs = start_vbmc(tmp_path_factory.mktemp("vbmc"), HOSTS, PASSWORD)
    yield bmcs
    bmcs.process.stop()


@pytest.fixture
def fake_redfish_bmc(tmp_path: Path) -> Iterator[RedfishBmc]:
    """sushy-tools' fake driver, whose power changes land 1-11 s after the request; its own state folder."""
    bmc = start_sushy(tmp_path / "sushy-fake", HOSTS[:1], PASSWORD, fake=True)
    yield bmc
    bmc.process.stop()
