"""The HA lab's Keystone replicas cache on the controllers' memcacheds (``[cache]``, haven.lab.memcached).

Uses the session's HA lab (``ha_lab`` in tests/lab/conftest.py). Each token is validated as
keystonemiddleware does it (``GET /v3/auth/tokens``, the subject in ``X-Subject-Token``) on one Keystone
replica's own address, so which replica answered is known. Judged from memcached itself (its ``stats``)
and from Keystone's processes (their CPU seconds in /proc), never from haven's records. Without the cache
(before 2026-12-07, night) no Keystone replica ever asked memcached anything, and each validation cost
its replica 0.40-0.55 CPU s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from haven.controlplane.drivers.systemd import SystemdUnits
from haven.lab import ha, memcached
from haven.lab.keystone import Account
from haven.lab.process import LabServiceError
from servers.nova import NovaLab

_TICKS = os.sysconf("SC_CLK_TCK")


def _token(nova_lab: NovaLab, ha_lab: ha.HaLab) -> str:
    """A token Keystone's replicas have just issued (through HAProxy's Keystone frontend)."""
    password = (nova_lab.folder / "keystone" / "admin-password").read_text().strip()
    return Account(ha_lab.frontend_url("keystone") + "/v3", "admin", password, "admin").token()


def _validate(ha_lab: ha.HaLab, controller: ha.Controller, auth: str, subject: str) -> float:
    """``subject`` validated on ``controller``'s Keystone replica (200, or the test fails); its seconds."""
    url = f"http://{controller.address}:{ha_lab.ports['keystone']}/v3/auth/tokens"
    sent = time.monotonic()
    answer = httpx.get(url, headers={"X-Auth-Token": auth, "X-Subject-Token": subject}, timeout=30.0)
    assert answer.status_code == 200, f"keystone@{controller.host}: {answer.status_code} {answer.text[:200]}"
    return time.monotonic() - sent


def _stats(ha_lab: ha.HaLab, controller: ha.Controller) -> dict[str, int]:
    found = memcached.stats(controller.address, ha_lab.memcached_port)
    return {key: int(found[key]) for key in ("get_hits", "get_misses", "curr_items", "cmd_set")}


def _keystone_cpu_s(controller: ha.Controller) -> float:
    """CPU seconds of keystone.service's gunicorn master and its worker(s) (children), from /proc."""
    master = ha.main_pid(controller, "keystone.service")
    pids = [master, *(int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split())]
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICKS


def test_a_token_validated_on_both_keystone_replicas_is_served_from_memcached(
    nova_lab: NovaLab, ha_lab: ha.HaLab
) -> None:
    """A new token validated on keystone@ctl-1, then 3 times on keystone@ctl-2: the memcacheds' get_hits
    rise by at least one per validation and their items by the issue's entries; the validations on
    ctl-2 cost its Keystone a few hundredths of a CPU second each (0.40-0.55 s without a cache)."""
    assert ha_lab.memcached_port, "the HA lab runs no memcached"
    one, two = ha_lab.active[:2]
    auth = _token(nova_lab, ha_lab)
    for controller in (one, two):
        _validate(ha_lab, controller, auth, auth)  # the caller's own token, warm on both
    before = {c.host: _stats(ha_lab, c) for c in (one, two)}
    subject = _token(nova_lab, ha_lab)
    first_s = _validate(ha_lab, one, auth, subject)
    cpu = _keystone_cpu_s(two)
    again_s = [_validate(ha_lab, two, auth, subject) for _ in range(3)]
    cpu_per_validation = (_keystone_cpu_s(two) - cpu) / 3
    after = {c.host: _stats(ha_lab, c) for c in (one, two)}
    rise = {key: sum(after[h][key] - before[h][key] for h in after) for key in before[one.host]}
    print(
        f"\nkeystone@ctl-1 {first_s:.2f} s, keystone@ctl-2 {', '.join(f'{s:.2f}' for s in again_s)} s "
        f"({cpu_per_validation:.3f} CPU s each); memcacheds: {rise}"
    )
    assert rise["get_hits"] >= 4, f"Keystone's validations found nothing in memcached: {rise}"
    assert rise["curr_items"] >= 1 and rise["cmd_set"] >= 1, f"Keystone cached nothing: {rise}"
    assert cpu_per_validation < 0.15, f"keystone@ctl-2 spent {cpu_per_validation:.3f} CPU s per validation"


def test_keystone_validates_new_tokens_with_one_memcached_killed(nova_lab: NovaLab, ha_lab: ha.HaLab) -> None:
    """kill -9 of memcached@ctl-1, its unit then kept stopped: new tokens are still issued and validated
    on both Keystone replicas within 10 s each, and the surviving memcached serves their validations
    (its get_hits rise: the pool marked the dead one and rehashed its keys). Started again at the end."""
    ctl, survivor = ha_lab.controller("ctl-1"), ha_lab.controller("ctl-2")
    os.kill(ha.main_pid(ctl, memcached.MEMCACHED_UNIT), signal.SIGKILL)
    asyncio.run(_unit(ctl, "stop"))
    try:
        auth = _token(nova_lab, ha_lab)
        hits = _stats(ha_lab, survivor)["get_hits"]
        for _ in range(2):
            subject = _token(nova_lab, ha_lab)
            for controller in (ctl, survivor, ctl):
                assert _validate(ha_lab, controller, auth, subject) < 10.0
        assert _stats(ha_lab, survivor)["get_hits"] >= hits + 4, (
            "the surviving memcached served no validation"
        )
    finally:
        asyncio.run(_unit(ctl, "start"))
        _wait_stats(ctl.address, ha_lab.memcached_port, 15.0)


async def _unit(controller: ha.Controller, action: str) -> None:
    units = SystemdUnits(controller.bus)
    try:
        await (units.stop if action == "stop" else units.start)(memcached.MEMCACHED_UNIT)
    finally:
        await units.close()


def _wait_stats(address: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            memcached.stats(address, port)
            return
        except LabServiceError:
            if time.monotonic() > deadline:
                pytest.fail(f"memcached on {address}:{port} not back within {timeout_s} s")
            time.sleep(0.2)
