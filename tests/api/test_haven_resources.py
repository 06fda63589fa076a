"""haven's own resources over the real app: /metrics after real drills, /v1/haven/status, /v1/haven/drills.

The metrics tests run a real drill (the engine on a simulated cloud, in virtual time)
whose events feed a ``HavenMetrics`` and whose store the app reads, then scrape
``/metrics`` and parse it with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from haven.api.app import create_app
from haven.api.auth import Principal
from haven.api.context import DrillLimits
from haven.domain.clock import VirtualClock
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import Alert, AlertKind, Segment, SegmentHost
from haven.drill.report import DrillReport
from haven.drill.run import DrillOptions, run_drill
from haven.drill.scenarios import SCENARIOS
from haven.service.metrics import HavenMetrics
from haven.service.status import SingleNodeLeadership
from haven.store import Store

from .conftest import TOKEN, FakeIntake

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


async def drill_and_scrape(tmp_path: Path, scenario: str) -> tuple[DrillReport, Samples, str]:
    """Run a real drill whose events feed the metrics, then scrape /metrics without a token."""
    url = f"sqlite:///{tmp_path}/drill.db"
    with Store.open(url) as store:
        metrics = HavenMetrics(store)
        report = await run_drill(DrillOptions(scenario, store_url=url), metrics.observe)
        clock = VirtualClock()
        app = create_app(store, FakeIntake(store, clock), TOKEN, clock, metrics=metrics)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://haven") as http:
            scraped = await http.get("/metrics")
    assert scraped.status_code == 200, scraped.text
    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    return report, samples(scraped.text), scraped.text


async def test_metrics_after_a_host_power_loss(tmp_path: Path) -> None:
    report, found, _ = await drill_and_scrape(tmp_path, "host-power-loss")
    assert report.verdict == "recovered" and report.detect_s is not None and report.recover_s is not None
    affected = report.ha_vms_affected
    assert affected > 0

    assert value(found, "haven_notifications_total", type="COMPUTE_HOST", status="new") == 1
    assert value(found, "haven_notifications_total", type="COMPUTE_HOST", status="finished") == 1

    assert value(found, "haven_detection_latency_seconds_count", since="suspected") == 1
    from_suspicion = value(found, "haven_detection_latency_seconds_sum", since="suspected")
    assert 0 < from_suspicion <= report.detect_s
    assert value(found, "haven_detection_latency_seconds_count", since="last_heartbeat") == 1
    from_heartbeat = value(found, "haven_detection_latency_seconds_sum", since="last_heartbeat")
    # The last heartbeat came at most one interval (1 s) before the death.
    assert from_suspicion < from_heartbeat <= report.detect_s + 1.0

    def phase(name: str) -> tuple[float, float]:
        return (
            value(found, "haven_recovery_duration_seconds_count", type="COMPUTE_HOST", phase=name),
            value(found, "haven_recovery_duration_seconds_sum", type="COMPUTE_HOST", phase=name),
        )

    for once in ("fence", "force_down", "plan", "total"):
        assert phase(once)[0] == 1, once
    assert phase("evacuate")[0] == affected and phase("verify")[0] == affected
    assert phase("fence")[1] == pytest.approx(report.fence_s, abs=1.0)
    assert phase("total")[1] <= report.recover_s  # created after the death, finished at the last verify
    assert 0 < phase("verify")[1] / affected <= phase("total")[1]

    assert value(found, "haven_hosts", condition="dead") == 1
    assert sum(v for (name, _), v in found.items() if name == "haven_hosts") == report.hosts
    assert value(found, "haven_notifications_stored", status="finished") == 1
    assert value(found, "haven_gate_holds_active") == 0
    assert value(found, "haven_gate_holds_total") == 0
    assert value(found, "haven_leader", identity=SingleNodeLeadership().identity, backend="single-node") == 1


async def test_metrics_count_an_observer_gate_hold(tmp_path: Path) -> None:
    report, found, _ = await drill_and_scrape(tmp_path, "observer-partition")
    assert report.verdict == "held"
    assert value(found, "haven_gate_holds_total") == 1
    assert value(found, "haven_gate_holds_active") == 1
    held = [dict(labels) for (name, labels), v in found.items() if name == "haven_segment_held" and v == 1]
    assert len(held) == 1 and held[0]["segment"].startswith("segment-")
    assert value(found, "haven_alerts_active", kind="gate_hold") == 1
    assert value(found, "haven_detection_latency_seconds_count", since="suspected") == 0


def test_each_engine_has_its_own_registry() -> None:
    with Store.open("sqlite://") as store:
        first, second = HavenMetrics(store), HavenMetrics(store)  # same names, no collision
        first.observe(EngineEvent(EventKind.SEGMENT_HELD, 1.0, segment_id=SegmentId("s")))
        assert value(samples(first.exposition().decode()), "haven_gate_holds_total") == 1
        assert value(samples(second.exposition().decode()), "haven_gate_holds_total") == 0


# ---- /v1/haven/status ----------------------------------------------------------------------


class RolesAuthenticator:
    """Tokens named after the roles they grant: "admin", "reader", "member"."""

    def authenticate(self, token: str | None) -> Principal | None:
        if token is None:
            return None
        return Principal(user_id=f"user-{token}", project_id="p1", roles=frozenset({token}))


@pytest.fixture
async def roles_app(store: Store, intake: FakeIntake, clock: VirtualClock) -> FastAPI:
    return create_app(
        store,
        intake,
        TOKEN,
        clock,
        authenticator=RolesAuthenticator(),
        drill_limits=DrillLimits(max_hosts=60, max_vms=300, keep=2),
    )


@pytest.fixture
async def http(roles_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=roles_app), base_url="http://haven") as c:
        yield c


def role(name: str) -> dict[str, str]:
    return {"X-Auth-Token": name}


async def test_status_needs_a_token_and_the_admin_or_reader_role(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/haven/status")).status_code == 401
    refused = await http.get("/v1/haven/status", headers=role("member"))
    assert refused.status_code == 403 and "forbidden" in refused.json()
    for allowed in ("admin", "reader"):
        assert (await http.get("/v1/haven/status", headers=role(allowed))).status_code == 200


async def test_status_reports_leader_hosts_notifications_alerts_and_holds(
    http: httpx.AsyncClient, store: Store, clock: VirtualClock
) -> None:
    segment = store.create_segment(Segment(SegmentId("a" * 32), "rack-1"))
    store.add_hosts([SegmentHost(HostName(f"compute-{i}"), segment.id) for i in (1, 2, 3)])
    store.set_host_conditions({HostName("compute-1"): "held", HostName("compute-2"): "held"})
    store.raise_alert(
        Alert("hold-1", AlertKind.GATE_HOLD, "2 of 3 silent at once", 12.0, segment_id=segment.id)
    )
    created = await http.post(
        "/v1/notifications",
        headers=role("admin"),
        json={
            "notification": {
                "type": "COMPUTE_HOST",
                "hostname": "compute-3",
                "generated_time": "2027-01-15T08:00:00.000000",
                "payload": {"event": "STOPPED", "host_status": "NORMAL", "cluster_status": "OFFLINE"},
            }
        },
    )
    assert created.status_code == 202, created.text

    answer = await http.get("/v1/haven/status", headers=role("reader"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["leader"] == {
        "identity": SingleNodeLeadership().identity,
        "backend": "single-node",
        "is_leader": True,
    }
    assert body["segments"] == 1
    assert body["hosts_by_condition"] == {"healthy": 1, "held": 2}
    assert body["notifications_by_status"] == {"new": 1}
    assert [a["kind"] for a in body["alerts"]] == ["gate_hold"]
    assert body["holds"] == [{"segment_id": segment.id, "since": 12.0, "reason": "2 of 3 silent at once"}]
    assert body["time"] == clock.now()


# ---- /v1/haven/segments/{id}/release --------------------------------------------------------------


async def test_an_admin_releases_a_held_segment_and_the_release_is_audited(
    http: httpx.AsyncClient, store: Store, clock: VirtualClock
) -> None:
    segment = store.create_segment(Segment(SegmentId("b" * 32), "rack-2"))
    store.add_hosts([SegmentHost(HostName(f"compute-{i}"), segment.id) for i in (1, 2, 3)])
    path = f"/v1/haven/segments/{segment.id}/release"
    not_held = await http.post(path, headers=role("admin"), json={})
    assert not_held.status_code == 409 and "not held" in not_held.text
    store.set_host_conditions({HostName("compute-1"): "held", HostName("compute-2"): "held"})
    store.raise_alert(Alert("hold-2", AlertKind.GATE_HOLD, "2 of 3 silent", 12.0, segment_id=segment.id))
    assert (await http.post(path, headers=role("reader"), json={})).status_code == 403
    assert (await http.post(path, headers=role("admin"), json={"reason": "x" * 300})).status_code == 400
    assert (
        await http.post("/v1/haven/segments/nope/release", headers=role("admin"), json={})
    ).status_code == 404
    assert [a.kind for a in store.list_alerts()] == [AlertKind.GATE_HOLD]  # refusals changed nothing

    done = await http.post(path, headers=role("admin"), json={"reason": "rack PDU failed"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["hosts"] == ["compute-1", "compute-2"] and body["segment"] == "rack-2"
    assert body["by"] == "user user-admin of project p1 (API)" and body["at"] == clock.now()
    active = store.list_alerts()
    assert {(a.kind, a.host) for a in active} == {
        (AlertKind.GATE_RELEASED, "compute-1"),
        (AlertKind.GATE_RELEASED, "compute-2"),
    }
    assert all("user-admin" in a.message and "rack PDU failed" in a.message for a in active)


# ---- /v1/haven/drills ----------------------------------------------------------------------


async def test_drills_are_for_admins_only(http: httpx.AsyncClient) -> None:
    body = {"scenario": "host-power-loss", "hosts": 6, "vms": 12}
    assert (await http.post("/v1/haven/drills", json=body)).status_code == 401
    assert (await http.get("/v1/haven/drills")).status_code == 401
    for who in ("reader", "member"):
        assert (await http.post("/v1/haven/drills", json=body, headers=role(who))).status_code == 403
        assert (await http.get("/v1/haven/drills", headers=role(who))).status_code == 403
        assert (await http.get("/v1/haven/drills/x", headers=role(who))).status_code == 403


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"scenario": "meteor-strike"}, "known scenarios: " + ", ".join(SCENARIOS)),
        ({"scenario": "rack-loss", "hosts": 61}, "hosts. 61 is more than this server's drill limit of 60"),
        ({"scenario": "rack-loss", "vms": 301}, "vms. 301 is more than this server's drill limit of 300"),
        ({"scenario": "rack-loss", "ha_fraction": 1.5}, "field/attribute ha_fraction"),
        ({"scenario": "rack-loss", "hosts": 0}, "field/attribute hosts"),
        ({"scenario": "rack-loss", "colour": "red"}, "field/attribute colour"),
        ({"hosts": 6}, "field/attribute scenario"),
        ({"scenario": "rack-loss", "hosts": 2}, "zones must be between 1 and the host count (2)"),
    ],
)
async def test_a_bad_drill_request_is_a_400_naming_what_is_wrong(
    http: httpx.AsyncClient, body: dict[str, Any], named: str
) -> None:
    answer = await http.post("/v1/haven/drills", json=body, headers=role("admin"))
    assert answer.status_code == 400, answer.text
    assert named in answer.json()["badRequest"]["message"]


async def test_a_drill_through_the_api_reports_like_the_cli_and_is_kept(http: httpx.AsyncClient) -> None:
    body = {"scenario": "host-power-loss", "hosts": 9, "vms": 60, "seed": 3, "ha_fraction": 0.5}
    answer = await http.post("/v1/haven/drills", json=body, headers=role("admin"))
    assert answer.status_code == 201, answer.text
    drill = answer.json()
    assert answer.headers["location"] == f"/v1/haven/drills/{drill['id']}"
    assert (drill["scenario"], drill["hosts"], drill["vms"], drill["seed"]) == ("host-power-loss", 9, 60, 3)
    assert drill["verdict"] == "recovered"

    # The same drill run directly (what `haven drill --json` prints) gives the same report,
    # all but the wall-clock and CPU figures.
    direct = (
        await run_drill(DrillOptions("host-power-loss", hosts=9, vms=60, seed=3, ha_fraction=0.5))
    ).to_dict()
    measured = {"wall_s", "cpu_s_to_all_issued"}
    notification_ids = {"notifications"}  # random uuids
    same = set(direct) - measured - notification_ids
    assert {k: drill["report"][k] for k in same} == {k: direct[k] for k in same}
    assert set(drill["report"]) == set(direct)

    shown = await http.get(f"/v1/haven/drills/{drill['id']}", headers=role("admin"))
    assert shown.status_code == 200 and shown.json() == drill
    listed = (await http.get("/v1/haven/drills", headers=role("admin"))).json()["drills"]
    assert [d["id"] for d in listed] == [drill["id"]] and "report" not in listed[0]


async def test_only_the_last_reports_are_kept_and_unknown_ids_are_404(http: httpx.AsyncClient) -> None:
    ids = []
    for seed in (1, 2, 3):  # keep=2 in this app
        answer = await http.post(
            "/v1/haven/drills",
            json={"scenario": "host-power-loss", "hosts": 6, "vms": 12, "seed": seed},
            headers=role("admin"),
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    listed = (await http.get("/v1/haven/drills", headers=role("admin"))).json()["drills"]
    assert [d["id"] for d in listed] == [ids[2], ids[1]]
    gone = await http.get(f"/v1/haven/drills/{ids[0]}", headers=role("admin"))
    assert gone.status_code == 404 and "only the last 2 are kept" in gone.json()["itemNotFound"]["message"]
    assert (await http.get("/v1/haven/drills/nope", headers=role("admin"))).status_code == 404


async def test_one_drill_at_a_time_and_the_api_answers_meanwhile(http: httpx.AsyncClient) -> None:
    big = {"scenario": "rack-loss", "hosts": 60, "vms": 300}

    async def status_while_drilling() -> int:
        await asyncio.sleep(0.01)  # the drill has started in its thread by now
        return (await http.get("/v1/haven/status", headers=role("admin"))).status_code

    first, second, status = await asyncio.gather(
        http.post("/v1/haven/drills", json=big, headers=role("admin")),
        http.post("/v1/haven/drills", json=big, headers=role("admin")),
        status_while_drilling(),
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409]
    refused = second if second.status_code == 409 else first
    assert "already running" in refused.json()["conflictingRequest"]["message"]
    assert status == 200


async def test_metrics_and_openapi_are_open_but_the_haven_routes_are_documented(
    anonymous: httpx.AsyncClient,
) -> None:
    assert (await anonymous.get("/metrics")).status_code == 200
    paths = (await anonymous.get("/openapi.json")).json()["paths"]
    assert {"/metrics", "/v1/haven/status", "/v1/haven/drills", "/v1/haven/drills/{drill_id}"} <= set(paths)
