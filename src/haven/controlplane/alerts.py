"""One alert per root event (pure): a pass's verdicts and holds folded into the alerts an operator needs.

Called by haven.controlplane.reconciler after each plan. A lost controller makes every replica on it
unknown and may leave services short of replicas: that is one ``controller_down`` alert naming what it
ran, not one per replica or service. A service with no healthy replica is one ``service_down`` alert,
and the holds of the services that depend on it (their probes fail because it is down) are folded into
it; a service down only because a service it depends on is down is folded into that one's alert too.
A service left short because one of its replicas crash-loops (a looping replica no longer counts, and
no host is left to start another) is folded into that crash loop's alert, and one left short because
replicas were on a lost controller (still served elsewhere, no host to start another) into that
controller's alert. A service short only because some of its replicas were unread this pass raises
no hold of its own for a grace (``unread_grace``: the reconciler gives about two passes), then does.
What is left (a crash loop, a
mass failure, no host to start on) is one alert per hold; a ``busy`` hold (a replica answering late
under load, whose restart waits) raises none: it is out of the load balancer and back once it answers.
Keystone refusing haven's own probe account is one ``probe_credentials`` alert per account, whatever
the number of replicas probed with it (``probe_credentials``): it is haven's configuration, not a
replica's or Keystone's health.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from haven.domain.controlplane import (
    ControlPlanePlan,
    ProbeKind,
    ProbeResult,
    ReplicaHealth,
    ServiceName,
    ServiceSpec,
)
from haven.domain.ids import HostName
from haven.domain.incidents import AlertKind

H = ReplicaHealth


@dataclass(frozen=True, slots=True)
class RootAlert:
    kind: AlertKind
    subject: str  # a controller, a service, or "SERVICE@HOST"
    reason: str


def unread_services(plan: ControlPlanePlan) -> set[ServiceName]:
    """The services with a replica unread this pass (unknown)."""
    return {service for service, _, health in plan.health if health is H.UNKNOWN}


def root_alerts(
    plan: ControlPlanePlan,
    specs: Mapping[ServiceName, ServiceSpec],
    unread_grace: Collection[ServiceName] | None = None,
) -> list[RootAlert]:
    """``unread_grace``: the services whose replicas have been unread for less than the grace (None:
    every one); a service unread longer raises its no_host hold as any other."""
    by_host: dict[HostName, list[tuple[ServiceName, ReplicaHealth]]] = defaultdict(list)
    by_service: dict[ServiceName, list[tuple[HostName, ReplicaHealth]]] = defaultdict(list)
    for service, host, health in plan.health:
        by_host[host].append((service, health))
        by_service[service].append((host, health))
    lost = {h for h, rs in by_host.items() if rs and all(health is H.UNKNOWN for _, health in rs)}
    down = {
        s
        for s, rs in by_service.items()
        if rs and not any(health in (H.HEALTHY, H.STARTING) for _, health in rs)
    }
    # A service is down because of a lost controller when every replica that could serve was there.
    down_by_lost = {
        s: sorted({h for h, health in by_service[s] if h in lost})
        for s in down
        if all(h in lost or health in (H.STOPPED, H.ABSENT) for h, health in by_service[s])
        and any(h in lost for h, _ in by_service[s])
    }
    folded: dict[str, list[str]] = defaultdict(list)  # root subject -> what was folded into it
    roots: dict[ServiceName, ServiceName] = {s: _root(s, down, specs) for s in down}
    for service, root in sorted(roots.items()):
        if root != service:
            folded[root].append(f"{service} down")
    for service, hosts in sorted(down_by_lost.items()):
        if roots[service] == service:
            folded[hosts[0]].append(f"{service} down")
    # A service still served elsewhere but short of replicas because some were on a lost controller:
    # its no_host hold is that controller's event, not one alert per service.
    short_by_lost = {
        s: sorted(h for h, _ in by_service[s] if h in lost)[0]
        for s in by_service
        if s not in down_by_lost and any(h in lost for h, _ in by_service[s])
    }
    # A service short only because some of its replicas could not be read this pass (their host not
    # wholly silent: a controller being lost, or coming back, reads partly): unknown is not down, and
    # the controller's own alert follows once the whole host is silent. The log says what was unread.
    unread = {
        s
        for s in by_service
        if s not in short_by_lost
        and any(x is H.UNKNOWN for _, x in by_service[s])
        and (unread_grace is None or s in unread_grace)
    }
    # A service short of replicas because one of them crash-loops (it no longer counts): one event.
    looped = {h.service: f"{h.service}@{h.host}" for h in plan.holds if h.kind == "crash_loop"}
    for hold in plan.holds:
        if hold.host is not None and hold.host in lost:
            folded[hold.host].append(f"{hold.service}: {hold.kind}")
        elif hold.kind == "dependency":
            deps = [d for d in specs[hold.service].depends_on if d in down] if hold.service in specs else []
            target = roots[deps[0]] if deps else None
            if target is not None:
                folded[target].append(f"{hold.service} held")
        elif hold.kind == "no_host" and hold.service in down_by_lost:
            folded[down_by_lost[hold.service][0]].append(f"{hold.service}: no host left")
        elif hold.kind == "no_host" and hold.service in short_by_lost:
            folded[short_by_lost[hold.service]].append(f"{hold.service} short: no host left to replace it")
        elif hold.kind == "no_host" and hold.service in looped:
            folded[looped[hold.service]].append(f"{hold.service}: no host left to replace it")
    alerts: list[RootAlert] = []
    for host in sorted(lost):
        services = ", ".join(sorted(s for s, _ in by_host[host]))
        alerts.append(
            RootAlert(
                AlertKind.CONTROLLER_DOWN,
                host,
                f"controller {host} unreachable (its systemd does not answer): its replicas of {services} "
                f"are out of the load balancer{_also(folded[host])}",
            )
        )
    for service in sorted(down):
        if roots[service] != service or service in down_by_lost:
            continue
        states = ", ".join(f"{h} {health.value}" for h, health in sorted(by_service[service]))
        alerts.append(
            RootAlert(
                AlertKind.SERVICE_DOWN,
                service,
                f"{service} has no healthy replica ({states}){_also(folded[service])}",
            )
        )
    for hold in plan.holds:
        handled = (hold.host is not None and hold.host in lost) or (
            hold.kind == "dependency" and any(f"{hold.service} held" in v for v in folded.values())
        )
        if (
            handled
            or hold.kind == "busy"
            or (
                hold.kind == "no_host"
                and (
                    hold.service in down_by_lost
                    or hold.service in short_by_lost
                    or hold.service in looped
                    or hold.service in unread
                )
            )
        ):
            continue
        if hold.kind == "crash_loop":
            subject = f"{hold.service}@{hold.host}"
            alerts.append(
                RootAlert(AlertKind.REPLICA_CRASH_LOOP, subject, f"{hold.reason}{_also(folded[subject])}")
            )
        else:
            alerts.append(RootAlert(AlertKind.SERVICE_HOLD, hold.service, hold.reason))
    unique: dict[tuple[AlertKind, str], RootAlert] = {}
    for alert in alerts:
        unique.setdefault((alert.kind, alert.subject), alert)
    return list(unique.values())


_KEYSTONE_ACCOUNTS = (ProbeKind.NOVA_SERVICES, ProbeKind.KEYSTONE)


def probe_account(spec: ServiceSpec) -> str:
    """A Keystone account of haven's probes, as its ``probe_credentials`` alert names it: USER@AUTH_URL,
    or USER@SERVICE for Keystone's own probe (each replica asked for a token, no ``auth_url``)."""
    assert spec.probe is not None
    return f"{spec.probe.user}@{spec.probe.auth_url or spec.name}"


def _keystone_at(spec: ServiceSpec) -> str:
    assert spec.probe is not None
    return spec.probe.auth_url or f"{spec.name}'s replicas"


def probe_credentials(
    specs: Mapping[ServiceName, ServiceSpec],
    latest: Mapping[tuple[ServiceName, HostName], ProbeResult],
) -> tuple[list[RootAlert], set[str]]:
    """The ``probe_credentials`` alerts, and the accounts whose alert ends. ``latest``: each replica's
    latest probe result. The replicas probed with one account share its token, so the newest of their
    results tells the account's state: refused (one alert, naming the services probed with it and
    where haven reads its password), or not (its alert ends: Keystone issued it a token since). An
    account with no result yet is in neither: its alert stays as it is until a probe tells."""
    accounts: dict[str, list[ServiceSpec]] = defaultdict(list)
    newest: dict[str, ProbeResult] = {}
    for spec in specs.values():
        if spec.probe is None or spec.probe.kind not in _KEYSTONE_ACCOUNTS:
            continue
        account = probe_account(spec)
        accounts[account].append(spec)
        for (service, _), result in latest.items():
            if service == spec.name and (account not in newest or result.at > newest[account].at):
                newest[account] = result
    alerts, accepted = [], set()
    for account, users in sorted(accounts.items()):
        seen = newest.get(account)
        if seen is None:
            continue
        if not seen.credentials_refused:
            accepted.add(account)
            continue
        probe = users[0].probe
        assert probe is not None
        project = f" (project {probe.project!r})" if probe.project else ""
        names = ", ".join(sorted(s.name for s in users))
        reason = (
            f"Keystone at {_keystone_at(users[0])} refuses haven's probe account {probe.user!r}{project} "
            f"(401 to its password): the deep probes of {names} judge their replicas by the version document "
            "(GET /) meanwhile, and nothing is drained or restarted for it. Fix: set the environment "
            f"variable {probe.password_env} (the probe's password_env in [controlplane.services."
            f"{users[0].name}]) to the account's password and restart haven serve, or make Keystone "
            "accept it (the user's password, the user enabled, its role on the project)"
        )
        alerts.append(RootAlert(AlertKind.PROBE_CREDENTIALS, account, reason))
    return alerts, accepted


def _root(
    service: ServiceName, down: set[ServiceName], specs: Mapping[ServiceName, ServiceSpec]
) -> ServiceName:
    """The deepest down dependency of a down service (itself when none of its dependencies is down)."""
    seen = {service}
    current = service
    while True:
        spec = specs.get(current)
        nxt = next((d for d in (spec.depends_on if spec else ()) if d in down and d not in seen), None)
        if nxt is None:
            return current
        seen.add(nxt)
        current = nxt


def _also(items: Sequence[str]) -> str:
    return f"; also: {'; '.join(items)}" if items else ""
