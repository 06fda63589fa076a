"""``haven impact`` and ``GET /v1/haven/impact``: the same answer, a table and JSON, clear refusals.

A controller's answer is judged from the replicas recorded in the store (what the leader's pass saw);
the model's own answers are tested in tests/topology/test_impact.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from haven.api.app import create_app
from haven.api.auth import Principal
from haven.cli.main import main
from haven.domain.clock import VirtualClock
from haven.domain.controlplane import DomainName, ReplicaHealth, ReplicaState, ServiceName
from haven.domain.ids import HostName
from haven.store import Store

HEALTHY, UNHEALTHY = ReplicaHealth.HEALTHY, ReplicaHealth.UNHEALTHY


def _replica(service: str, host: str, health: ReplicaHealth = HEALTHY) -> ReplicaState:
    domain = DomainName(f"rack-{host[-1]}")
    return ReplicaState(
        ServiceName(service), HostName(host), domain, health, "active", "ready", "200 OK", 1.0
    )


# ctl-1 holds the only healthy nova-scheduler (the other one fails its probe) and one of two keystones.
REPLICAS = [
    _replica("keystone", "ctl-1"),
    _replica("keystone", "ctl-2"),
    _replica("nova-scheduler", "ctl-1"),
    _replica("nova-scheduler", "ctl-2", UNHEALTHY),
    _replica("glance-api", "ctl-2"),
    _replica("glance-api", "ctl-3"),
]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path))
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["impact", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_service_needs_no_state_and_prints_a_table_or_json(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "glance-api")
    assert code == 0
    assert "if service glance-api is down" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 3}
    assert "stops" in rows["image upload"] and "works" in rows["server list"]
    code, out, _ = _run(capsys, "rabbitmq", "--json")
    shown = json.loads(out)
    assert (
        code == 0
        and shown["kind"] == "service"
        and shown["losses"]
        == [
            # the catalogue's declared replicas: nothing observed
            {"service": "rabbitmq", "left": 0, "of": 3, "needs": 2, "down": True}
        ]
    )
    assert "server-boot" in shown["stops"] and "server-list" in shown["works"]


def test_an_unknown_name_exits_2_naming_the_valid_ones(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "nova-apy")
    assert code == 2 and out == ""
    assert "'nova-apy' is neither a service, a controller nor a failure domain" in err
    assert "nova-api" in err and "ctl-1" in err and "rack-a" in err  # the simulated cloud's controllers
    assert "Traceback" not in err
    code, _, err = _run(capsys, "ctl-1")  # a known controller, but nothing observed yet
    assert code == 2 and "no observation of controller ctl-1" in err


def test_a_controller_loses_the_replicas_the_store_recorded_on_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store.open(f"sqlite:///{home / 'haven.db'}") as store:
        store.record_replicas(REPLICAS)
    code, out, err = _run(capsys, "ctl-1", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["kind"] == "controller"
    assert shown["losses"] == [
        {"service": "keystone", "left": 1, "of": 2, "needs": 1, "down": False},
        {"service": "nova-scheduler", "left": 0, "of": 1, "needs": 1, "down": True},
    ]
    assert {"server-boot", "server-resize", "server-evacuate"} == set(shown["stops"])
    assert "token-issue" in shown["degraded"]
    code, out, _ = _run(capsys, "ctl-3")
    assert code == 0 and "glance-api 1 of 2 replicas left" in out
    # a failure domain: every controller in it (here rack-2 holds ctl-2 only)
    code, out, _ = _run(capsys, "rack-2", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["kind"] == "domain"
    assert shown["losses"] == [
        {"service": "glance-api", "left": 1, "of": 2, "needs": 1, "down": False},
        {"service": "keystone", "left": 1, "of": 2, "needs": 1, "down": False},
    ]


class _Roles:
    def authenticate(self, token: str | None) -> Principal | None:
        return None if token is None else Principal(user_id="u", project_id="p", roles=frozenset({token}))


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    with Store.open(f"sqlite:///{tmp_path / 'h.db'}") as store:
        store.record_replicas(REPLICAS)
        clock = VirtualClock()
        app = create_app(store, None, "t", clock, authenticator=_Roles())  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://haven") as c:
            yield c


async def test_the_api_answers_as_the_cli_does_for_readers(
    http: httpx.AsyncClient, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await http.get("/v1/haven/impact", params={"down": "ctl-1"})).status_code == 401
    assert (
        await http.get("/v1/haven/impact", params={"down": "ctl-1"}, headers={"X-Auth-Token": "member"})
    ).status_code == 403
    answer = await http.get("/v1/haven/impact", params={"down": "ctl-1"}, headers={"X-Auth-Token": "reader"})
    assert answer.status_code == 200, answer.text
    with Store.open(f"sqlite:///{home / 'haven.db'}") as store:
        store.record_replicas(REPLICAS)
    _, out, _ = _run(capsys, "ctl-1", "--json")
    assert answer.json() == json.loads(out)
    bad = await http.get("/v1/haven/impact", params={"down": "bogus"}, headers={"X-Auth-Token": "reader"})
    assert bad.status_code == 400 and "nova-scheduler" in bad.text and "ctl-2" in bad.text
    missing = await http.get("/v1/haven/impact", headers={"X-Auth-Token": "reader"})
    assert missing.status_code == 400


def test_haven_toml_declares_a_cluster_without_quorum_and_a_bad_value_is_named(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # rack-1 holds two of three RabbitMQ members (ctl-1, ctl-2 here both in rack-1)
    members = [
        ReplicaState(ServiceName("rabbitmq"), HostName(h), DomainName(d), HEALTHY, "active", "", "", 1.0)
        for h, d in (("ctl-1", "rack-1"), ("ctl-2", "rack-1"), ("ctl-3", "rack-3"))
    ]
    with Store.open(f"sqlite:///{home / 'haven.db'}") as store:
        store.record_replicas(members)
    code, out, err = _run(capsys, "rack-1")
    assert code == 0, err
    assert "rabbitmq 1 of 3 replicas left, below its quorum of 2: down" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 3}
    assert "stops" in rows["server boot"]
    # partition_handling = ignore: the minority keeps serving
    (home / "haven.toml").write_text("[controlplane.services.rabbitmq]\nquorum = false\n")
    code, out, _ = _run(capsys, "rack-1", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["losses"] == [
        {"service": "rabbitmq", "left": 1, "of": 3, "needs": 1, "down": False}
    ]
    assert "server-boot" in shown["degraded"]
    (home / "haven.toml").write_text('[controlplane.services.rabbitmq]\nquorum = "yes"\n')
    code, out, err = _run(capsys, "rack-1")
    assert code == 2 and out == "" and "quorum must be true or false" in err and "Traceback" not in err


def test_a_delete_on_a_lost_compute_is_degraded_with_nova_s_local_delete(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "nova-compute", "--json")
    verdicts = {v["name"]: v for v in json.loads(out)["operations"]}
    assert code == 0 and verdicts["server-delete"]["effect"] == "degraded"
    assert "service_down_time" in verdicts["server-delete"]["why"]
    code, out, _ = _run(capsys, "nova-compute")
    assert "deleted locally" in " ".join(out.split())


async def test_the_api_counts_a_quorum_as_the_cli_does(tmp_path: Path) -> None:
    # two of three Galera members in rack-1: the survivor goes non-Primary, everything stops
    members = [
        ReplicaState(ServiceName("mariadb"), HostName(h), DomainName(d), HEALTHY, "active", "ready", "", 1.0)
        for h, d in (("ctl-1", "rack-1"), ("ctl-2", "rack-1"), ("ctl-3", "rack-3"))
    ]
    with Store.open(f"sqlite:///{tmp_path / 'h.db'}") as store:
        store.record_replicas(members)
        app = create_app(store, None, "t", VirtualClock(), authenticator=_Roles())  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://haven") as c:
            answer = await c.get(
                "/v1/haven/impact", params={"down": "rack-1"}, headers={"X-Auth-Token": "reader"}
            )
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert shown["losses"] == [{"service": "mariadb", "left": 1, "of": 3, "needs": 2, "down": True}]
    assert shown["degraded"] == [] and shown["works"] == [] and "server-list" in shown["stops"]
