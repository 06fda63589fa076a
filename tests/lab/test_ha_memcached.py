"""The HA lab's memcached behind keystonemiddleware: one cache shared by every nova-api replica.

Uses the session's HA lab (``ha_lab`` in tests/lab/conftest.py): one memcached per controller
(``memcached.service`` in each controller's systemd, haven.lab.ha), listed in every API replica's
``[keystone_authtoken] memcached_servers``. Judged from memcached itself (its ``stats`` and the token's
own entry, read over its text protocol) and from what the client saw, never from haven's records.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from haven.controlplane.config import parse_controlplane
from haven.controlplane.drivers.service_probes import memcached_ask
from haven.controlplane.drivers.systemd import SystemdUnits
from haven.domain.controlplane import ActionKind, ActionState, ProbeKind
from haven.lab import ha, ha_drills, memcached
from haven.lab.keystone import Account
from haven.lab.process import LabServiceError
from servers.nova import NovaLab


def _token(nova_lab: NovaLab, ha_lab: ha.HaLab) -> str:
    """A token Keystone has just issued: no replica has seen it yet."""
    password = (nova_lab.folder / "keystone" / "admin-password").read_text().strip()
    return Account(ha_lab.frontend_url("keystone") + "/v3", "admin", password, "admin").token()


def _cached(address: str, port: int, token: str) -> bool:
    """Whether ``token``'s entry is in this memcached (keystonemiddleware's key: ``tokens/`` and the
    token's SHA-256, no memcache_security_strategy). A ``get`` counts as a hit or miss in its stats."""
    key = "tokens/" + hashlib.sha256(token.encode()).hexdigest()
    answer = asyncio.run(memcached_ask(address, port, f"get {key}", 2.0))
    return answer.startswith(f"VALUE {key} ".encode())


def _hits(ha_lab: ha.HaLab) -> dict[str, int]:
    return {c.host: int(memcached.stats(c.address, ha_lab.memcached_port)["get_hits"]) for c in ha_lab.active}


def _servers(url: str, token: str) -> int:
    return httpx.get(url, headers={"X-Auth-Token": token}, timeout=10.0).status_code


def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s} s")
        time.sleep(0.2)


def test_haven_toml_declares_the_memcacheds_and_every_api_lists_them(tmp_path: Path) -> None:
    """No lab: the HA lab's ``[controlplane]`` has memcached (its ``version`` as the probe), and an API's
    keystonemiddleware gets both controllers' memcacheds, and the spare's when the lab starts with one
    (``--controllers 3``); a lab started without them declares none."""
    controllers = [ha.Controller(f"ctl-{i}", f"127.0.1.{i}", tmp_path / f"ctl-{i}", i) for i in (1, 2)]
    lab = ha.HaLab(tmp_path, controllers, ha.APIS[:2], {"keystone": 1, "nova-api": 2}, {}, memcached_port=7)
    section = tomllib.loads(ha.controlplane_toml(lab))["controlplane"]
    spec = {str(s.name): s for s in parse_controlplane(section, "test").services}["memcached"]
    assert (spec.unit, spec.min_replicas, spec.probe and spec.probe.kind, spec.probe and spec.probe.port) == (
        memcached.MEMCACHED_UNIT,
        2,
        ProbeKind.MEMCACHED,
        7,
    )
    assert "OS_KEYSTONE_AUTHTOKEN__MEMCACHED_SERVERS=127.0.1.1:7,127.0.1.2:7\n" in memcached.authtoken_env(
        lab.memcached_servers
    )
    assert ha.from_state(ha.describe(lab)).memcached_port == 7
    lab.memcached_listed = 3
    assert ha.from_state(ha.describe(lab)).memcached_servers == ["127.0.1.1:7", "127.0.1.2:7", "127.0.1.3:7"]
    lab.memcached_port = 0
    assert "memcached" not in tomllib.loads(ha.controlplane_toml(lab))["controlplane"]["services"]
    assert memcached.authtoken_env(lab.memcached_servers) == ""


def test_a_token_validated_by_one_nova_api_replica_is_a_cache_hit_on_the_other(
    nova_lab: NovaLab, ha_lab: ha.HaLab
) -> None:
    """The same new token on nova-api@ctl-1, then on nova-api@ctl-2 (each replica's own address): the
    first validation leaves the token's entry in one of the memcacheds, the second finds it there (that
    memcached's get_hits rises)."""
    assert ha_lab.memcached_port, "the HA lab runs no memcached"
    token = _token(nova_lab, ha_lab)
    port = ha_lab.memcached_port
    assert not any(_cached(c.address, port, token) for c in ha_lab.active)
    one, two = ha_lab.active
    path = f":{ha_lab.ports['nova-api']}/v2.1/servers"
    assert _servers(f"http://{one.address}{path}", token) == 200
    holders = [c for c in ha_lab.active if _cached(c.address, port, token)]
    assert len(holders) == 1, "the first validation left no entry (or two) in the memcacheds"
    before = _hits(ha_lab)[holders[0].host]
    assert _servers(f"http://{two.address}{path}", token) == 200
    assert _hits(ha_lab)[holders[0].host] >= before + 1  # the second replica's get found it


def test_nova_api_answers_through_haproxy_with_one_memcached_killed(
    nova_lab: NovaLab, ha_lab: ha.HaLab
) -> None:
    """kill -9 of memcached@ctl-1, its unit then kept stopped (systemd would start it again after 1 s):
    two new tokens through nova-api's frontend are answered 200 within 10 s, and their entries are in the
    surviving memcached (keystonemiddleware marked the dead one and rehashed its keys). Started again at
    the end, so the session's lab stays whole."""
    ctl = ha_lab.controller("ctl-1")
    survivor = ha_lab.controller("ctl-2")
    port = ha_lab.memcached_port
    os.kill(ha.main_pid(ctl, memcached.MEMCACHED_UNIT), signal.SIGKILL)
    asyncio.run(_unit(ctl, "stop"))
    try:
        with pytest.raises(OSError):
            socket.create_connection((ctl.address, port), timeout=2.0).close()
        url = ha_lab.frontend_url("nova-api") + "/v2.1/servers"
        tokens = [_token(nova_lab, ha_lab) for _ in range(2)]
        for token in tokens:
            sent = time.monotonic()
            assert _servers(url, token) == 200
            assert time.monotonic() - sent < 10.0
        assert all(_cached(survivor.address, port, token) for token in tokens)
    finally:
        asyncio.run(_unit(ctl, "start"))
        _wait(lambda: _stats_answer(ctl.address, port), 15.0, "memcached@ctl-1 back")


def test_a_hung_memcached_is_found_by_haven_probe_and_restarted(
    nova_lab: NovaLab, ha_lab: ha.HaLab, tmp_path: Path
) -> None:
    """SIGSTOP of memcached@ctl-2: systemd still says active and its port still accepts (what the TCP
    probe saw); haven's ``version`` probe times out and haven restarts it: a new process (its own
    ``pid`` and ``uptime``), the stopped one gone, the unit active."""
    ctl = ha_lab.controller("ctl-2")
    port = ha_lab.memcached_port
    pid = ha.main_pid(ctl, memcached.MEMCACHED_UNIT)
    before = memcached.stats(ctl.address, port)
    with ha_drills.Healer(ha_lab, tmp_path / "haven") as healer:
        time.sleep(2.0)  # steady: every probe passes
        assert healer.actions("memcached") == []
        os.kill(pid, signal.SIGSTOP)
        hung = time.monotonic()
        try:
            assert ha_drills.unit_status(ctl, memcached.MEMCACHED_UNIT).active.value == "active"
            socket.create_connection((ctl.address, port), timeout=1.0).close()  # the kernel accepts
            _wait(lambda: _new_memcached(ctl.address, port, before["pid"]), 30.0, "new memcached@ctl-2")
            back_s = time.monotonic() - hung
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        actions = [(a.kind, a.state, a.host, a.reason) for a in healer.actions("memcached")]
    after = memcached.stats(ctl.address, port)
    print(f"\nmemcached@ctl-2 hung: a new one answered {back_s:.1f} s later; haven's actions {actions}")
    assert ha_drills.proc_states([pid]) == {pid: "gone"}
    assert int(after["uptime"]) < back_s + 2 and after["pid"] != before["pid"]
    assert ha_drills.unit_status(ctl, memcached.MEMCACHED_UNIT).active.value == "active"
    assert [action[:3] for action in actions] == [(ActionKind.RESTART, ActionState.DONE, "ctl-2")]


def _new_memcached(address: str, port: int, old_pid: str) -> bool:
    try:
        return memcached.stats(address, port, timeout_s=1.0)["pid"] != old_pid
    except LabServiceError:
        return False


async def _unit(controller: ha.Controller, action: str) -> None:
    units = SystemdUnits(controller.bus)
    try:
        await (units.stop if action == "stop" else units.start)(memcached.MEMCACHED_UNIT)
    finally:
        await units.close()


def _stats_answer(address: str, port: int) -> bool:
    try:
        memcached.stats(address, port)
        return True
    except LabServiceError:
        return False
