"""The failure-domain audit: what one failure domain's loss would break, judged from a layout.

Who calls it: ``haven audit`` (haven.cli.audit) and ``GET /v1/haven/audit`` (haven.api.routes.haven_audit),
with a Layout read from haven's own sources (haven.audit.sources: the store, the cloud, haven.toml) or
from a layout file (haven.audit.layout). Pure: a Layout in, Findings out. Four checks, each a finding kind:
- ``bunched``: a control-plane service whose replicas all sit in one failure domain while others exist
  (losing that domain stops the service);
- ``quorum``: a Galera or RabbitMQ cluster where one domain holds half its nodes or more (losing it
  leaves no majority: Galera goes non-primary, RabbitMQ's pause_minority pauses every node);
- ``capacity``: a segment that could not place every HA VM after losing its largest host or its largest
  rack, asked of the same planner a real recovery uses (haven.recovery.planner.plan_evacuation);
- ``ceph_rule`` / ``ceph_osd``: from recorded ``ceph osd tree`` / ``ceph osd crush rule dump`` JSON
  (haven.audit.ceph).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from haven.audit.ceph import ceph_findings
from haven.domain.cloud import Server, ServerGroup
from haven.domain.ids import ServerGroupId
from haven.domain.incidents import RecoveryMethod
from haven.domain.plan import TargetHost, Unplaced
from haven.recovery.planner import plan_evacuation


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # bunched, quorum, capacity, ceph_rule, ceph_osd
    subject: str  # the service, cluster, segment, rule or host
    detail: str  # what is wrong, with the numbers
    fix: str  # what to change


@dataclass(frozen=True, slots=True)
class Cluster:
    """A quorum-based cluster (Galera, RabbitMQ): its nodes' hosts."""

    name: str
    hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    hosts: tuple[TargetHost, ...]  # every host with its capacity and what it carries
    servers: tuple[Server, ...]  # every VM on those hosts (the HA ones are the ones that must fit)
    method: RecoveryMethod = RecoveryMethod.AUTO
    groups: Mapping[ServerGroupId, ServerGroup] = field(default_factory=dict)  # their server groups
    # [recovery] as a real recovery plans with them (haven.recovery.host_steps._plan)
    evacuate_all_instances: bool = False
    ignore_instances_in_error_state: bool = False


@dataclass(frozen=True, slots=True)
class Layout:
    domains: Mapping[str, str]  # host -> failure domain (rack), controllers and computes alike
    services: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # service -> replica hosts
    clusters: tuple[Cluster, ...] = ()
    segments: tuple[Segment, ...] = ()
    ceph_tree: Mapping[str, object] | None = None  # `ceph osd tree -f json`
    ceph_rules: Sequence[Mapping[str, object]] | None = None  # `ceph osd crush rule dump -f json`
    controllers: tuple[str, ...] = ()  # hosts declared to run control-plane replicas (beside those used)


def checked(layout: Layout) -> dict[str, object]:
    """What the audit looked at, so that "no finding" is never mistaken for "nothing to check"."""
    return {
        "domains": sorted(set(layout.domains.values())),
        "services": sorted(layout.services),
        "clusters": [c.name for c in layout.clusters],
        "segments": [s.name for s in layout.segments],
        "ceph": layout.ceph_tree is not None and layout.ceph_rules is not None,
    }


def audit_json(layout: Layout, findings: Sequence[Finding]) -> dict[str, object]:
    """``haven audit --json``'s object, and ``GET /v1/haven/audit``'s body."""
    seen = checked(layout)
    return {
        "findings": [
            {"kind": f.kind, "subject": f.subject, "detail": f.detail, "fix": f.fix} for f in findings
        ],
        "ceph": seen["ceph"],
        "checked": seen,
    }


def audit(layout: Layout) -> list[Finding]:
    found = _bunched(layout) + _quorum(layout)
    for segment in layout.segments:
        found += _capacity(segment, layout.domains)
    if layout.ceph_tree is not None and layout.ceph_rules is not None:
        found += [Finding(*f) for f in ceph_findings(layout.ceph_tree, layout.ceph_rules)]
    return found


def _domain(layout: Layout, host: str) -> str:
    return layout.domains.get(host, host)


def _bunched(layout: Layout) -> list[Finding]:
    everywhere = set(layout.domains.values())
    control = {h for hosts in layout.services.values() for h in hosts} | set(layout.controllers)
    control |= {h for c in layout.clusters for h in c.hosts}
    control_domains = {_domain(layout, h) for h in control}
    out = []
    for service, hosts in sorted(layout.services.items()):
        domains = Counter(_domain(layout, h) for h in hosts)
        if len(hosts) >= 2 and len(domains) == 1 and len(everywhere) > 1:
            (only,) = domains
            out.append(
                Finding(
                    "bunched",
                    service,
                    f"all {len(hosts)} replicas ({', '.join(hosts)}) are in {only}",
                    f"move a replica to another domain ({', '.join(sorted(control_domains - {only}))})"
                    if control_domains - {only}
                    else f"add a controller in another domain ({only} holds every controller)",
                )
            )
    return out


def _quorum(layout: Layout) -> list[Finding]:
    out = []
    for cluster in layout.clusters:
        n = len(cluster.hosts)
        for domain, count in sorted(Counter(_domain(layout, h) for h in cluster.hosts).items()):
            if n > 0 and n - count <= n // 2:
                out.append(
                    Finding(
                        "quorum",
                        cluster.name,
                        f"{count} of its {n} nodes are in {domain}: losing {domain} leaves {n - count},"
                        " no majority",
                        "spread the nodes: no domain may hold half of them or more (3 nodes in 3 domains)",
                    )
                )
    return out


def _capacity(segment: Segment, domains: Mapping[str, str]) -> list[Finding]:
    """Can the segment lose a host, or a rack, and still place every HA VM? Asked of the recovery planner.

    Which loss is the hardest is not one number (flavors, three resources, server groups), so the losses
    are ranked by the RAM they take away (the HA VMs to re-place plus the room lost with them) and the
    planner is asked about the worst ``HOST_LOSSES_CHECKED`` hosts and ``RACK_LOSSES_CHECKED`` racks; the
    first that fails of each kind is reported.
    """
    # As a real recovery plans (haven.recovery.host_steps.make_plan): VMs left to their owner
    # (HA_Mode=notify) are set apart; the planner itself picks the HA ones (or all, per [recovery]).
    servers = [s for s in segment.servers if not s.left_to_owner]
    ha = [s for s in servers if s.ha_enabled or segment.evacuate_all_instances]
    if not segment.hosts or not ha:
        return []  # nothing a loss would have to re-place
    weight: Counter[str] = Counter()  # per host: its HA VMs' RAM plus its free RAM, both lost with it
    for s in ha:
        weight[s.host] += s.flavor.ram_mb
    for h in segment.hosts:
        weight[h.name] += max(0, int(h.capacity.schedulable_ram_mb) - h.used_ram_mb)
    racks: dict[str, list[str]] = {}
    for host in segment.hosts:
        racks.setdefault(domains.get(host.name, host.name), []).append(host.name)
    if len(racks) == 1 and len(segment.hosts) > 1:
        (rack,) = racks
        rack_finding = Finding(
            "capacity",
            segment.name,
            f"all its hosts are in one rack ({rack}): losing it loses all",
            "add hosts in another rack to the segment",
        )
        return [*_host_losses(segment, servers, weight), rack_finding]
    found = _host_losses(segment, servers, weight)
    ranked = sorted(racks, key=lambda r: (-sum(weight[h] for h in racks[r]), r))
    for i, rack in enumerate(ranked[:RACK_LOSSES_CHECKED]):
        if len(racks[rack]) == 1:
            continue  # a rack of one host: the host losses asked the same question
        what = f"its largest rack {rack}" if i == 0 else f"rack {rack}"
        unplaced = _unplaced(segment, servers, set(racks[rack]))
        if unplaced:
            found.append(_short(segment, what, unplaced))
            break
    return found


# Per segment: the planner runs once for each loss asked about (a rack of 40 hosts in a segment of 3,333
# takes it about 0.15 s on this 2-core machine under load; docs/stateful.md, "haven audit").
HOST_LOSSES_CHECKED = 10
RACK_LOSSES_CHECKED = 5


def _host_losses(segment: Segment, servers: Sequence[Server], weight: Mapping[str, int]) -> list[Finding]:
    ranked = sorted(segment.hosts, key=lambda h: (-weight.get(h.name, 0), h.name))
    for i, host in enumerate(ranked[:HOST_LOSSES_CHECKED]):
        unplaced = _unplaced(segment, servers, {host.name})
        if unplaced:
            return [
                _short(segment, f"its largest host {host.name}" if i == 0 else f"host {host.name}", unplaced)
            ]
    return []


def _unplaced(segment: Segment, servers: Sequence[Server], lost: set[str]) -> tuple[Unplaced, ...]:
    plan = plan_evacuation(
        [s for s in servers if s.host in lost],
        [h for h in segment.hosts if h.name not in lost],
        segment.groups,
        segment.method,
        evacuate_all_instances=segment.evacuate_all_instances,
        ignore_instances_in_error_state=segment.ignore_instances_in_error_state,
    )
    return plan.unplaced


def _short(segment: Segment, what: str, unplaced: Sequence[Unplaced]) -> Finding:
    return Finding(
        "capacity",
        segment.name,
        f"after losing {what}, {len(unplaced)} HA VM(s) cannot be placed ({unplaced[0].reason})",
        "add capacity or reserved hosts to the segment, or spread its HA VMs",
    )
