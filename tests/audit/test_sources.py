"""``haven audit`` without ``--layout``, and ``GET /v1/haven/audit``: the layout read from haven's own
store, cloud and haven.toml, judged by the same pure audit; each planted defect found by both.

The clouds are simulated clouds built here, host by host and server by server, so each test's verdict
is checked against the cloud's own state (capacities, what each host carries, where each VM runs),
not against anything haven recorded. Segments are created in the store the way ``haven serve``'s first
start creates them (one per zone, haven.service.bootstrap.segments_per_zone).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from haven.api.app import create_app
from haven.api.auth import Principal
from haven.api.routes.haven_audit import attach_audit
from haven.audit.sources import AuditSources
from haven.cli import audit as audit_cli
from haven.cli.clouds import ChosenCloud
from haven.cli.main import main
from haven.cloud.base import CloudProxy
from haven.cloud.sim import CloudSpec, SimCloud, build_cloud
from haven.cloud.sim.state import SimHost, SimServer
from haven.domain.clock import VirtualClock
from haven.domain.cloud import HA_ENABLED_KEY, Capacity, Flavor, Host
from haven.domain.controlplane import DomainName, ReplicaHealth, ReplicaState, ServiceName
from haven.domain.errors import TemporaryError
from haven.domain.ids import HostName, ServerId
from haven.service.bootstrap import segments_per_zone
from haven.service.config import load_config
from haven.store import Store
from servers.process import free_port, port_open

GB = 1024
CAPACITY = Capacity(vcpus=16, ram_mb=32 * GB, disk_gb=1000, cpu_allocation_ratio=1.0)
RACKS = {"compute-1": "rack-1", "compute-2": "rack-2", "compute-3": "rack-3"}
# Three controllers in three racks, each with its own systemd (its D-Bus address names it).
CONTROLLERS = """
[[controlplane.controllers]]
host = "ctl-1"
domain = "rack-a"
bus = "tcp:host=10.0.0.11,port=55556"
[[controlplane.controllers]]
host = "ctl-2"
domain = "{ctl2}"
bus = "tcp:host=10.0.0.12,port=55556"
[[controlplane.controllers]]
host = "ctl-3"
domain = "rack-c"
bus = "tcp:host=10.0.0.13,port=55556"
"""
CLUSTERS = """
[stateful.galera]
cluster = "openstack"
driver = "systemd"
{galera}
[stateful.rabbitmq]
cluster = "openstack"
home = "/var/lib/haven/rabbitmq"
{rabbit}
"""


def _galera_node(i: int, on: str) -> str:
    bus = f"tcp:host=10.0.0.1{on[-1]},port=55556"
    return (
        f'[[stateful.galera.nodes]]\nname = "g{i}"\nfolder = "/var/lib/haven/galera/g{i}"\n'
        f'unit = "mariadb-g{i}.service"\nbus = "{bus}"\n'
    )


def _rabbit_node(i: int, on: str) -> str:
    return (
        f'[[stateful.rabbitmq.nodes]]\nname = "rabbit-{i}@{on}"\nfolder = "/var/lib/haven/rabbitmq/n{i}"\n'
        f"amqp_port = {5671 + i}\ndist_port = {25671 + i}\n"
    )


def haven_toml(
    ctl2: str = "rack-b", galera: Sequence[str] = (), rabbit: Sequence[str] = (), extra: str = ""
) -> str:
    """Controllers ctl-1..3 (ctl-2 in ``ctl2``); Galera and RabbitMQ nodes on the controllers named."""
    text = CONTROLLERS.replace("{ctl2}", ctl2) + extra
    if galera or rabbit:
        text += CLUSTERS.format(
            galera="".join(_galera_node(i, h) for i, h in enumerate(galera, 1)),
            rabbit="".join(_rabbit_node(i, h) for i, h in enumerate(rabbit, 1)),
        )
    return text


CLEAN_TOML = haven_toml(galera=["ctl-1", "ctl-2", "ctl-3"], rabbit=["ctl-1", "ctl-2", "ctl-3"])


def _vm(name: str, host: str, ram_gb: int, ha: bool = True) -> SimServer:
    metadata = {HA_ENABLED_KEY: "True"} if ha else {}
    flavor = Flavor(f"r{ram_gb}", 2, ram_gb * GB, 20)
    return SimServer(ServerId(name), name, HostName(host), flavor, metadata=metadata)


def sim_cloud(servers: Sequence[SimServer], racks: Mapping[str, str] = RACKS) -> SimCloud:
    """One zone, hosts of 32 GB in their racks (three hosts in three racks), carrying ``servers``."""
    hosts = [
        SimHost(HostName(name), "az1", rack, CAPACITY, heartbeat_phase=0.0) for name, rack in racks.items()
    ]
    return SimCloud(VirtualClock(), hosts, servers)


def clean_servers() -> list[SimServer]:
    # each host: two HA VMs of 8 GB (16 of 32 GB used): any one host's or rack's VMs fit on the others
    return [_vm(f"vm-{h}-{j}", h, 8) for h in RACKS for j in (1, 2)]


def full_servers() -> list[SimServer]:
    # compute-1: two HA VMs of 12 GB; compute-2 and -3: one VM of 24 GB each (8 GB left): nowhere to go
    return [
        _vm("big-1", "compute-1", 12),
        _vm("big-2", "compute-1", 12),
        _vm("other-2", "compute-2", 24, ha=False),
        _vm("other-3", "compute-3", 24, ha=False),
    ]


class _Roles:
    def authenticate(self, token: str | None) -> Principal | None:
        return None if token is None else Principal(user_id="u", project_id="p", roles=frozenset({token}))


class World:
    """A home folder with haven.toml and a store, one simulated cloud, the CLI and the API on them."""

    def __init__(
        self,
        home: Path,
        racks: Mapping[str, str],
        cloud: SimCloud,
        toml: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.home, self.cloud = home, cloud
        (home / "haven.toml").write_text(toml)
        self.db = f"sqlite:///{home / 'haven.db'}"
        with Store.open(self.db) as store:
            # as haven serve's first start does with the cloud's hosts (all three in az1)
            segments_per_zone(store, [Host(HostName(n), "az1", r, CAPACITY) for n, r in racks.items()])
        # The CLI opens the cloud haven.toml names; here, this very simulated cloud.
        monkeypatch.setattr(
            audit_cli, "choose_cloud", lambda *a: ChosenCloud(cloud, cloud, "test cloud", sim=cloud)
        )

    def cli(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
        code = main(["--home", str(self.home), "audit", "--json", *argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, json.loads(out) if out else {"error": err}

    async def api(self, token: str = "reader", cloud: Any = None) -> httpx.Response:
        config = load_config(self.home)
        with Store.open(self.db) as store:
            app = create_app(store, None, "t", VirtualClock(), authenticator=_Roles())  # type: ignore[arg-type]
            sources = AuditSources(
                cloud or self.cloud, config.controlplane, config.stateful, config.engine.recovery, True
            )
            attach_audit(app, sources)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://haven") as client:
                return await client.get("/v1/haven/audit", headers={"X-Auth-Token": token})


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("HAVEN_HOME", raising=False)

    def make(servers: Sequence[SimServer], toml: str = CLEAN_TOML, racks: Mapping[str, str] = RACKS) -> World:
        return World(tmp_path, racks, sim_cloud(servers, racks), toml, monkeypatch)

    yield make


def kinds(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["kind"], f["subject"]) for f in body["findings"]]


async def both(w: World, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """The CLI's exit code and JSON; the API's answer must be the same JSON."""
    code, shown = await asyncio.to_thread(w.cli, capsys)
    answer = await w.api()
    assert answer.status_code == 200, answer.text
    assert answer.json() == shown
    return code, shown


async def test_a_clean_cloud_has_no_finding_and_says_what_it_checked(
    world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    w = world(clean_servers())
    code, shown = await both(w, capsys)
    assert code == 0 and shown["findings"] == []
    checked = shown["checked"]
    assert checked["segments"] == ["segment-az1"]
    assert checked["clusters"] == ["galera openstack", "rabbitmq openstack"]
    assert "keystone" in checked["services"]  # the simulated control plane's services, on ctl-1..3
    assert {"rack-1", "rack-2", "rack-3", "rack-a", "rack-b", "rack-c"} <= set(checked["domains"])
    assert await asyncio.to_thread(main, ["--home", str(w.home), "audit"]) == 0  # the table says the same
    out = capsys.readouterr().out
    assert "no finding" in out and "segments checked: segment-az1" in out
    assert "clusters checked: galera openstack, rabbitmq openstack" in out
    # the cloud's own state: each host has room for any other host's HA VMs
    hosts = await w.cloud.list_hosts()
    assert all(h.capacity.ram_mb - h.used_ram_mb >= 16 * GB for h in hosts)


async def test_a_segment_that_cannot_lose_its_largest_host(
    world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    w = world(full_servers())
    # ground truth: compute-1's HA VMs are 12 GB each; no other host has 12 GB free
    hosts = {h.name: h for h in await w.cloud.list_hosts()}
    ha = [s for s in await w.cloud.list_servers(HostName("compute-1")) if s.ha_enabled]
    assert len(ha) == 2 and all(s.flavor.ram_mb == 12 * GB for s in ha)
    assert all(_free_ram(hosts[n]) < 12 * GB for n in ("compute-2", "compute-3"))
    code, shown = await both(w, capsys)
    assert code == 1 and kinds(shown) == [("capacity", "segment-az1")]
    assert "largest host compute-1, 2 HA VM(s) cannot be placed" in shown["findings"][0]["detail"]


async def test_a_segment_that_can_lose_any_host_but_not_its_largest_rack(
    world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    racks = {"compute-1": "rack-1", "compute-2": "rack-1", "compute-3": "rack-2", "compute-4": "rack-3"}
    servers = [_vm(f"vm-{h}-{j}", h, 8) for h in racks for j in (1, 2)]
    servers.append(_vm("filler", "compute-3", 8, ha=False))
    w = world(servers, racks=racks)
    # ground truth: rack-1's four 8 GB HA VMs need 32 GB; compute-3 and -4 have 8 + 16 GB free;
    # one host's two VMs (16 GB) fit on the others
    free = {h.name: _free_ram(h) for h in await w.cloud.list_hosts()}
    assert free["compute-3"] + free["compute-4"] == 24 * GB and free["compute-4"] == 16 * GB
    code, shown = await both(w, capsys)
    assert code == 1 and kinds(shown) == [("capacity", "segment-az1")]
    assert (
        "after losing its largest rack rack-1, 1 HA VM(s) cannot be placed" in shown["findings"][0]["detail"]
    )


async def test_a_host_on_maintenance_is_no_target(world: Any, capsys: pytest.CaptureFixture[str]) -> None:
    w = world(clean_servers())
    with Store.open(w.db) as store:
        store.update_host(HostName("compute-3"), on_maintenance=True)
    # compute-1 or -2 lost: its 16 GB of HA VMs fit on the one host left (16 GB free): still no finding
    code, shown = await both(w, capsys)
    assert code == 0, shown
    w.cloud.boot_server(_vm("filler", "compute-2", 8, ha=False))  # now compute-2 has 8 GB free
    code, shown = await both(w, capsys)
    assert code == 1 and kinds(shown) == [("capacity", "segment-az1")]
    assert "largest host compute-1" in shown["findings"][0]["detail"]


async def test_replicas_bunched_in_one_rack(world: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # ctl-2 moved into rack-a; keystone may run on ctl-1 and ctl-2 only: both replicas in rack-a
    keystone = '[controlplane.services.keystone]\nhosts = ["ctl-1", "ctl-2"]\n'
    w = world(
        clean_servers(),
        haven_toml("rack-a", ["ctl-1", "ctl-2", "ctl-3"], ["ctl-1", "ctl-2", "ctl-3"], keystone),
    )
    code, shown = await both(w, capsys)
    found = kinds(shown)
    assert ("bunched", "keystone") in found
    detail = next(f for f in shown["findings"] if f["kind"] == "bunched")
    assert "all 2 replicas (ctl-1, ctl-2) are in rack-a" in detail["detail"]
    assert "rack-c" in detail["fix"]
    # and the 3-node clusters on ctl-1..3 now have 2 of 3 nodes in rack-a
    assert found == [
        ("bunched", "keystone"),
        ("quorum", "galera openstack"),
        ("quorum", "rabbitmq openstack"),
    ]
    assert code == 1


async def test_recorded_replicas_win_over_the_declaration(
    world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    w = world(clean_servers())
    # the leader's pass saw nova-api deployed on ctl-1 and on a spare, ctl-9, also in rack-a
    # (a stopped replica on ctl-3 does not count: it serves nothing)
    states = [("ctl-1", "rack-a", ReplicaHealth.HEALTHY), ("ctl-9", "rack-a", ReplicaHealth.HEALTHY),
              ("ctl-3", "rack-c", ReplicaHealth.STOPPED)]  # fmt: skip
    with Store.open(w.db) as store:
        store.record_replicas(
            [
                ReplicaState(ServiceName("nova-api"), HostName(h), DomainName(d), health, "", "", "", 1.0)
                for h, d, health in states
            ]
        )
    code, shown = await both(w, capsys)
    assert code == 1 and kinds(shown) == [("bunched", "nova-api")]


async def test_a_three_node_cluster_with_two_nodes_in_one_rack(
    world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Galera g1, g2 both on ctl-1 (rack-a); RabbitMQ spread over the three controllers
    toml = haven_toml(galera=["ctl-1", "ctl-1", "ctl-3"], rabbit=["ctl-1", "ctl-2", "ctl-3"])
    w = world(clean_servers(), toml)
    code, shown = await both(w, capsys)
    assert code == 1 and kinds(shown) == [("quorum", "galera openstack")]
    assert "2 of its 3 nodes are in rack-a" in shown["findings"][0]["detail"]
    # RabbitMQ's two nodes in one rack, the other spread: found for RabbitMQ too
    toml = haven_toml(galera=["ctl-1", "ctl-2", "ctl-3"], rabbit=["ctl-2", "ctl-3", "ctl-3"])
    (w.home / "haven.toml").write_text(toml)
    code, shown = await both(w, capsys)
    assert code == 1 and kinds(shown) == [("quorum", "rabbitmq openstack")]
    assert "2 of its 3 nodes are in rack-c" in shown["findings"][0]["detail"]


def _lab_rabbit_toml(on: Sequence[str]) -> str:
    """As `haven lab up --ha` writes its RabbitMQ: every node @localhost (one loopback), each a unit on
    the systemd of the controller named (its bus); Galera spread over the three controllers."""
    rabbit = "".join(
        f'[[stateful.rabbitmq.nodes]]\nname = "rabbit-{i}@localhost"\n'
        f'folder = "/var/lib/haven/rabbitmq/n{i}"\n'
        f'amqp_port = {5671 + i}\ndist_port = {25671 + i}\nunit = "rabbitmq-{i}.service"\n'
        f'bus = "tcp:host=10.0.0.1{host[-1]},port=55556"\n'
        for i, host in enumerate(on, 1)
    )
    return CONTROLLERS.replace("{ctl2}", "rack-b") + CLUSTERS.format(
        galera="".join(_galera_node(i, h) for i, h in enumerate(["ctl-1", "ctl-2", "ctl-3"], 1)),
        rabbit='driver = "systemd"\n' + rabbit,
    )


async def test_rabbitmq_units_are_placed_by_their_controller_not_their_node_name(
    world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # rabbit-1 and rabbit-3 on ctl-1 (rack-a), rabbit-2 on ctl-2 (rack-b), as in the HA lab
    w = world(clean_servers(), _lab_rabbit_toml(["ctl-1", "ctl-2", "ctl-1"]))
    code, shown = await both(w, capsys)
    assert code == 1 and kinds(shown) == [("quorum", "rabbitmq openstack")]
    # not "3 of its 3 nodes are in localhost": the names' host is no machine of the layout
    assert "2 of its 3 nodes are in rack-a" in shown["findings"][0]["detail"]
    assert "localhost" not in json.dumps(shown)
    # the same names spread over the three controllers by their buses: nothing to find
    (w.home / "haven.toml").write_text(_lab_rabbit_toml(["ctl-1", "ctl-2", "ctl-3"]))
    code, shown = await both(w, capsys)
    assert code == 0, shown


async def test_local_galera_nodes_all_run_on_this_machine(
    world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = haven_toml(galera=["ctl-1", "ctl-2", "ctl-3"], rabbit=["ctl-1", "ctl-2", "ctl-3"])
    w = world(clean_servers(), toml.replace('driver = "systemd"', 'driver = "local"'))
    code, shown = await both(w, capsys)
    assert code == 1 and kinds(shown) == [("quorum", "galera openstack")]
    assert "3 of its 3 nodes are in localhost" in shown["findings"][0]["detail"]


def test_the_simulated_cloud_haven_toml_names_is_the_one_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # [cloud] hosts = 3: three zones of one host each, so each segment has nowhere to put its HA VMs
    (tmp_path / "haven.toml").write_text("[cloud]\nhosts = 3\nvms = 12\nseed = 4\n")
    truth, _ = build_cloud(CloudSpec(hosts=3, vms=12, seed=4), VirtualClock())  # as haven serve builds it
    hosts = asyncio.run(truth.list_hosts())
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as store:
        segments_per_zone(store, hosts)
    with_ha = sorted(
        f"segment-{h.zone}"
        for h in hosts
        if any(s.ha_enabled for s in asyncio.run(truth.list_servers(h.name)))
    )
    assert with_ha  # the seed gives at least one zone HA VMs
    code = main(["--home", str(tmp_path), "audit", "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert code == 1 and kinds(shown) == [("capacity", s) for s in with_ha]


def test_bad_input_is_named_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(tmp_path), "audit"]
    assert main([*home]) == 2  # no store yet
    assert "no haven state at" in capsys.readouterr().err
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}"):
        pass
    assert main([*home, "--cloud", "no-such-cloud"]) == 2
    err = capsys.readouterr().err
    assert "cannot use OpenStack cloud 'no-such-cloud'" in err and "Traceback" not in err
    (tmp_path / "haven.toml").write_text("[stateful.rabbitmq]\nhome = 3\n")
    assert main([*home]) == 2
    err = capsys.readouterr().err
    assert "[stateful]" in err and "Traceback" not in err
    (tmp_path / "haven.toml").unlink()
    assert main([*home, "--layout", "x.json", "--cloud", "c"]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    assert main([*home, "--ceph-osd-tree", "x.json"]) == 2
    assert "go together" in capsys.readouterr().err


async def test_the_api_is_for_readers_and_names_what_is_missing(
    world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    w = world(clean_servers())
    assert (await w.api(token="member")).status_code == 403
    down = await w.api(cloud=_Unreachable(w.cloud))
    assert down.status_code == 503 and "the cloud did not answer: Nova timed out" in down.text
    with Store.open(w.db) as store:
        app = create_app(store, None, "t", VirtualClock(), authenticator=_Roles())  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as c:
            bare = await c.get("/v1/haven/audit", headers={"X-Auth-Token": "reader"})
    assert bare.status_code == 409 and "started without them" in bare.text


class _Unreachable(CloudProxy):
    async def list_hosts(self) -> Sequence[Host]:
        raise TemporaryError("Nova timed out")


def _free_ram(host: Host) -> int:
    return int(host.capacity.schedulable_ram_mb) - host.used_ram_mb


def test_haven_serve_answers_the_audit_from_its_own_cloud_as_the_cli_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real ``haven serve`` process: GET /v1/haven/audit from its live simulated cloud and store, the
    same body as ``haven audit --json`` on the same home (the same seed builds the same cloud)."""
    haven = str(Path(sys.executable).with_name("haven"))
    env = {**os.environ, "HAVEN_HOME": str(tmp_path)}
    # three zones of one host each: every segment's HA VMs have nowhere to go (a finding per segment)
    (tmp_path / "haven.toml").write_text("[cloud]\nhosts = 3\nvms = 12\nseed = 4\n")
    port = free_port()
    proc = subprocess.Popen(
        [haven, "serve", "--bind", f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 30
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        while not (tmp_path / "token").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        token = (tmp_path / "token").read_text().strip()  # what `haven token` prints
        answer = httpx.get(f"{url}/v1/haven/audit", headers={"X-Auth-Token": token}, timeout=20)
        assert answer.status_code == 200, answer.text
        code = main(["--home", str(tmp_path), "audit", "--json"])
        assert code == 1
        assert answer.json() == json.loads(capsys.readouterr().out)
        assert {f["kind"] for f in answer.json()["findings"]} == {"capacity"}
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
