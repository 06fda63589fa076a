"""Read the audit's layout file (JSON) into haven.audit.findings.Layout; every mistake named.

Who calls it: ``haven audit --layout FILE``. The file declares the failure domains and what sits in them::

    {"domains": {"ctl-1": "rack-a", "cmp-1": "rack-a"},
     "services": {"keystone": ["ctl-1", "ctl-2"]},
     "clusters": {"galera": ["ctl-1", "ctl-2", "ctl-3"], "rabbitmq": ["ctl-1", "ctl-2", "ctl-3"]},
     "segments": [{"name": "seg-1", "method": "auto",
                   "hosts": [{"name": "cmp-1", "vcpus": 16, "ram_mb": 65536, "disk_gb": 500}],
                   "servers": [{"id": "vm-1", "host": "cmp-1", "vcpus": 2, "ram_mb": 4096,
                                "disk_gb": 20, "ha": true}]}],
     "ceph_osd_tree": "osd-tree.json", "ceph_crush_rules": "crush-rules.json"}

The Ceph files (paths relative to the layout file) are ``ceph osd tree -f json`` and ``ceph osd crush
rule dump -f json`` as recorded on the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from haven.audit.findings import Cluster, Layout, Segment
from haven.domain.cloud import HA_ENABLED_KEY, Capacity, Flavor, Server
from haven.domain.errors import UserError
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import RecoveryMethod
from haven.domain.plan import TargetHost

_KEYS = {"domains", "services", "clusters", "segments", "ceph_osd_tree", "ceph_crush_rules"}


def read_layout(path: Path) -> Layout:
    raw = _json(path)
    if not isinstance(raw, dict):
        raise UserError(
            f"{path}: the layout must be a JSON object", f"known keys: {', '.join(sorted(_KEYS))}"
        )
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise UserError(
            f"{path}: unknown key(s) {', '.join(unknown)}", f"known keys: {', '.join(sorted(_KEYS))}"
        )
    domains = _names_map(raw.get("domains", {}), f"{path}: domains", 'e.g. {"ctl-1": "rack-a"}')
    services = _lists(raw.get("services", {}), f"{path}: services")
    clusters = tuple(Cluster(k, v) for k, v in _lists(raw.get("clusters", {}), f"{path}: clusters").items())
    segments = raw.get("segments", [])
    if not isinstance(segments, list):
        raise UserError(
            f"{path}: segments must be a list", 'e.g. [{"name": "seg-1", "hosts": [], "servers": []}]'
        )
    tree = rules = None
    if ("ceph_osd_tree" in raw) != ("ceph_crush_rules" in raw):
        raise UserError(f"{path}: ceph_osd_tree and ceph_crush_rules go together", "give both, or neither")
    if "ceph_osd_tree" in raw:
        tree, rules = read_ceph(
            path.parent / str(raw["ceph_osd_tree"]), path.parent / str(raw["ceph_crush_rules"]), f"{path}: "
        )
    return Layout(
        domains,
        services,
        clusters,
        tuple(_segment(s, f"{path}: segments[{i}]") for i, s in enumerate(segments)),
        tree,
        rules,
    )


def read_ceph(tree_path: Path, rules_path: Path, where: str = "") -> tuple[dict[str, Any], list[Any]]:
    """Recorded ``ceph osd tree -f json`` and ``ceph osd crush rule dump -f json``, checked for shape."""
    tree, rules = _json(tree_path), _json(rules_path)
    if not isinstance(tree, dict) or not isinstance(tree.get("nodes"), list) or not isinstance(rules, list):
        raise UserError(
            f"{where}the Ceph files are not `ceph osd tree -f json` / `ceph osd crush rule dump -f json`",
            "record them with those commands on the Ceph cluster",
        )
    return tree, rules


def _segment(raw: Any, where: str) -> Segment:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise UserError(
            f"{where}: a segment needs a name", '{"name": "seg-1", "hosts": [...], "servers": [...]}'
        )
    try:
        method = RecoveryMethod(raw.get("method", "auto"))
    except ValueError:
        choices = ", ".join(m.value for m in RecoveryMethod)
        raise UserError(f"{where}: method {raw.get('method')!r} is unknown", f"one of: {choices}") from None
    servers = []
    for i, s in enumerate(raw.get("servers", [])):
        here = f"{where}.servers[{i}]"
        flavor = Flavor("audit", _int(s, "vcpus", here), _int(s, "ram_mb", here), _int(s, "disk_gb", here, 0))
        metadata = {HA_ENABLED_KEY: "True"} if s.get("ha", True) else {}
        name = _str(s, "id", here)
        host = HostName(_str(s, "host", here))
        servers.append(Server(ServerId(name), name, host, flavor, metadata=metadata))
    hosts = []
    for i, h in enumerate(raw.get("hosts", [])):
        here = f"{where}.hosts[{i}]"
        name = _str(h, "name", here)
        mine = [s.flavor for s in servers if s.host == name]
        capacity = Capacity(
            _int(h, "vcpus", here),
            _int(h, "ram_mb", here),
            _int(h, "disk_gb", here, 10_000),
            cpu_allocation_ratio=float(h.get("cpu_allocation_ratio", 4.0)),
        )
        hosts.append(
            TargetHost(
                HostName(name),
                capacity,
                sum(f.vcpus for f in mine),
                sum(f.ram_mb for f in mine),
                sum(f.disk_gb for f in mine),
                reserved=bool(h.get("reserved", False)),
            )
        )
    return Segment(raw["name"], tuple(hosts), tuple(servers), method)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}", "give the path of an existing file") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not JSON: {exc}", "fix the file (line and column above)") from None


def _names_map(value: Any, where: str, hint: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise UserError(f"{where} must map names to names", hint)
    return dict(value)


def _lists(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    ok = isinstance(value, dict) and all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()
    )
    if not ok:
        raise UserError(
            f"{where} must map each name to a list of hosts", 'e.g. {"galera": ["ctl-1", "ctl-2"]}'
        )
    return {k: tuple(v) for k, v in value.items()}


def _str(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key) if isinstance(table, dict) else None
    if not isinstance(value, str) or not value:
        raise UserError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _int(table: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = table.get(key, default) if isinstance(table, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UserError(f"{where}: {key} must be a whole number >= 0, got {value!r}")
    return value
