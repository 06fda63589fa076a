"""The leader dies in the middle of evacuating a host; another engine finishes, with nothing done twice.

Real etcd and a real PostgreSQL store; the engines share one simulated cloud in this process
(haven.drill.leader_loss says what is real and what is modelled). Takes about 15 s of real time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from haven.drill.leader_loss import LeaderLossOptions, run_leader_loss
from servers.etcd import EtcdServer

pytestmark = [pytest.mark.postgres, pytest.mark.etcd]


async def test_leader_killed_mid_evacuation_another_engine_finishes_without_double_actions(
    etcd: EtcdServer, pg_store_url: Callable[[], str]
) -> None:
    options = LeaderLossOptions(
        etcd.url, pg_store_url(), engines=3, hosts=6, vms=36, ttl_s=3,
        max_parallel_evacuations=3, cluster=f"drill-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    report = (await run_leader_loss(options)).to_dict()

    assert report["verdict"] == "recovered", report["checks"]
    assert report["ha_vms_affected"] >= 4
    assert report["vms_lost"] == 0
    assert report["vms_running_twice"] == 0
    assert report["double_actions"] == 0
    assert report["double_evacuations"] == 0
    assert report["evacuated_unfenced"] == 0
    assert report["max_leaders_at_once"] == 1
    # The killed leader had issued evacuations; the next leader issued the rest and verified them all.
    leaders = report["leaders"]
    assert len(leaders) == 2 and leaders[0]["engine"] == report["killed"] != leaders[1]["engine"]
    assert leaders[1]["epoch"] > leaders[0]["epoch"]
    assert leaders[1]["resumed"] == 1
    # Followers do not act: the engine that never led started no step; both leaders did.
    started = report["steps_started_by"]
    assert sorted(started) == ["engine-1", "engine-2", "engine-3"]
    assert [started[e["engine"]] > 0 for e in leaders] == [True, True]
    assert [n for name, n in started.items() if name not in {e["engine"] for e in leaders}] == [0]
    # Takeover within the lease TTL plus a second (etcd lets a lease live a little past its TTL).
    assert report["takeover_s"] <= options.ttl_s + 1.0, report["takeover_s"]
    assert report["resumed_s"] <= report["takeover_s"] + 0.5
