"""Ceph's side of the failure-domain audit, read from recorded ``ceph`` JSON (no Ceph runs here).

Who calls it: haven.audit.findings. Input: ``ceph osd tree -f json`` (``nodes`` with id, name, type,
children) and ``ceph osd crush rule dump -f json`` (rules with their steps). Pure.
- ``ceph_rule``: a rule whose choose/chooseleaf step picks a bucket type below ``rack`` (host, osd)
  while the tree has racks: two replicas may land in one rack, so a rack's loss can take every copy.
- ``ceph_osd``: a host holding OSDs that hangs under no rack while other hosts do: its OSDs sit outside
  the failure domains the rules assume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_BELOW_RACK = {"osd", "host", "chassis"}
_CHOOSE = {"choose_firstn", "chooseleaf_firstn", "choose_indep", "chooseleaf_indep"}


def ceph_findings(
    tree: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str, str, str]]:
    """(kind, subject, detail, fix) for every rule and OSD host whose replicas may share a rack."""
    nodes = {int(n["id"]): n for n in tree.get("nodes", [])}
    racks = sorted(n["name"] for n in nodes.values() if n.get("type") == "rack")
    out: list[tuple[str, str, str, str]] = []
    if len(racks) >= 2:
        for rule in rules:
            for step in rule.get("steps", []):
                if step.get("op") in _CHOOSE and step.get("type") in _BELOW_RACK:
                    out.append(
                        (
                            "ceph_rule",
                            str(rule.get("rule_name", rule.get("rule_id"))),
                            f"picks replicas by {step['type']} ({step['op']}) although the tree has racks "
                            f"{', '.join(racks)}: two replicas may share a rack",
                            "set the rule's failure domain to rack "
                            "(ceph osd crush rule create-replicated NAME default rack) and move pools to it",
                        )
                    )
    if racks:
        under_rack: set[int] = set()
        for node in nodes.values():
            if node.get("type") == "rack":
                under_rack.update(int(c) for c in node.get("children", []))
        for node in nodes.values():
            osds = [c for c in node.get("children", []) if nodes.get(int(c), {}).get("type") == "osd"]
            if node.get("type") == "host" and osds and int(node["id"]) not in under_rack:
                out.append(
                    (
                        "ceph_osd",
                        str(node["name"]),
                        f"holds {len(osds)} OSD(s) but is under no rack (racks: {', '.join(racks)})",
                        f"ceph osd crush move {node['name']} rack=RACK",
                    )
                )
    return out
