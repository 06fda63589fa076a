"""The rules of `haven import masakari` without a Masakari: the plan, a write that races, bad input.

The real Masakari API is in test_real_masakari.py; here the records are built by hand, as
haven.cloud.openstack.masakari would build them, and the CLI's failures are provoked directly.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from haven.cli.main import main
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import Segment, SegmentHost, SegmentMode
from haven.domain.masakari import MasakariSegment
from haven.lab.process import free_port
from haven.service.masakari_import import Action, apply_plan, import_masakari, plan_import
from haven.store import Store

A, B = SegmentId("a" * 32), SegmentId("b" * 32)


def masakari_segment(id_: SegmentId, name: str, *hosts: str, **fields: object) -> MasakariSegment:
    members = tuple(SegmentHost(HostName(h), id_, uuid=f"uuid-{h}") for h in hosts)
    return MasakariSegment(f"uuid-{name}", Segment(id_, name, **fields), members)  # type: ignore[arg-type]


def test_an_empty_store_gets_everything_in_the_mode_asked() -> None:
    source = [masakari_segment(A, "rack-1", "c1", "c2"), masakari_segment(B, "rack-2")]
    planned = plan_import(source, [], [], SegmentMode.DRY_RUN)
    assert [(i.kind, i.name, i.action) for i in planned] == [
        ("segment", "rack-1", Action.CREATE),
        ("host", "c1", Action.CREATE),
        ("host", "c2", Action.CREATE),
        ("segment", "rack-2", Action.CREATE),
    ]
    new = planned[0].new
    assert isinstance(new, Segment) and new.mode is SegmentMode.DRY_RUN and new.id == A


def test_a_segment_matched_by_uuid_keeps_haven_s_name_and_mode_and_still_gets_its_missing_hosts() -> None:
    haven = [Segment(A, "renamed-in-haven", mode=SegmentMode.NOTIFY), Segment(B, "rack-1")]
    source = [masakari_segment(A, "rack-1", "c1")]
    planned = plan_import(source, haven, [])
    assert [(i.name, i.action) for i in planned] == [("rack-1", Action.DIFFERS), ("c1", Action.CREATE)]
    assert planned[0].detail == "name: haven 'renamed-in-haven', Masakari 'rack-1'"  # the mode is haven's own


def test_a_host_name_met_twice_is_created_once() -> None:
    source = [masakari_segment(A, "rack-1", "c1"), masakari_segment(B, "rack-2", "c1")]
    planned = plan_import(source, [], [])
    assert [(i.name, i.action) for i in planned if i.kind == "host"] == [
        ("c1", Action.CREATE),
        ("c1", Action.CONFLICT),
    ]
    assert "in segment 'rack-1'" in planned[-1].detail


def test_what_someone_created_between_plan_and_write_is_a_conflict_and_the_rest_is_imported(
    tmp_path: Path,
) -> None:
    source = [masakari_segment(A, "rack-1", "c1", "c2", "c3"), masakari_segment(B, "rack-2", "c4")]
    with Store.open(f"sqlite:///{tmp_path}/haven.db") as store:
        planned = plan_import(source, store.list_segments(), store.list_hosts())
        other = store.create_segment(Segment(SegmentId("c" * 32), "other"))
        store.add_host(SegmentHost(HostName("c2"), other.id))  # meanwhile, by someone else
        store.create_segment(Segment(SegmentId("d" * 32), "rack-2"))
        done = {i.name: i.action for i in apply_plan(store, planned)}
        assert done == {
            "rack-1": Action.CREATE,
            "c1": Action.CREATE,
            "c2": Action.CONFLICT,
            "c3": Action.CREATE,
            "rack-2": Action.CONFLICT,
            "c4": Action.SKIPPED,
        }
        assert {h.name for h in store.list_hosts(A)} == {"c1", "c3"}
        again = import_masakari(store, source, dry_run=False)
    assert again.unresolved and not any(i.action is Action.CREATE for i in again.items)


def test_a_host_haven_renamed_keeps_masakari_s_uuid_so_the_old_name_is_a_conflict() -> None:
    source = [masakari_segment(A, "rack-1", "c1", "c2")]
    haven_hosts = [
        SegmentHost(HostName("renamed-c1"), A, uuid="uuid-c1"),
        SegmentHost(HostName("c2"), A, uuid="made-by-haven"),
    ]
    planned = plan_import(source, [Segment(A, "rack-1")], haven_hosts)
    assert [(i.name, i.action) for i in planned] == [
        ("rack-1", Action.UNCHANGED),
        ("c1", Action.CONFLICT),
        ("c2", Action.DIFFERS),
    ]
    assert planned[1].detail == "haven gives this uuid to host 'renamed-c1'"
    assert planned[2].detail == "uuid: haven 'made-by-haven', Masakari 'uuid-c2'"


# ---- the command line's failures ---------------------------------------------------------------


@pytest.fixture
def clouds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    path = tmp_path / "clouds.yaml"
    closed = free_port()  # nothing listens there
    path.write_text(
        f"clouds:\n  gone:\n    auth_type: none\n    instance_ha_endpoint_override: http://127.0.0.1:{closed}/v1\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return tmp_path


def test_a_masakari_that_does_not_answer_is_a_clear_error_and_no_state_is_made(
    capsys: pytest.CaptureFixture[str], clouds: Path
) -> None:
    started = time.monotonic()
    assert main(["import", "masakari", "--os-cloud", "gone"]) == 2
    err = capsys.readouterr().err
    assert (
        "cannot read Masakari's segments from cloud 'gone'" in err and "instance_ha_endpoint_override" in err
    )
    assert "Traceback" not in err and not (clouds / "home").exists()
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("argv", "says"),
    [(["--os-cloud", "nowhere"], "cannot use OpenStack cloud 'nowhere'"), ([], "no OpenStack cloud named")],
)
def test_a_cloud_that_cannot_be_named_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], clouds: Path, argv: list[str], says: str
) -> None:
    assert main(["import", "masakari", *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_an_unknown_mode_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str], clouds: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["import", "masakari", "--os-cloud", "gone", "--mode", "sometimes"])
    assert exited.value.code == 2 and "invalid choice: 'sometimes'" in capsys.readouterr().err
