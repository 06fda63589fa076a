"""The control plane's Keystone token round trip and Nova service-list probes against the real lab.

tests/controlplane/test_service_probes.py runs both probe kinds against fakes; here they run against
the session's plain lab (``nova_lab``, tests/servers/nova.py): its real Keystone and its real nova-api
(which authenticates the token with Keystone and reads Nova's database). Each probe passes while the
service runs, fails by timeout while the service's process group is SIGSTOPped (the hung replica: its
port stays open and nothing answers; the kernel's own state of the process says it is stopped), and
passes again once it is SIGCONTed. Only that group, found in the lab's records, is stopped, and it is
always continued.

The probe's timeout is 10 s, not the catalogue's 2 s: this 2-core machine is shared (a healthy token
issue took 1-3 s at load 10), and a pass here must mean the service answered, not that the machine was
quiet. About 20 s each, most of it the two timeouts waited out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from haven.controlplane.drivers.probes import NetworkProber
from haven.domain.controlplane import ProbeKind, ProbeResult, ProbeSpec
from haven.lab.state import alive, load_state
from servers.nova import NovaLab

pytestmark = [pytest.mark.nova, pytest.mark.slow]

TIMEOUT_S = 10.0
PASSWORD_ENV = "LAB_ADMIN_PASSWORD"


def _group(nova_lab: NovaLab, process: str) -> int:
    """The lab's live record of ``process``: its pid is its process group (each service has a session)."""
    state = load_state(nova_lab.folder)
    assert state is not None
    found = [e.pid for e in state.processes if e.name == process and alive(e)]
    assert len(found) == 1, f"the lab's records of {process}: {found}"
    assert os.getpgid(found[0]) == found[0], f"{process} ({found[0]}) leads no process group of its own"
    return found[0]


def _kernel_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _stopped_soon(pid: int, within_s: float = 5.0) -> str:
    """The kernel's state once it says stopped, or the last one seen: a SIGSTOP takes effect when the
    process next runs, not as kill() returns (a running process read "R" right after it here)."""
    deadline = time.monotonic() + within_s
    while (state := _kernel_state(pid)) != "T" and time.monotonic() < deadline:
        time.sleep(0.05)
    return state


@contextlib.contextmanager
def stopped(group: int) -> Iterator[None]:
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


def _spec(nova_lab: NovaLab, kind: ProbeKind) -> tuple[ProbeSpec, str]:
    auth = json.loads(nova_lab.clouds_yaml.read_text())["clouds"]["lab"]["auth"]
    service = "keystone" if kind is ProbeKind.KEYSTONE else "compute"
    url = urlsplit(nova_lab.state.urls[service])
    assert url.hostname and url.port
    spec = ProbeSpec(
        kind, url.port, timeout_s=TIMEOUT_S, user=auth["username"], password_env=PASSWORD_ENV,
        project=auth["project_name"], auth_url=auth["auth_url"],
    )  # fmt: skip
    return spec, url.hostname


async def _passes_again(prober: NetworkProber, address: str, spec: ProbeSpec) -> list[ProbeResult]:
    """Probes until one passes (a continued service may take a moment), at most 30 s."""
    results: list[ProbeResult] = []
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        results.append(await prober.probe(address, spec))
        if results[-1].ok:
            break
        await asyncio.sleep(1.0)
    return results


@pytest.mark.parametrize(
    ("kind", "process"), [(ProbeKind.KEYSTONE, "keystone"), (ProbeKind.NOVA_SERVICES, "nova-api")]
)
def test_the_probe_passes_fails_while_hung_and_passes_again(
    nova_lab: NovaLab, kind: ProbeKind, process: str
) -> None:
    spec, address = _spec(nova_lab, kind)
    auth = json.loads(nova_lab.clouds_yaml.read_text())["clouds"]["lab"]["auth"]
    group = _group(nova_lab, process)
    words = "token issued and validated" if kind is ProbeKind.KEYSTONE else "os-services:"

    async def scenario() -> None:
        prober = NetworkProber(environ={PASSWORD_ENV: auth["password"]})
        try:
            healthy = await prober.probe(address, spec)
            assert healthy.ok and words in healthy.detail, healthy.detail
            with stopped(group):
                assert _stopped_soon(group) == "T", "the kernel shows the service stopped"
                started = time.monotonic()
                hung = await prober.probe(address, spec)
                waited = time.monotonic() - started
            assert not hung.ok and hung.detail == f"no answer within {TIMEOUT_S:g} s", hung.detail
            assert TIMEOUT_S - 0.5 <= waited < TIMEOUT_S + 5.0, waited
            again = await _passes_again(prober, address, spec)
            assert again[-1].ok and words in again[-1].detail, [r.detail for r in again]
        finally:
            await prober.close()

    try:
        asyncio.run(scenario())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGCONT)
    assert _kernel_state(group) != "T", "the same process runs on"
