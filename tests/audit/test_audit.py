"""haven audit: a clean layout finds nothing; each planted defect is found, once, by its kind.

The Ceph inputs are recorded `ceph osd tree -f json` / `ceph osd crush rule dump -f json` outputs
(tests/audit/ceph/): no Ceph can run on these machines. The capacity check runs the recovery planner
itself (haven.recovery.planner), so "would not fit" here is what a real recovery would find.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from haven.audit.findings import audit
from haven.audit.layout import read_layout
from haven.cli.main import main

CEPH = Path(__file__).parent / "ceph"


def clean() -> dict[str, Any]:
    hosts = [{"name": f"cmp-{i}", "vcpus": 16, "ram_mb": 32768, "disk_gb": 1000} for i in range(1, 7)]
    servers = [
        {"id": f"vm-{i}-{j}", "host": f"cmp-{i}", "vcpus": 2, "ram_mb": 4096, "disk_gb": 20}
        for i in range(1, 7)
        for j in range(2)
    ]
    return {
        "domains": {
            "ctl-1": "rack-a",
            "ctl-2": "rack-b",
            "ctl-3": "rack-c",
            "cmp-1": "rack-a",
            "cmp-2": "rack-a",
            "cmp-3": "rack-b",
            "cmp-4": "rack-b",
            "cmp-5": "rack-c",
            "cmp-6": "rack-c",
        },
        "services": {"keystone": ["ctl-1", "ctl-2"], "nova-api": ["ctl-1", "ctl-2", "ctl-3"]},
        "clusters": {"galera": ["ctl-1", "ctl-2", "ctl-3"], "rabbitmq": ["ctl-1", "ctl-2", "ctl-3"]},
        "segments": [{"name": "seg-1", "hosts": hosts, "servers": servers}],
        "ceph_osd_tree": str(CEPH / "osd-tree.json"),
        "ceph_crush_rules": str(CEPH / "crush-rules-rack.json"),
    }


def findings(layout: dict[str, Any], tmp_path: Path) -> list[tuple[str, str]]:
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(layout))
    return [(f.kind, f.subject) for f in audit(read_layout(path))]


def test_a_clean_layout_has_no_finding(tmp_path: Path) -> None:
    assert findings(clean(), tmp_path) == []


def test_replicas_bunched_in_one_rack(tmp_path: Path) -> None:
    layout = clean()
    layout["services"]["keystone"] = ["ctl-1", "ctl-1b"]
    layout["domains"]["ctl-1b"] = "rack-a"
    assert findings(layout, tmp_path) == [("bunched", "keystone")]


def test_galera_quorum_one_rack_would_break(tmp_path: Path) -> None:
    layout = clean()
    layout["clusters"]["galera"] = ["ctl-1", "ctl-1b", "ctl-3"]
    layout["domains"]["ctl-1b"] = "rack-a"
    assert findings(layout, tmp_path) == [("quorum", "galera")]


def test_rabbitmq_of_two_nodes_in_two_racks_has_no_majority_after_either(tmp_path: Path) -> None:
    layout = clean()
    layout["clusters"]["rabbitmq"] = ["ctl-1", "ctl-2"]
    assert findings(layout, tmp_path) == [("quorum", "rabbitmq"), ("quorum", "rabbitmq")]


def test_a_segment_that_cannot_lose_its_largest_host(tmp_path: Path) -> None:
    layout = clean()
    segment = layout["segments"][0]
    segment["hosts"] = segment["hosts"][:2]  # two hosts, both nearly full
    segment["servers"] = [
        {"id": f"vm-{i}-{j}", "host": f"cmp-{i}", "vcpus": 2, "ram_mb": 8192, "disk_gb": 20}
        for i in (1, 2)
        for j in range(3)
    ]
    layout["domains"]["cmp-2"] = "rack-b"
    found = findings(layout, tmp_path)
    assert ("capacity", "seg-1") in found
    assert all(kind == "capacity" for kind, _ in found)


def test_a_segment_that_can_lose_a_host_but_not_its_largest_rack(tmp_path: Path) -> None:
    layout = clean()
    for name in ("cmp-3", "cmp-4", "cmp-5"):
        layout["domains"][name] = "rack-a"  # rack-a now holds 5 of 6 hosts
    for s in layout["segments"][0]["servers"]:
        s["ram_mb"] = 6144  # one lost host fits on the others; five do not fit on one
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(layout))
    found = audit(read_layout(path))
    assert [f.kind for f in found] == ["capacity"]
    assert "largest rack rack-a" in found[0].detail


def test_ceph_rule_by_host_lets_replicas_share_a_rack(tmp_path: Path) -> None:
    layout = clean()
    layout["ceph_crush_rules"] = str(CEPH / "crush-rules-host.json")
    assert findings(layout, tmp_path) == [("ceph_rule", "replicated_rule")]


def test_ceph_osd_host_outside_every_rack(tmp_path: Path) -> None:
    layout = clean()
    layout["ceph_osd_tree"] = str(CEPH / "osd-tree-host-outside-rack.json")
    assert findings(layout, tmp_path) == [("ceph_osd", "stor-3")]


def test_cli_table_json_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(clean()))
    assert main(["audit", "--layout", str(path)]) == 0
    assert "no finding" in capsys.readouterr().out
    bad = copy.deepcopy(clean())
    bad["ceph_crush_rules"] = str(CEPH / "crush-rules-host.json")
    path.write_text(json.dumps(bad))
    assert main(["audit", "--layout", str(path), "--json"]) == 1
    body = json.loads(capsys.readouterr().out)
    assert [f["kind"] for f in body["findings"]] == ["ceph_rule"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not JSON"),
        ('{"racks": {}}', "unknown key(s) racks"),
        (
            '{"segments": [{"name": "s", "hosts": [{"name": "h", "vcpus": -1, "ram_mb": 1}]}]}',
            "vcpus must be",
        ),
        ('{"ceph_osd_tree": "x.json"}', "go together"),
    ],
)
def test_a_bad_layout_is_named_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "layout.json"
    path.write_text(text)
    assert main(["audit", "--layout", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
