"""A restore as new boots on the original server's networks (or those named, or none); a drill never has one.

On the simulated cloud in virtual time, judged from its ground truth: the networks each server has a
port on (``SimBackups.ports``, what Nova and Neutron would show) and every boot it accepted with the
networks asked (``boot_calls``). The CLI runs in this process on the same SQLite file with its
OpenStack cloud replaced by the simulated one; the API through the real app.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.conftest import FakeIntake
from haven.api.app import create_app
from haven.api.auth import Principal
from haven.api.routes.haven_backups import attach_backups
from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings
from haven.backups.restores import Restorer
from haven.backups.runner import BackupRunner
from haven.backups.serving import BackupService
from haven.cli.main import main
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import BackupRecord, BackupState, RestoreRecord, RestoreState
from haven.domain.clock import VirtualClock
from haven.domain.cloud import VmState
from haven.domain.errors import UserError
from haven.domain.ids import ServerId
from haven.store import Store

from .simcloud import SimCloud

CONFIG = BackupsConfig(enabled=True, scheduler=SchedulerSettings(jitter_s=0.0))


@dataclass
class Rig:
    clock: VirtualClock
    port: SimBackups
    store: Store
    url: str
    server: ServerId
    web: str  # network ids, the server on both
    db: str
    spare: str  # a third network, the server not on it
    flavor: str  # the server's: a deleted server's copy boots with it ([backups.drills] flavor)

    def restorer(self) -> Restorer:
        return Restorer(self.port, self.store, self.clock, DrillSettings(flavor=self.flavor))

    async def backed_up(self) -> BackupRecord:
        runner = BackupRunner(CONFIG, self.port, self.store, self.clock)
        record = await runner.backup_now(self.server)
        self.clock.advance_to(self.clock.now() + 200.0)  # the upload takes 120 s
        await runner.run_pass()
        record = self.store.get_backup(record.id)
        assert record.state is BackupState.AVAILABLE
        return record

    async def finish(self, record: RestoreRecord) -> RestoreRecord:
        self.clock.advance_to(self.clock.now() + 120.0)  # the boot takes 20 s
        await self.port.list_targets()
        record = await self.restorer().advance(record)
        assert record.state is RestoreState.DONE, record
        return record

    async def booted(self, name: str) -> tuple[ServerId, tuple[str, ...]]:
        """The one server of that name and the networks it has ports on (ground truth)."""
        (found,) = await self.port.find_targets(name)
        assert found.vm_state is VmState.ACTIVE
        return found.id, self.port.ports.get(found.id, ())


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=2, vms=2, zones=1), clock)
    server = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))[0]
    port = SimBackups(cloud)
    web, db, spare = (port.add_network(n) for n in ("web", "db", "spare"))
    port.attach(server, web, db)
    url = f"sqlite:///{tmp_path / 'haven.db'}"
    with Store.open(url) as store:
        yield Rig(clock, port, store, url, server, web, db, spare, cloud.sim_server(server).flavor.name)


async def test_as_new_boots_on_the_original_servers_networks_and_a_drill_on_none(rig: Rig) -> None:
    backup = await rig.backed_up()
    assert backup.networks == (rig.web, rig.db)  # recorded when the cloud took it
    restorer = rig.restorer()
    record = await restorer.restore(rig.server, None, "copy")
    assert record.networks == (rig.web, rig.db)
    await rig.finish(record)
    _, networks = await rig.booted("copy")
    assert networks == (rig.web, rig.db)  # the original's, in its order

    await restorer.drill_round([rig.server])
    (drill,) = [r for r in rig.store.list_restores() if r.purpose.value == "drill"]
    assert [n for _, name, n in rig.port.boot_calls if name == drill.name] == [()]  # isolated
    assert rig.port.ports.get(ServerId(drill.target_id), ()) == ()


async def test_the_networks_the_server_is_on_now_win_while_it_exists(rig: Rig) -> None:
    await rig.backed_up()
    rig.port.attach(rig.server, rig.spare)  # Nova shows three now
    await rig.finish(await rig.restorer().restore(rig.server, None, "copy"))
    assert (await rig.booted("copy"))[1] == (rig.web, rig.db, rig.spare)


async def test_a_deleted_servers_copy_boots_on_the_networks_recorded_with_its_backup(rig: Rig) -> None:
    await rig.backed_up()
    await rig.port.delete_server(rig.server)
    await rig.finish(await rig.restorer().restore(rig.server, None, "copy"))
    assert (await rig.booted("copy"))[1] == (rig.web, rig.db)


async def test_a_deleted_servers_recorded_network_that_is_gone_is_a_user_error(rig: Rig) -> None:
    await rig.backed_up()
    await rig.port.delete_server(rig.server)
    del rig.port.network_names[rig.db]  # deleted from Neutron since
    with pytest.raises(UserError, match=rf"no network .{rig.db}. in the cloud .server .* was on it when"):
        await rig.restorer().restore(rig.server, None, "copy")
    assert rig.port.boot_calls == [] and rig.store.list_restores() == []


async def test_a_deleted_server_whose_backup_recorded_no_networks_needs_them_named(rig: Rig) -> None:
    backup = await rig.backed_up()
    # a backup taken before haven recorded networks: the field is absent from its stored record
    rig.store.save_backup(dataclasses.replace(backup, networks=None), [BackupState.AVAILABLE])
    assert rig.store.get_backup(backup.id).networks is None
    await rig.port.delete_server(rig.server)
    restorer = rig.restorer()
    with pytest.raises(UserError, match=r"no longer exists and backup .* recorded no networks") as refused:
        await restorer.restore(rig.server, None, "copy")
    assert "--network NAME_OR_ID" in refused.value.hint and "--no-network" in refused.value.hint
    await rig.finish(await restorer.restore(rig.server, None, "copy", networks=["spare"]))
    assert (await rig.booted("copy"))[1] == (rig.spare,)


async def test_networks_named_by_name_or_id_or_none_and_unknown_or_ambiguous_ones_refused(rig: Rig) -> None:
    await rig.backed_up()
    restorer = rig.restorer()
    await rig.finish(await restorer.restore(rig.server, None, "by-name", networks=["spare", rig.web]))
    assert (await rig.booted("by-name"))[1] == (rig.spare, rig.web)
    await rig.finish(await restorer.restore(rig.server, None, "isolated", networks=[]))
    assert (await rig.booted("isolated"))[1] == ()

    booted = len(rig.port.boot_calls)
    with pytest.raises(UserError, match="no network 'nope' in the cloud"):
        await restorer.restore(rig.server, None, "unknown", networks=["web", "nope"])
    rig.port.add_network("web")  # a second network named web
    with pytest.raises(UserError, match="2 networks are named 'web'") as ambiguous:
        await restorer.restore(rig.server, None, "ambiguous", networks=["web"])
    assert ambiguous.value.hint == "pass the network's id"
    with pytest.raises(UserError, match="networks are chosen for a restore as new only"):
        await restorer.restore(rig.server, None, None, networks=["spare"])
    assert len(rig.port.boot_calls) == booted and rig.port.rebuild_calls == []  # nothing asked of Nova
    assert {r.name for r in rig.store.list_restores()} == {"by-name", "isolated"}


# ---- the CLI and the API ------------------------------------------------------------------------------


def test_the_cli_takes_network_and_no_network(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(rig.backed_up())
    monkeypatch.setattr("haven.cloud.openstack.open_cloud", lambda name, **_: SimCloud(rig.port))
    monkeypatch.delenv("OS_CLOUD", raising=False)

    def cli(*args: str) -> tuple[int, dict[str, Any], str]:
        code = main(["--home", str(tmp_path), "--db", rig.url, "backups", "restore", rig.server, *args,
                     "--cloud", "sim", "--wait", "0", "--json"])  # fmt: skip
        captured = capsys.readouterr()
        return code, json.loads(captured.out) if captured.out.strip() else {}, captured.err

    code, started, err = cli("--as-new", "c-default")
    assert code == 0 and started["networks"] == [rig.web, rig.db], err
    code, started, err = cli("--as-new", "c-two", "--network", "spare", "--network", rig.db)
    assert code == 0 and started["networks"] == [rig.spare, rig.db], err
    code, started, err = cli("--as-new", "c-none", "--no-network")
    assert code == 0 and started["networks"] == [], err
    code, out, err = cli("--as-new", "c-bad", "--network", "nope")
    assert code == 2 and out == {} and "no network 'nope' in the cloud" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as both:
        cli("--as-new", "c-both", "--network", "spare", "--no-network")
    assert both.value.code == 2 and "not allowed with argument" in capsys.readouterr().err

    rig.clock.advance_to(rig.clock.now() + 120.0)  # the boots end (the sim's events: read next)
    got = {name: asyncio.run(rig.booted(name))[1] for name in ("c-default", "c-two", "c-none")}
    assert got == {"c-default": (rig.web, rig.db), "c-two": (rig.spare, rig.db), "c-none": ()}
    assert asyncio.run(rig.port.find_targets("c-bad")) == []


class _Roles:
    def authenticate(self, token: str | None) -> Principal | None:
        return None if token is None else Principal(user_id=token, project_id="p", roles=frozenset({token}))


@pytest.fixture
async def http(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(rig.store, FakeIntake(rig.store, rig.clock), "t", rig.clock, authenticator=_Roles())
    attach_backups(app, BackupService(CONFIG, rig.port, rig.store, rig.clock))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as client:
        yield client


async def test_the_api_takes_networks_a_list_or_none_and_answers_400_for_an_unknown_one(
    rig: Rig, http: httpx.AsyncClient
) -> None:
    await rig.backed_up()
    admin = {"X-Auth-Token": "admin"}

    async def ask(**body: Any) -> httpx.Response:
        return await http.post(
            "/v1/haven/backups/restores", json={"server_id": rig.server, **body}, headers=admin
        )

    listed = await ask(as_new="a-list", networks=["spare"])
    assert listed.status_code == 202, listed.text
    assert listed.json()["restore"]["networks"] == [rig.spare]
    none = await ask(as_new="a-none", networks="none")
    assert none.status_code == 202 and none.json()["restore"]["networks"] == [], none.text
    default = await ask(as_new="a-default")
    assert default.status_code == 202 and default.json()["restore"]["networks"] == [rig.web, rig.db]
    unknown = await ask(as_new="a-unknown", networks=["nope"])
    assert unknown.status_code == 400
    assert "no network 'nope' in the cloud" in unknown.json()["badRequest"]["message"]
    for bad in ("all", [""], 7):
        malformed = await ask(as_new="a-malformed", networks=bad)
        assert malformed.status_code == 400, (bad, malformed.text)
    rig.clock.advance_to(rig.clock.now() + 120.0)
    got = {name: (await rig.booted(name))[1] for name in ("a-list", "a-none", "a-default")}
    assert got == {"a-list": (rig.spare,), "a-none": (), "a-default": (rig.web, rig.db)}
    assert await rig.port.find_targets("a-unknown") == [] and await rig.port.find_targets("a-malformed") == []
