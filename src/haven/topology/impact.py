"""Impact analysis (pure): which user operations stop, which degrade and which keep working when services
or a whole controller are lost.

Called by ``haven impact`` (haven.cli.impact), ``GET /v1/haven/impact`` (haven.api.routes.haven_impact)
and bench/impact.py (the prediction it compares with the lab's measured matrix). It reads the same
graph haven.diagnosis ranks causes along (haven.topology.openstack): an operation's needs are the
services it calls and, along the catalogue's ``depends_on``, theirs, minus the edges the operation does
not use and the caches.

A *loss* is a service with ``left`` of its ``of`` serving replicas: fewer than it ``needs`` (one; for a
quorum-based cluster a strict majority of its members) is the service down (its operations stop), fewer
than before is a degraded service (still served, with less room to lose another replica). A lost cache
(memcached under Keystone) slows what goes through it, never stops it. An operation that completes by
another path when a service is down (a server delete on a compute Nova counts down is done by nova-api
alone) is degraded, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from haven.domain.controlplane import ReplicaHealth, ReplicaState
from haven.domain.errors import UserError
from haven.topology.openstack import Topology

# A replica whose unit is not installed on its host is no member of its cluster.
_NOT_A_MEMBER = ReplicaHealth.ABSENT


class Effect(StrEnum):
    STOPS = "stops"
    DEGRADED = "degraded"  # still served, by fewer replicas or without a cache
    WORKS = "works"


@dataclass(frozen=True, slots=True)
class ServiceLoss:
    service: str
    left: int  # replicas still serving; fewer than ``needs``: the service is down
    of: int  # replicas serving before the loss
    needs: int = 1  # serving replicas it cannot serve without (a quorum: a majority of its members)

    @property
    def down(self) -> bool:
        return self.left <= 0 or self.left < self.needs


@dataclass(frozen=True, slots=True)
class Verdict:
    """One operation or service and what the losses do to it; ``because``: the lost services that do it."""

    name: str
    label: str
    effect: Effect
    because: tuple[str, ...] = ()
    why: str = ""  # how it is still done despite a lost service it calls (an operation's fallback)


@dataclass(frozen=True, slots=True)
class Impact:
    losses: tuple[ServiceLoss, ...]
    services: tuple[Verdict, ...]  # every service the losses reach (the lost ones included), stops first
    operations: tuple[Verdict, ...]  # every user operation, stops first, then degraded, then works


_ORDER = {Effect.STOPS: 0, Effect.DEGRADED: 1, Effect.WORKS: 2}


def impact(topology: Topology, losses: Iterable[ServiceLoss]) -> Impact:
    """What ``losses`` do to every user operation and to the services that need the lost ones."""
    lost = tuple(sorted(losses, key=lambda loss: loss.service))
    down = {loss.service for loss in lost if loss.down}
    fewer = {loss.service for loss in lost if not loss.down and loss.left < loss.of}
    operations = []
    for name in sorted(topology.paths):
        hard, soft = topology.needs(name)
        verdict = _verdict(topology, name, hard, soft, down, fewer)
        for other in topology.paths[name].fallbacks if verdict.effect is Effect.STOPS else ():
            if other.service not in down:
                continue
            alt_hard, alt_soft = topology.reach(other.calls, other.unused, topology.paths[name].uncached)
            alt = _verdict(topology, name, alt_hard, alt_soft, down, fewer)
            if alt.effect is not Effect.STOPS:
                because = tuple(sorted({other.service, *alt.because}))
                verdict = Verdict(name, verdict.label, Effect.DEGRADED, because, other.reason)
                break
        operations.append(verdict)
    services = []
    for name in sorted(set(topology.depends_on) - topology.operations):
        hard, soft = topology.reach([name], from_outside=False)
        verdict = _verdict(topology, name, hard, soft, down, fewer)
        if verdict.effect is not Effect.WORKS:
            services.append(verdict)
    key = lambda v: (_ORDER[v.effect], v.name)  # noqa: E731
    return Impact(lost, tuple(sorted(services, key=key)), tuple(sorted(operations, key=key)))


def _verdict(
    topology: Topology,
    name: str,
    hard: frozenset[str],
    soft: frozenset[str],
    down: set[str],
    fewer: set[str],
) -> Verdict:
    label = topology.labels.get(name, name)
    if stopped := sorted(hard & down):
        return Verdict(name, label, Effect.STOPS, tuple(stopped))
    if slowed := sorted((hard & fewer) | (soft & (down | fewer))):
        return Verdict(name, label, Effect.DEGRADED, tuple(slowed))
    return Verdict(name, label, Effect.WORKS)


def controller_losses(
    replicas: Iterable[ReplicaState], host: str, quorum: Mapping[str, int] | None = None
) -> tuple[ServiceLoss, ...]:
    """The services that lose serving replicas when controller ``host`` goes, from an observation."""
    return losses_where(replicas, lambda r: r.host == host, quorum)


def losses_where(
    replicas: Iterable[ReplicaState],
    lost: Callable[[ReplicaState], bool],
    quorum: Mapping[str, int] | None = None,
) -> tuple[ServiceLoss, ...]:
    """The services that lose serving replicas when the ``lost`` ones go (a controller, a failure domain).

    A replica serves when it is healthy; each service with a serving replica lost keeps the ones
    elsewhere. ``quorum``: the quorum-based services and their declared replicas; such a service needs
    a strict majority of its members (the declared ones, or the replicas observed when more are
    deployed), counted whether or not they serve now: an unhealthy member still counts, so losing one
    more can leave a minority. A service already below what it needs is down whatever happens and is
    counted too when it has a replica among the lost.
    """
    quorum = quorum or {}
    serving: dict[str, int] = {}
    members: dict[str, int] = {}
    there: dict[str, int] = {}
    placed: set[str] = set()
    for r in replicas:
        ok = r.health is ReplicaHealth.HEALTHY
        serving[r.service] = serving.get(r.service, 0) + ok
        members[r.service] = members.get(r.service, 0) + (r.health is not _NOT_A_MEMBER)
        if lost(r):
            placed.add(r.service)
            there[r.service] = there.get(r.service, 0) + ok
    found = []
    for service in sorted(placed):
        needs = _needs(quorum, service, members[service])
        if there.get(service, 0) or serving[service] < needs:
            found.append(
                ServiceLoss(service, serving[service] - there.get(service, 0), serving[service], needs)
            )
    return tuple(found)


def _needs(quorum: Mapping[str, int], service: str, members: int) -> int:
    """The serving replicas ``service`` needs: a strict majority of its members if quorum-based, else 1."""
    return max(quorum[service], members) // 2 + 1 if service in quorum else 1


@dataclass(frozen=True, slots=True)
class Target:
    """What ``haven impact NAME`` is asked about: a service, a controller or a failure domain."""

    kind: str  # "service", "controller" or "domain"
    name: str
    losses: tuple[ServiceLoss, ...]


def resolve(
    topology: Topology,
    name: str,
    replicas: Sequence[ReplicaState],
    declared: Mapping[str, int],
    controllers: Iterable[str],
    domains: Iterable[str] = (),
    quorum: Iterable[str] = (),
) -> Target:
    """``name`` as a service (every replica lost), a controller or a failure domain (the serving
    replicas on it, in it, lost).

    ``replicas``: the control plane's latest observation (may be empty); ``declared``: each managed
    service's minimum replicas (used when nothing was observed, and as a quorum's members); ``controllers``
    and ``domains``: the known controller hosts and failure domains; ``quorum``: the quorum-based services
    (ServiceSpec.quorum), down once a majority of their members is lost. An unknown name raises UserError
    naming the valid ones.
    """
    sizes = {name: declared.get(name, 1) for name in quorum}
    services = sorted(set(topology.depends_on) - topology.operations)
    hosts = sorted(set(controllers) | {r.host for r in replicas})
    rooms = sorted((set(domains) | {r.domain for r in replicas}) - set(hosts))
    if name in services:
        serving = sum(r.health is ReplicaHealth.HEALTHY for r in replicas if r.service == name)
        members = sum(r.health is not _NOT_A_MEMBER for r in replicas if r.service == name)
        needs = _needs(sizes, name, members)
        return Target("service", name, (ServiceLoss(name, 0, serving or declared.get(name, 1), needs),))
    kind = "controller" if name in hosts else "domain" if name in rooms else ""
    if kind and not replicas:
        raise UserError(
            f"no observation of {kind} {name}'s replicas yet",
            "`haven serve` records the control plane after each pass while it leads; or ask about a service",
        )
    if kind == "controller":
        return Target(kind, name, controller_losses(replicas, name, sizes))
    if kind == "domain":
        return Target(kind, name, losses_where(replicas, lambda r: r.domain == name, sizes))
    raise UserError(
        f"{name!r} is neither a service, a controller nor a failure domain",
        f"services: {', '.join(services)}; controllers: {', '.join(hosts) or '(none known)'}; "
        f"failure domains: {', '.join(rooms) or '(none known)'}",
    )


def impact_json(target: Target, found: Impact) -> dict[str, Any]:
    """The answer as ``haven impact --json`` and ``GET /v1/haven/impact`` give it."""

    def rows(verdicts: Iterable[Verdict]) -> list[dict[str, Any]]:
        return [
            {
                "name": v.name,
                "label": v.label,
                "effect": v.effect.value,
                "because": list(v.because),
                "why": v.why,
            }
            for v in verdicts
        ]

    by = {e: [v.name for v in found.operations if v.effect is e] for e in Effect}
    return {
        "down": target.name,
        "kind": target.kind,
        "losses": [
            {"service": x.service, "left": x.left, "of": x.of, "needs": x.needs, "down": x.down}
            for x in found.losses
        ],
        "stops": by[Effect.STOPS],
        "degraded": by[Effect.DEGRADED],
        "works": by[Effect.WORKS],
        "operations": rows(found.operations),
        "services": rows(found.services),
    }
