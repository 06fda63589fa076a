"""`haven import masakari` against a real Masakari 22.0.0 API (PyPI), read through openstacksdk.

The module's Masakari (tests/servers/masakari.py) holds three segments and five hosts, with
every field haven copies set to something other than its default somewhere. Each test imports
into its own haven home, through the real command line, with clouds.yaml naming that Masakari.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from haven.api.identity import public_uuid
from haven.cli.main import main
from haven.cloud.openstack.masakari import open_masakari
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import RecoveryMethod, Segment, SegmentHost, SegmentMode
from haven.store import Store
from servers.masakari import CLOUD, MasakariLab
from servers.masakari import masakari as masakari  # the module-scoped fixture

pytestmark = [pytest.mark.masakari, pytest.mark.slow]


@dataclass(frozen=True)
class Seeded:
    segments: dict[str, str]  # name -> Masakari uuid
    hosts: dict[str, str]  # name -> Masakari uuid


@pytest.fixture(scope="module")
def seeded(masakari: MasakariLab) -> Seeded:
    rack1 = masakari.add_segment("rack-1", description="first rack")["uuid"]
    rack2 = masakari.add_segment("rack-2", recovery_method="reserved_host", enabled=False)["uuid"]
    empty = masakari.add_segment("spare", recovery_method="rh_priority", service_type="COMPUTE-HA")["uuid"]
    hosts = masakari.add_hosts(rack1, "compute-1", "compute-2")
    hosts |= masakari.add_hosts(rack1, "compute-3", on_maintenance=True)
    hosts |= masakari.add_hosts(rack2, "compute-4", control_attributes="IPMI")
    hosts |= masakari.add_hosts(rack2, "spare-1", reserved=True)
    return Seeded({"rack-1": rack1, "rack-2": rack2, "spare": empty}, hosts)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, masakari: MasakariLab) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("HAVEN_HOME", str(home))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(masakari.clouds_yaml(tmp_path / "clouds.yaml")))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    yield home


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def imported(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, object]]:
    code, out, err = run(capsys, "import", "masakari", "--os-cloud", CLOUD, "--json", *extra)
    assert "Traceback" not in err
    return code, json.loads(out)


def actions(body: dict[str, object]) -> dict[tuple[str, str], str]:
    items = body["items"]
    assert isinstance(items, list)
    return {(i["kind"], i["name"]): i["action"] for i in items}


def test_the_reader_pages_through_every_segment_and_host(masakari: MasakariLab, seeded: Seeded) -> None:
    reader = open_masakari(CLOUD, masakari.clouds_yaml(masakari.api.folder / "clouds.yaml"))
    try:
        by_page_of_2 = reader.read(page_size=2)  # 3 segments: two pages; rack-1's 3 hosts: two pages
        default = reader.read()
    finally:
        reader.close()
    assert by_page_of_2 == default
    segments = {s.segment.name: s for s in by_page_of_2}
    assert {name: s.uuid for name, s in segments.items()} == seeded.segments
    rack2 = segments["rack-2"].segment
    assert (rack2.recovery_method, rack2.enabled) == (RecoveryMethod.RESERVED_HOST, False)
    assert segments["spare"].segment.service_type == "COMPUTE-HA" and segments["spare"].hosts == ()
    assert segments["rack-1"].segment.description == "first rack"
    hosts = {h.name: h for s in by_page_of_2 for h in s.hosts}
    assert {name: h.uuid for name, h in hosts.items()} == seeded.hosts
    assert hosts[HostName("compute-3")].on_maintenance
    assert hosts[HostName("spare-1")].reserved
    assert hosts[HostName("compute-4")].control_attributes == "IPMI"
    assert hosts[HostName("compute-4")].segment_id == rack2.id


def test_dry_run_then_import_then_again_creates_everything_once(
    capsys: pytest.CaptureFixture[str], home: Path, seeded: Seeded
) -> None:
    code, body = imported(capsys, "--dry-run")
    assert code == 0 and body["dry_run"] is True
    assert set(actions(body).values()) == {"create"} and len(actions(body)) == 8
    assert not (home / "haven.db").exists()  # a dry run makes no state

    code, body = imported(capsys)
    assert code == 0 and body["dry_run"] is False
    assert body["counts"] == {"segment": {"create": 3}, "host": {"create": 5}}
    with Store.open(f"sqlite:///{home}/haven.db") as store:
        segments = {s.name: s for s in store.list_segments()}
        hosts = {h.name: h for h in store.list_hosts()}
    # Masakari's segment uuids are kept: haven's API shows each segment at the uuid Masakari gave it.
    assert {name: public_uuid(s.id) for name, s in segments.items()} == seeded.segments
    assert segments["rack-2"].recovery_method is RecoveryMethod.RESERVED_HOST
    assert not segments["rack-2"].enabled and segments["rack-1"].mode is SegmentMode.AUTOMATIC
    assert {name: h.uuid for name, h in hosts.items()} == seeded.hosts  # host uuids kept too
    assert hosts[HostName("compute-3")].on_maintenance and hosts[HostName("spare-1")].reserved
    assert hosts[HostName("compute-4")].segment_id == segments["rack-2"].id

    code, body = imported(capsys)
    assert code == 0
    assert body["counts"] == {"segment": {"unchanged": 3}, "host": {"unchanged": 5}}


def test_what_differs_or_conflicts_is_reported_and_left_as_haven_has_it(
    capsys: pytest.CaptureFixture[str], home: Path, seeded: Seeded
) -> None:
    home.mkdir()
    rack1 = SegmentId(seeded.segments["rack-1"].replace("-", ""))
    with Store.open(f"sqlite:///{home}/haven.db") as store:
        store.create_segment(Segment(rack1, "rack-1", description="haven's own words"))
        haven_uuid = store.add_host(SegmentHost(HostName("compute-1"), rack1, reserved=True)).uuid
        zone = store.create_segment(Segment(SegmentId("a" * 32), "rack-2"))  # the name, another uuid
        store.add_host(SegmentHost(HostName("compute-2"), zone.id))  # Masakari has it in rack-1

    code, body = imported(capsys, "--mode", "notify")
    assert code == 1
    assert actions(body) == {
        ("segment", "rack-1"): "differs",
        ("host", "compute-1"): "differs",
        ("host", "compute-2"): "conflict",
        ("host", "compute-3"): "create",
        ("segment", "rack-2"): "conflict",
        ("host", "compute-4"): "skipped",
        ("host", "spare-1"): "skipped",
        ("segment", "spare"): "create",
    }
    details = {i["name"]: i["detail"] for i in body["items"]}  # type: ignore[union-attr]
    assert "description: haven \"haven's own words\", Masakari 'first rack'" in details["rack-1"]
    assert "reserved: haven True, Masakari False" in details["compute-1"]
    assert f"uuid: haven {haven_uuid!r}, Masakari {seeded.hosts['compute-1']!r}" in details["compute-1"]
    with Store.open(f"sqlite:///{home}/haven.db") as store:
        assert store.get_segment(rack1).description == "haven's own words"
        assert store.get_host(HostName("compute-1")).reserved
        assert store.get_host(HostName("compute-2")).segment_id == zone.id
        assert store.get_segment("spare").mode is SegmentMode.NOTIFY
        assert {h.name for h in store.list_hosts(rack1)} == {"compute-1", "compute-3"}

    # Readable too: a table naming each record and what happened to it.
    code, out, _ = run(capsys, "import", "masakari", "--os-cloud", CLOUD)
    assert code == 1
    assert "differs" in out and "conflict" in out and "compute-2" in out
    assert "segments: 1 conflict, 1 differs, 1 unchanged" in out.replace("\n", " ")


def test_a_foreign_database_is_refused_and_left_alone(
    capsys: pytest.CaptureFixture[str], home: Path, seeded: Seeded
) -> None:
    home.mkdir()
    with sqlite3.connect(home / "haven.db") as db:
        db.execute("CREATE TABLE mine (x)")
    code, out, err = run(capsys, "import", "masakari", "--os-cloud", CLOUD)
    assert code == 2 and out == ""
    assert "is not a haven database" in err and "Traceback" not in err
    with sqlite3.connect(home / "haven.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master")]
    assert tables == ["mine"]
