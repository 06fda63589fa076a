"""Galera recovery decisions: pure, over one snapshot of every node's observed state.

Who calls it: haven.stateful.galera_recovery (the driver loop that reads the nodes and acts), and the
tests, which feed it every combination of node states. No I/O: the same observations always give the
same decision.

The rules are Galera's own (as the Pacemaker agent and mariadb-operator apply them), failing closed:

- A primary component exists (some node reports ``wsrep_cluster_status = Primary``): nothing to
  bootstrap. A node whose server is down is started again; it rejoins by IST or SST on its own.
- No primary component anywhere (a full outage, or the survivors lost quorum): every node's position
  must be known before anything starts. A running node's comes from its live ``wsrep_last_committed``;
  a stopped node's from ``grastate.dat``, or from ``mariadbd --wsrep-recover`` when its seqno is -1 (the
  decision asks for that read first). Then exactly one node is bootstrapped: the one with
  ``safe_to_bootstrap: 1`` (if its position is not below another node's), else the highest recovered
  seqno (a tie between equal positions is the same data: the first by name). The others are started in
  the next pass, once the bootstrapped node is primary.
- Any doubt holds, with one alert naming each node's exact state and the command an operator would
  run: a node that cannot be read, nodes of different cluster UUIDs, two nodes marked safe to bootstrap,
  a safe-to-bootstrap node behind another, two primary components. A running node whose SQL does not
  answer may be a primary component haven cannot see: the decision waits for it, and holds once it has
  been unreadable longer than ``settings.unreadable_hold_s``.
- A node haven already started or bootstrapped ``settings.start_attempts`` times within
  ``start_window_s`` and stopped again is not started again (``hold_if_stuck``, over the journal's
  steps): hold, naming it, its last error and the operator's command. This holds for a node lost from
  a running cluster as for the starts after a full outage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from haven.domain.galera import GaleraAction

ZERO_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class GraState:
    """A node's ``grastate.dat``: seqno -1 means it did not stop cleanly.

    ``mtime_ns``: the file's modification time (None when not known), so that a read made from this
    file (``--wsrep-recover``'s position, or its failure) is kept only while the file is unchanged.
    """

    uuid: str
    seqno: int
    safe_to_bootstrap: bool
    mtime_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """A cluster state UUID and the last transaction applied (``uuid:seqno``)."""

    uuid: str
    seqno: int

    def __str__(self) -> str:
        return f"{self.uuid}:{self.seqno}"


@dataclass(frozen=True, slots=True)
class LiveStatus:
    """A running node's ``SHOW STATUS LIKE 'wsrep_%'``."""

    ready: bool  # wsrep_ready
    cluster_status: str  # wsrep_cluster_status: Primary, non-Primary, Disconnected
    cluster_size: int  # wsrep_cluster_size
    local_state: str  # wsrep_local_state_comment: Synced, Donor/Desynced, Joining, Joined...
    state_uuid: str  # wsrep_cluster_state_uuid
    last_committed: int  # wsrep_last_committed

    @property
    def primary(self) -> bool:
        return self.cluster_status == "Primary"


@dataclass(frozen=True, slots=True)
class NodeObservation:
    """Everything read of one node in one pass.

    ``running``: whether its server process (unit) runs; None when that could not be read (its host is
    unreachable). ``live``: its wsrep status, None when its SQL did not answer. ``grastate``: None when
    the file could not be read (``error`` says why). ``recovered``: what ``--wsrep-recover`` printed,
    read only for a stopped node whose seqno is -1. ``unreadable_since``: when its SQL first stopped
    answering while it ran (None: it answers, or it does not run).
    """

    name: str
    running: bool | None
    live: LiveStatus | None = None
    grastate: GraState | None = None
    recovered: Position | None = None
    error: str = ""
    unreadable_since: float | None = None


@dataclass(frozen=True, slots=True)
class GaleraSettings:
    # How long a running node whose SQL does not answer is waited for (it may be starting, or be a
    # primary component haven cannot see) before the decision holds and alerts.
    unreadable_hold_s: float = 120.0
    # A node haven started or bootstrapped this many times within start_window_s (the journal's steps)
    # and that is to be started again (it keeps stopping: a full disk, a port taken, a damaged datadir)
    # is not started again: hold, as Pacemaker's migration-threshold stops restarting a failing resource.
    start_attempts: int = 3
    start_window_s: float = 600.0


class DecisionKind(StrEnum):
    NOTHING = "nothing"  # a primary component and every node in it, or on its way
    WAIT = "wait"  # something is moving (a node starting, joining): look again
    START = "start"  # a primary component exists: start the listed stopped nodes, they rejoin
    RECOVER = "recover"  # no primary component: read the listed nodes' positions (--wsrep-recover)
    BOOTSTRAP = "bootstrap"  # no primary component: bootstrap the one node named (a new cluster)
    HOLD = "hold"  # it cannot be decided safely: nothing is started, one alert


@dataclass(frozen=True, slots=True)
class GaleraDecision:
    kind: DecisionKind
    reason: str
    nodes: tuple[str, ...] = ()  # START/RECOVER: the nodes; BOOTSTRAP: the one node
    position: Position | None = None  # BOOTSTRAP: the position it is bootstrapped from
    positions: tuple[tuple[str, str], ...] = ()  # each node and its state, as the alert and CLI show it
    alert: str = ""  # HOLD: the alert's text, with each node's state and the operator's command


def decide(
    nodes: Sequence[NodeObservation], now: float, settings: GaleraSettings | None = None
) -> GaleraDecision:
    """The one thing to do next for a Galera cluster of ``nodes`` (every node of the cluster)."""
    settings = settings or GaleraSettings()
    states = tuple((n.name, describe(n)) for n in nodes)
    if len({n.name for n in nodes}) != len(nodes) or not nodes:
        return _hold("the cluster's node list is empty or names a node twice", states)
    primaries = [n for n in nodes if n.live is not None and n.live.primary]
    if primaries:
        return _with_primary(nodes, primaries, states)
    return _without_primary(nodes, now, settings, states)


def _with_primary(
    nodes: Sequence[NodeObservation], primaries: list[NodeObservation], states: tuple[tuple[str, str], ...]
) -> GaleraDecision:
    uuids = {p.live.state_uuid for p in primaries if p.live is not None}
    if len(uuids) > 1:
        return _hold(f"two primary components ({', '.join(sorted(uuids))}): a split cluster", states)
    stopped = tuple(n.name for n in nodes if n.running is False)
    if stopped:
        names = ", ".join(stopped)
        return GaleraDecision(
            DecisionKind.START, f"primary component on {primaries[0].name}; {names} down: start to rejoin",
            stopped, positions=states,
        )  # fmt: skip
    settling = [
        n.name for n in nodes if n.live is None or not n.live.primary or n.live.local_state != "Synced"
    ]
    if settling:
        return GaleraDecision(
            DecisionKind.WAIT, f"primary component up; {', '.join(settling)} not synced yet", positions=states
        )
    return GaleraDecision(
        DecisionKind.NOTHING, "every node synced in one primary component", positions=states
    )


def _without_primary(
    nodes: Sequence[NodeObservation],
    now: float,
    settings: GaleraSettings,
    states: tuple[tuple[str, str], ...],
) -> GaleraDecision:
    unknown = [n for n in nodes if n.running is None]
    if unknown:
        return _hold(f"no primary component, and {_names(unknown)} cannot be read", states)
    mute = [n for n in nodes if n.running and n.live is None]
    overdue = [n for n in mute if now - (n.unreadable_since or now) >= settings.unreadable_hold_s]
    if overdue:
        return _hold(f"no primary component, and {_names(overdue)} runs but its SQL does not answer", states)
    if mute:
        return GaleraDecision(
            DecisionKind.WAIT, f"no primary component; {_names(mute)} runs but does not answer yet",
            positions=states,
        )  # fmt: skip
    bad_files = [n for n in nodes if not n.running and n.grastate is None]
    if bad_files:
        return _hold(
            f"no primary component, and the grastate.dat of {_names(bad_files)} cannot be read", states
        )
    to_recover = tuple(n.name for n in nodes if _needs_recovery(n))
    if to_recover:
        return GaleraDecision(
            DecisionKind.RECOVER, f"no primary component: reading the positions of {', '.join(to_recover)}",
            to_recover, positions=states,
        )  # fmt: skip
    positions = {n.name: _position(n) for n in nodes}
    lost = [n for n in nodes if positions[n.name] is None]
    if lost:
        return _hold(
            f"no primary component, and the position of {_names(lost)} could not be recovered", states
        )
    return _choose(nodes, {k: v for k, v in positions.items() if v is not None}, states)


def _choose(
    nodes: Sequence[NodeObservation], positions: dict[str, Position], states: tuple[tuple[str, str], ...]
) -> GaleraDecision:
    # A node with no state at all (the zero UUID: an SST never finished) holds no data to choose from;
    # it joins by SST once a primary component exists.
    holders = {name: p for name, p in positions.items() if p.uuid != ZERO_UUID}
    if not holders:
        return _hold("no primary component, and no node holds any cluster state", states)
    uuids = {p.uuid for p in holders.values()}
    if len(uuids) > 1:
        return _hold(
            f"no primary component, and the nodes hold different clusters ({', '.join(sorted(uuids))})",
            states,
        )
    best = max(p.seqno for p in holders.values())
    safe = [
        n.name for n in nodes if not n.running and n.grastate is not None and n.grastate.safe_to_bootstrap
    ]
    if len(safe) > 1:
        return _hold(f"no primary component, and {', '.join(safe)} are all marked safe_to_bootstrap", states)
    if safe:
        chosen = safe[0]
        if chosen not in holders or holders[chosen].seqno < best:
            return _hold(
                f"no primary component, and {chosen} is marked safe_to_bootstrap"
                " but another node is ahead of it",
                states,
            )
        why = "marked safe_to_bootstrap: 1"
    else:
        chosen = min(name for name, p in holders.items() if p.seqno == best)
        ties = sorted(name for name, p in holders.items() if p.seqno == best)
        why = f"highest seqno {best}" + (
            f" (equal on {', '.join(ties)}: the same data)" if len(ties) > 1 else ""
        )
    node = next(n for n in nodes if n.name == chosen)
    if node.running:
        # The best node runs, in a non-primary component: Galera's own way is pc.bootstrap on it.
        return GaleraDecision(
            DecisionKind.BOOTSTRAP, f"no primary component: {chosen} ({why}) is made primary in place",
            (chosen,), holders[chosen], states,
        )  # fmt: skip
    return GaleraDecision(
        DecisionKind.BOOTSTRAP, f"no primary component: bootstrap {chosen} ({why}), then start the others",
        (chosen,), holders[chosen], states,
    )  # fmt: skip


def hold_if_stuck(
    decision: GaleraDecision,
    steps: Sequence[GaleraAction],
    now: float,
    settings: GaleraSettings | None = None,
) -> GaleraDecision:
    """``decision``, without the nodes haven already started or bootstrapped ``settings.start_attempts``
    times in the last ``start_window_s`` (``steps``: the journal's); the alert names each, its last error
    and the operator's command.

    - A START (nodes joining a primary component, or the starts after a bootstrap) keeps starting its
      other nodes: a stuck node never blocks its healthy peers. The decision stays a START over those,
      its ``alert`` set (the loop raises it as a hold's); with no node left, it is a HOLD.
    - A BOOTSTRAP of a stuck node holds: the bootstrap never moves to a node behind the best one.
    """
    settings = settings or GaleraSettings()
    if decision.kind not in (DecisionKind.START, DecisionKind.BOOTSTRAP):
        return decision
    kinds = (DecisionKind.START.value, DecisionKind.BOOTSTRAP.value)
    stuck: list[tuple[str, int, str]] = []  # (node, times, last error)
    for name in decision.nodes:
        made = [
            s for s in steps
            if s.node == name and s.kind in kinds and now - s.created_at <= settings.start_window_s
        ]  # fmt: skip
        if len(made) >= settings.start_attempts:
            stuck.append((name, len(made), made[-1].error or "it started, then its server stopped again"))
    if not stuck:
        return decision
    verb = "bootstrapped" if decision.kind is DecisionKind.BOOTSTRAP else "started"
    why = "; ".join(
        f"{name} was {verb} {count} times in the last {settings.start_window_s:g} s and would be again "
        f"(last error: {error})"
        for name, count, error in stuck
    )
    if decision.kind is DecisionKind.BOOTSTRAP:
        name = stuck[0][0]
        command = (
            f"For {name}: read its error log and fix the cause; it holds the position to bootstrap from "
            f"({decision.position}): set `safe_to_bootstrap: 1` in its grastate.dat and run "
            "`galera_new_cluster` on it (on no other node), then start mariadb on the others."
        )
        return _hold(why, decision.positions, command)
    names = ", ".join(name for name, _, _ in stuck)
    command = (
        f"For {names}: read its error log and fix the cause (a full disk, a port taken, a damaged "
        "data folder: remove it to rejoin by SST), then start mariadb on it; it rejoins the primary "
        "component by IST or SST (`SHOW STATUS LIKE 'wsrep_local_state_comment'` says Synced)."
    )
    rest = tuple(n for n in decision.nodes if n not in {name for name, _, _ in stuck})
    if not rest:
        return _hold(why, decision.positions, command)
    return GaleraDecision(
        DecisionKind.START,
        f"{decision.reason}; {why}: start {', '.join(rest)} only",
        rest,
        positions=decision.positions,
        alert=_alert(
            f"{why}",
            decision.positions,
            command,
            f"{names} is not started again; {', '.join(rest)} is started.",
        ),
    )


def _needs_recovery(node: NodeObservation) -> bool:
    return (
        not node.running and node.grastate is not None and node.grastate.seqno == -1
        and node.recovered is None and not node.error
    )  # fmt: skip


def _position(node: NodeObservation) -> Position | None:
    if node.running and node.live is not None:
        return Position(node.live.state_uuid, node.live.last_committed)
    if node.grastate is None:
        return None
    if node.grastate.seqno != -1:
        return Position(node.grastate.uuid, node.grastate.seqno)
    return node.recovered


def describe(node: NodeObservation) -> str:
    """One node's exact state, as an alert and the CLI show it."""
    if node.running is None:
        return f"unreadable ({node.error or 'its host or service manager did not answer'})"
    if node.running:
        if node.live is None:
            return f"running, SQL not answering ({node.error or 'no answer'})"
        live = node.live
        return (
            f"running: {live.cluster_status}, {live.local_state}, size {live.cluster_size}, "
            f"ready {'ON' if live.ready else 'OFF'}, position {live.state_uuid}:{live.last_committed}"
        )
    if node.grastate is None:
        return f"stopped, grastate.dat unreadable ({node.error or 'missing'})"
    g = node.grastate
    text = f"stopped: grastate {g.uuid}:{g.seqno} safe_to_bootstrap {int(g.safe_to_bootstrap)}"
    if g.seqno == -1:
        if node.recovered is not None:
            text += f", recovered position {node.recovered}"
        elif node.error:
            text += f", --wsrep-recover failed ({node.error})"
    return text


def _names(nodes: Sequence[NodeObservation]) -> str:
    return ", ".join(n.name for n in nodes)


def _hold(reason: str, states: tuple[tuple[str, str], ...], command: str = "") -> GaleraDecision:
    return GaleraDecision(
        DecisionKind.HOLD,
        reason,
        positions=states,
        alert=_alert(reason, states, command, "Nothing was started."),
    )


def _alert(reason: str, states: tuple[tuple[str, str], ...], command: str, made: str) -> str:
    """A hold's alert: why, what was (not) started, each node's state, the operator's commands."""
    lines = [f"Galera recovery held: {reason}. {made}", "Each node:"]
    lines += [f"  {name}: {state}" for name, state in states]
    lines += [command] if command else []
    lines += [
        "An operator, once every node can be read: on each stopped node run "
        "`mariadbd --wsrep-recover` (or read grastate.dat where seqno is not -1), pick the node with "
        "the highest seqno, set `safe_to_bootstrap: 1` in its grastate.dat and run "
        "`galera_new_cluster` there; then start mariadb on the others.",
    ]
    return "\n".join(lines)
