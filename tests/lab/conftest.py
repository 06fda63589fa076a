"""The HA lab, once per session, for tests/lab/test_ha_lab.py and tests/lab/test_ha_lab_drills.py.

``ha_lab`` starts over the session's lab (``nova_lab``, tests/servers/nova.py) what ``haven lab up
--ha`` adds (haven.lab.ha.start): two controllers, each Debian's systemd as PID 1 of its own namespace
with its keystone.service, nova-api.service, nova-conductor.service, nova-scheduler.service and
memcached.service (``haven lab up --ha`` also has placement-api and glance-api: left out to keep the
session short), and Debian's HAProxy in front; the session's environment has the transport URL the
nova_rpc probes read. Needs root and the Debian packages (skipped without). At the end exactly what
it started is stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.lab import ha, memcached
from haven.lab.process import LabProcess
from haven.lab.toolenv import ensure_tool_env
from servers.nova import NovaLab


@pytest.fixture(scope="session")
def ha_lab(nova_lab: NovaLab) -> Iterator[ha.HaLab]:
    if os.geteuid() != 0:
        pytest.skip("needs root (systemd as PID 1 of a PID namespace)")
    for path in (ha.SYSTEMD, ha.DBUS_DAEMON, ha.HAPROXY, memcached.MEMCACHED):
        if not Path(path).exists():
            pytest.skip(f"{path} missing: run scripts/install-system-deps.sh")
    venvs = {tool: ensure_tool_env(tool) for tool in ("keystone", "nova")}
    namespaces: list[int] = []
    processes: list[LabProcess] = []
    started: ha.HaLab | None = None
    # The Healers' nova_rpc probes of the conductor and scheduler replicas read Nova's transport URL here.
    os.environ[ha.TRANSPORT_URL_ENV] = ha.transport_url(nova_lab.folder)
    try:
        started = ha.start(
            nova_lab.folder,
            venvs,
            lambda _name, pid1, _log: namespaces.append(pid1),
            processes.append,
            lambda _message: None,
            apis=tuple(api for api in ha.APIS if api.service in ("keystone", "nova-api")),  # short
        )
        yield started
    finally:
        os.environ.pop(ha.TRANSPORT_URL_ENV, None)
        if started is not None:
            ha.stop(started)
        for process in processes:
            process.stop(grace_s=5)
        for pid1 in namespaces:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid1, signal.SIGKILL)
        ha.reap()
