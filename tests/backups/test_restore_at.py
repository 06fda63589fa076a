"""``--at TIME`` (a restore from an older backup), the time it is given in, and the recovery-point alert,
on the simulated cloud in virtual time.

Judged from the simulated cloud's ground truth: which image a restored server booted from or was
rebuilt with, and the data on its disk (each backup holds what the guest had written when it was
taken); the alert from the store's own alerts, checked against the simulated cloud's images. The CLI
runs in this process (``haven.cli.main.main``) on the same SQLite file as the test's store, with its
OpenStack cloud replaced by the simulated one (it drives the real argument parsing, Restorer, JSON and
exit codes); the API through the real app.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
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
from haven.cli import backups as cli_backups
from haven.cli.main import main
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import BackupRecord, BackupState, ImageStatus, RestoreState
from haven.domain.clock import VirtualClock
from haven.domain.cloud import VmState
from haven.domain.errors import UserError
from haven.domain.ids import ServerId
from haven.domain.incidents import AlertKind
from haven.store import Store

from .simcloud import SimCloud

HOUR = 3600.0
EPOCH = 1_800_000_000.0  # 2027-01-15T08:00:00Z: the virtual clock's start
CONFIG = BackupsConfig(enabled=True, scheduler=SchedulerSettings(jitter_s=0.0))


@dataclass
class Rig:
    clock: VirtualClock
    port: SimBackups
    store: Store
    url: str
    server: ServerId
    taken: list[BackupRecord] = field(default_factory=list)

    def runner(self) -> BackupRunner:
        return BackupRunner(CONFIG, self.port, self.store, self.clock)

    def restorer(self) -> Restorer:
        return Restorer(self.port, self.store, self.clock, DrillSettings())

    async def take(self, data: str) -> BackupRecord:
        """The guest writes ``data``, a backup is taken now, then an hour passes."""
        self.port.write(self.server, data)
        runner = self.runner()
        record = await runner.backup_now(self.server)
        self.clock.advance_to(self.clock.now() + 200.0)  # the upload takes 120 s
        await runner.run_pass()
        self.clock.advance_to(self.clock.now() + HOUR)
        record = self.store.get_backup(record.id)
        self.taken.append(record)
        return record

    async def settle(self, seconds: float = 120.0) -> None:
        """Virtual time for a boot or rebuild to end (the simulated cloud's events run when asked)."""
        self.clock.advance_to(self.clock.now() + seconds)
        await self.port.list_targets()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=2, vms=2, zones=1), clock)
    server = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))[0]
    url = f"sqlite:///{tmp_path / 'haven.db'}"
    with Store.open(url) as store:
        yield Rig(clock, SimBackups(cloud), store, url, server)


async def three_and_a_failed_one(rig: Rig) -> tuple[BackupRecord, ...]:
    """Backups holding v1, v2, v3 an hour apart, then one whose upload failed (it held v4)."""
    b1, b2, b3 = [await rig.take(data) for data in ("v1", "v2", "v3")]
    rig.port.faults.fail_backups = 1
    b4 = await rig.take("v4")
    assert [b.state for b in (b1, b2, b3, b4)] == [BackupState.AVAILABLE] * 3 + [BackupState.FAILED]
    rig.port.write(rig.server, "corrupted")
    return b1, b2, b3, b4


def iso(at: float, zone: timezone = UTC) -> str:
    return datetime.fromtimestamp(at, zone).isoformat()


# ---- the choice, and a restore from it --------------------------------------------------------------


async def test_at_picks_the_newest_good_backup_taken_at_or_before_it(rig: Rig) -> None:
    b1, b2, b3, b4 = await three_and_a_failed_one(rig)
    t1, t2, t3, t4 = (b.created_at for b in (b1, b2, b3, b4))
    restorer = rig.restorer()
    cases = [
        (t1, b1), (t2 - 0.001, b1), (t2, b2), ((t2 + t3) / 2, b2), (t3, b3),
        (t4 + HOUR, b3),  # the failed backup after it is no recovery point
        (None, b3),
    ]  # fmt: skip
    for at, expected in cases:
        assert (await restorer.choose(rig.server, at)).id == expected.id, (at, expected.slot)
    with pytest.raises(UserError, match="has no good backup at or before that time"):
        await restorer.choose(rig.server, t1 - 1)

    # as new, from the backup of the middle of the day; then the server itself rebuilt from the first
    copy = await restorer.restore(rig.server, (t2 + t3) / 2, "copy-at-v2")
    in_place = await restorer.restore(rig.server, t1 + 60, None)
    await rig.settle()
    copy, in_place = [await restorer.advance(r) for r in (copy, in_place)]
    assert (copy.state, in_place.state) == (RestoreState.DONE, RestoreState.DONE)
    (restored,) = await rig.port.find_targets("copy-at-v2")  # ground truth from here on
    assert restored.vm_state is VmState.ACTIVE and restored.image_id == b2.image_id
    assert rig.port.disk(restored.id) == "v2"
    assert [(server, image) for _, server, image in rig.port.rebuild_calls] == [(rig.server, b1.image_id)]
    assert (await rig.port.get_target(rig.server)).vm_state is VmState.ACTIVE
    assert rig.port.disk(rig.server) == "v1"


# ---- the CLI: haven backups restore SERVER --at TIME ------------------------------------------------


def test_the_cli_restores_at_a_time_and_refuses_one_before_any_backup(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    b1, b2, _, _ = asyncio.run(three_and_a_failed_one(rig))
    opened: list[str | None] = []

    def open_cloud(name: str | None, **_: Any) -> SimCloud:
        opened.append(name)
        return SimCloud(rig.port)

    monkeypatch.setattr("haven.cloud.openstack.open_cloud", open_cloud)
    monkeypatch.delenv("OS_CLOUD", raising=False)

    def cli(*args: str) -> tuple[int, str, str]:
        code = main(["--home", str(tmp_path), "--db", rig.url, "backups", "restore", rig.server, *args,
                     "--cloud", "sim", "--wait", "0"])  # fmt: skip
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    servers = len(asyncio.run(rig.port.list_targets()))
    code, out, err = cli("--at", iso(b1.created_at - 1), "--as-new", "too-early")
    assert code == 2 and out == "", err
    assert f"server {rig.server} has no good backup at or before that time" in err
    assert "haven backups list SERVER" in err and "Traceback" not in err
    code, _, err = cli("--at", "yesterday")
    assert code == 2 and "--at 'yesterday' is not a time" in err and "ISO 8601" in err
    code, _, err = cli("--at", "")
    assert code == 2 and "--at '' is not a time" in err  # before the fix: no --at, the newest backup
    assert opened == ["sim"]  # a malformed --at never reached the cloud; the early one looked, then refused
    assert len(asyncio.run(rig.port.list_targets())) == servers and rig.port.rebuild_calls == []

    # between the first and the second backup, written in another zone (+02:00)
    between = iso((b1.created_at + b2.created_at) / 2, timezone(timedelta(hours=2)))
    code, out, err = cli("--at", between, "--as-new", "copy-at-v1", "--json")
    assert code == 0, err  # --wait 0: started is success (before the fix: exit 1)
    started = json.loads(out)
    assert (started["backup_id"], started["state"], started["purpose"]) == (b1.id, "booting", "as_new")
    asyncio.run(rig.settle())
    (restored,) = asyncio.run(rig.port.find_targets("copy-at-v1"))
    assert restored.id == started["target_id"] and restored.image_id == b1.image_id
    assert restored.vm_state is VmState.ACTIVE and rig.port.disk(restored.id) == "v1"


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("2027-01-15T08:00:00Z", EPOCH),
        ("2027-01-15T08:00:00z", EPOCH),
        ("2027-01-15T08:00:00+00:00", EPOCH),
        ("2027-01-15T10:30:00+02:30", EPOCH),
        ("2027-01-15T03:00:00-05:00", EPOCH),
        ("2027-01-15T08:00:00", EPOCH),  # no zone: UTC
        ("2027-01-15 08:00", EPOCH),
        ("2027-01-15T08:00:00.250Z", EPOCH + 0.25),
        ("  2027-01-15T08:00:00Z ", EPOCH),
        ("2027-01-15", EPOCH - 8 * HOUR),  # a date: its midnight, UTC
        ("20270115T080000Z", EPOCH),  # ISO 8601's basic format
    ],
)
def test_the_time_parser_accepts_iso_8601(text: str, at: float) -> None:
    assert cli_backups._parse_time(text) == at


@pytest.mark.parametrize(
    "text", ["yesterday", "", " ", "1800000000", "2027-02-30", "2027-01-15T25:00", "2027-01-15T08:00+25:00"]
)
def test_the_time_parser_refuses_anything_else_naming_it(text: str) -> None:
    with pytest.raises(UserError) as refused:
        cli_backups._parse_time(text)
    assert refused.value.message == f"--at {text!r} is not a time"
    assert refused.value.hint == "use ISO 8601, e.g. 2027-01-15T08:00:00Z"


# ---- the API: POST /v1/haven/backups/restores with "at" ----------------------------------------------


class _Roles:
    def authenticate(self, token: str | None) -> Principal | None:
        return None if token is None else Principal(user_id=token, project_id="p", roles=frozenset({token}))


@pytest.fixture
async def http(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(rig.store, FakeIntake(rig.store, rig.clock), "t", rig.clock, authenticator=_Roles())
    attach_backups(app, BackupService(CONFIG, rig.port, rig.store, rig.clock))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as client:
        yield client


async def test_the_api_restores_at_a_time_and_answers_400_for_one_before_any_backup(
    rig: Rig, http: httpx.AsyncClient
) -> None:
    b1, b2, b3, _ = await three_and_a_failed_one(rig)
    admin = {"X-Auth-Token": "admin"}
    early = await http.post(
        "/v1/haven/backups/restores",
        json={"server_id": rig.server, "at": iso(b1.created_at - 1), "as_new": "too-early"},
        headers=admin,
    )
    assert early.status_code == 400
    assert "has no good backup at or before that time" in early.json()["badRequest"]["message"]
    assert await rig.port.find_targets("too-early") == []
    between = iso((b2.created_at + b3.created_at) / 2, timezone(timedelta(hours=-5)))
    answer = await http.post(
        "/v1/haven/backups/restores",
        json={"server_id": rig.server, "at": between, "as_new": "copy-at-v2"},
        headers=admin,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["restore"]["backup_id"] == b2.id
    await rig.settle()
    (restored,) = await rig.port.find_targets("copy-at-v2")
    assert restored.image_id == b2.image_id and rig.port.disk(restored.id) == "v2"


# ---- recovery_point_stale -----------------------------------------------------------------------------


async def test_recovery_point_stale_is_raised_once_the_newest_good_backup_is_older_than_allowed(
    rig: Rig,
) -> None:
    """Hourly, no jitter, grace 3600 s: a recovery point may be 2 h old (one period and the grace)."""
    policy = {"haven_backup": "hourly", "haven_backup_keep": "3"}
    rig.port.cloud.sim_server(rig.server).metadata.update(policy)
    runner = rig.runner()

    async def run_until(at: float) -> list[Any]:
        while rig.clock.now() < at:
            await runner.run_pass()
            rig.clock.advance_to(min(rig.clock.now() + 60.0, at))
        await runner.run_pass()
        return [a for a in rig.store.list_alerts() if a.kind is AlertKind.RECOVERY_POINT_STALE]

    assert await run_until(EPOCH + 600) == []  # the 08:00 window's backup: available by 08:02
    (point,) = [r.created_at for r in rig.store.backups_of(rig.server) if r.state is BackupState.AVAILABLE]
    rig.port.faults.refuse_permanently = "Quota exceeded for resource image"  # every later one refused
    assert await run_until(point + 2 * HOUR - 60) == []  # 1 h 59 min old: within the policy
    (stale,) = await run_until(point + 2 * HOUR + 60)
    assert stale.host == rig.server
    assert f"recovery point {iso(point).replace('+00:00', 'Z')} is older than its hourly policy" in (
        stale.message
    )
    newest = max(
        i.created_at
        for i in rig.port.images.values()
        if i.server_id == rig.server and i.status is ImageStatus.ACTIVE
    )
    assert newest == point  # the cloud's own newest good image is that old: the alert is right
    rig.port.faults.refuse_permanently = ""  # the quota is raised: the next attempt succeeds
    assert await run_until(rig.clock.now() + 30 * 60) == []  # cleared once a new backup is available
    assert any(a.kind is AlertKind.RECOVERY_POINT_STALE for a in rig.store.list_alerts(active_only=False))
