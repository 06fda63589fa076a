"""haven.controlplane.drivers.haproxy against Debian's HAProxy: states set, read back, and seen by clients."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from haven.controlplane.drivers.haproxy import HAProxyRuntime, parse_servers_state
from haven.domain.controlplane import MemberAdmin
from haven.domain.errors import NotFound, TemporaryError

from .servers import RunningHAProxy, free_port

pytestmark = pytest.mark.haproxy


@pytest.fixture
def web(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 5
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(5)


def _via_frontend(lb: RunningHAProxy) -> int:
    return httpx.get(f"http://127.0.0.1:{lb.frontend_port}/", timeout=3).status_code


async def test_drain_maint_ready_are_set_and_read_back(
    haproxy_factory: Callable[[str, dict[str, int]], RunningHAProxy], web: int
) -> None:
    lb = haproxy_factory("nova_api", {"ctl-1": web})
    runtime = HAProxyRuntime(lb.socket_path)
    members = await runtime.members()
    assert members[("nova_api", "ctl-1")].admin is MemberAdmin.READY
    assert _via_frontend(lb) == 200

    drained = await runtime.set_member("nova_api", "ctl-1", MemberAdmin.DRAIN)
    assert drained.admin is MemberAdmin.DRAIN
    out = await runtime.set_member("nova_api", "ctl-1", MemberAdmin.MAINT)
    assert out.admin is MemberAdmin.MAINT
    # Ground truth from HAProxy itself: its raw state, and a client through its frontend.
    raw = parse_servers_state(await runtime.command("show servers state nova_api"))
    assert raw[("nova_api", "ctl-1")][0] is MemberAdmin.MAINT
    assert _via_frontend(lb) == 503

    back = await runtime.set_member("nova_api", "ctl-1", MemberAdmin.READY)
    assert back.admin is MemberAdmin.READY
    assert _via_frontend(lb) == 200


async def test_unknown_server_and_missing_socket_are_named(
    haproxy_factory: Callable[[str, dict[str, int]], RunningHAProxy], web: int
) -> None:
    lb = haproxy_factory("nova_api", {"ctl-1": web})
    with pytest.raises(NotFound, match="nova_api/ctl-9"):
        await HAProxyRuntime(lb.socket_path).set_member("nova_api", "ctl-9", MemberAdmin.MAINT)
    with pytest.raises(TemporaryError, match="cannot reach HAProxy's stats socket"):
        await HAProxyRuntime("/nonexistent/admin.sock").members()


async def test_members_carry_haproxys_own_latest_check(
    haproxy_factory: Callable[..., RunningHAProxy], web: int
) -> None:
    """An application's answer to HAProxy's check (L7OK) passes; a refused connect (L4CON) fails; a bare
    TCP connect (L4OK) is not known, as the kernel accepts it for a hung process too."""
    refused = free_port()  # nothing listens there: HAProxy's check of it fails (L4CON)
    tcp = HAProxyRuntime(haproxy_factory("nova_api", {"ctl-1": web, "ctl-2": refused}).socket_path)
    http = HAProxyRuntime(haproxy_factory("glance_api", {"ctl-1": web}, httpchk="/").socket_path)
    deadline = time.monotonic() + 10
    while True:
        members, checked = await tcp.members(), await http.members()
        seen = (
            checked[("glance_api", "ctl-1")].check_passed,
            members[("nova_api", "ctl-1")].check_passed,
            members[("nova_api", "ctl-2")].check_passed,
        )
        stat = {
            row.split(",")[1]: row for row in (await tcp.command("show stat -1 4 -1")).splitlines()[1:] if row
        }
        # ctl-1's None must be its L4OK, not a check not run yet (INI)
        if (seen == (True, None, False) and ",L4OK," in stat.get("ctl-1", "")) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert seen == (True, None, False)
    # HAProxy's own words for the same checks (show stat's check_status).
    assert ",L4OK," in stat["ctl-1"] and ",L4CON," in stat["ctl-2"]  # a TCP check here
    http_stat = (await http.command("show stat -1 4 -1")).splitlines()[1:]
    assert any(",L7OK," in row for row in http_stat if row.split(",")[1] == "ctl-1")
