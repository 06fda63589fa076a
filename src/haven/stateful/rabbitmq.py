"""RabbitMQ cluster recovery decisions: pure, over one snapshot of every node's observed state.

Who calls it: haven.stateful.rabbitmq_recovery (the loop that reads every node and acts), and the tests,
which feed it tables of node states. No I/O: the same observations always give the same decision.

What each node reports (``rabbitmqctl cluster_status --formatter json``, read from that node itself):
its ``running_nodes`` and the cluster's ``partitions`` (a map: node -> the nodes it saw as partitioned
away, Mnesia's ``inconsistent_database`` events; RabbitMQ keeps the list until those nodes restart),
and its ``alarms`` (memory, disk), which are reported, never acted on.

The rules, one step at a time, failing closed:

- A node whose state cannot be known (its host or service manager does not answer): hold, with one
  alert naming each node's state and the command an operator would run.
- A node whose server is down is started: it rejoins from its own Mnesia folder. Starting never
  lowers availability, so every stopped node is started at once (after a full outage RabbitMQ nodes
  wait for each other to boot: starting one at a time would stall). A node haven already started
  ``settings.start_attempts`` times within ``start_window_s`` (the journal's steps, ``hold_if_stuck``)
  is not started again: hold, the alert naming it, its last error and the operator's command.
- A running node whose CLI does not answer (booting, or its ``rabbit`` app stopped) is waited for, and
  held once it stayed so longer than ``settings.unreadable_hold_s``.
- A partition (any report non-empty) is left alone for ``settings.partition_grace_s`` (a blip may be
  healed by hand, or be gone); then it is healed as ``autoheal`` does and the RabbitMQ documentation
  describes for ``ignore``. A pair of nodes each naming the other is partitioned, and so is a pair
  one of which names the other while they do not see each other running. The nodes are split into
  sides (the largest groups with no such pair inside), the side with the most nodes is kept (a tie:
  the side holding the lexicographically first node), and one node of the other sides (the first by
  name) has its app restarted (``stop_app`` then ``start_app``: it rejoins and takes the kept side's
  state). The next pass decides again from every node's report.
- A node naming others that do not name it back and that it sees running holds a stale warning: they
  restarted since (a node forgets its partitions when its app restarts; one that stayed up keeps naming
  them while any of them runs). Once every node sees every other running, it is restarted too, one at
  a time ("restart the nodes in the trusted partition to clear the warning", as the documentation says).
- A node haven already restarted ``settings.restart_attempts`` times within ``start_window_s`` (a
  partition each restart did not end: a link that keeps failing) is not restarted again: hold, naming
  the node, its last error and the operator's command (``hold_if_stuck``).
- Under ``pause_minority`` (or ``pause_if_all_down``; ``settings.partition_handling``) RabbitMQ itself
  pauses the side that cannot see a majority and resumes it once it can: a paused node (running, its
  CLI mute) is waited for and, past ``unreadable_hold_s``, held with an alert saying so, never
  restarted. A partition reported while every node runs its app (Mnesia stayed partitioned: the
  partitions guide notes that pause_minority does nothing against partitions it never saw, e.g. a
  suspended node) is not ended by the mode; RabbitMQ's only documented way out, "Recovering From a
  Split-Brain", discards the changes of every side but the trusted one, a choice the operator's pick of
  a consistency-first mode leaves to them: hold, with one alert naming the largest side and the
  commands. A stale warning (the other side restarted since) is cleared as under ``ignore``: nothing
  is discarded by it.
- Never a majority restarted: a restart is made only while every node runs its app, and one node at a
  time; a cluster of fewer than two nodes, or a restart that would leave fewer than half the nodes
  running, holds.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """One node's own ``cluster_status``: what it sees."""

    running_nodes: tuple[str, ...]
    partitions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # node -> partitioned from
    alarms: tuple[str, ...] = ()  # e.g. "memory@rabbit-1@localhost", "disk@..."


@dataclass(frozen=True, slots=True)
class NodeObservation:
    """Everything read of one node in one pass.

    ``name``: its Erlang node name (rabbit-1@localhost). ``running``: whether its server (the Erlang VM)
    runs; None when that could not be read. ``status``: its cluster_status, None when the CLI did not
    answer (``error`` says why). ``unreadable_since``: when its CLI first stopped answering while it ran.
    """

    name: str
    running: bool | None
    status: ClusterStatus | None = None
    error: str = ""
    unreadable_since: float | None = None


@dataclass(frozen=True, slots=True)
class RabbitSettings:
    partition_grace_s: float = 10.0  # a partition must last this long before a node is restarted
    unreadable_hold_s: float = 120.0  # a running node whose CLI is mute this long: hold and alert
    start_attempts: int = 3  # starts of one node (or start_app tries of one restart) before a hold
    start_window_s: float = 600.0  # ... counted over this long (the journal's steps), restarts too
    restart_attempts: int = 3  # app restarts of one node (partitions it did not end) before a hold
    # The cluster's cluster_partition_handling (its rabbitmq.conf, advanced.config, rabbitmq.config):
    # ignore and autoheal partitions are healed by haven's rule; pause_minority / pause_if_all_down hold.
    partition_handling: str = "ignore"


class DecisionKind(StrEnum):
    NOTHING = "nothing"  # every node runs and sees every other, no partition
    WAIT = "wait"  # something is moving (a node booting, a partition inside its grace): look again
    START = "start"  # start the listed stopped nodes: they rejoin
    RESTART = "restart"  # restart the one listed node's app (stop_app, start_app): heals a partition
    HOLD = "hold"  # it cannot be decided safely: nothing is done, one alert


@dataclass(frozen=True, slots=True)
class RabbitDecision:
    kind: DecisionKind
    reason: str
    nodes: tuple[str, ...] = ()  # START: the nodes; RESTART: the one node
    kept: tuple[str, ...] = ()  # RESTART: the side kept
    states: tuple[tuple[str, str], ...] = ()  # each node and its state, as the alert and CLI show it
    alert: str = ""  # HOLD: the alert's text, with each node's state and the operator's command


def decide(
    nodes: Sequence[NodeObservation],
    now: float,
    partitioned_since: float | None,
    settings: RabbitSettings | None = None,
) -> RabbitDecision:
    """The one thing to do next for the RabbitMQ cluster of ``nodes`` (every node of the cluster).

    ``partitioned_since``: when the loop first saw a partition reported without a break (None: none now).
    """
    settings = settings or RabbitSettings()
    states = tuple((n.name, describe(n)) for n in nodes)
    names = [n.name for n in nodes]
    if not nodes or len(set(names)) != len(names):
        return _hold("the cluster's node list is empty or names a node twice", states)
    unknown = [n for n in nodes if n.running is None]
    if unknown:
        return _hold(f"the state of {_names(unknown)} cannot be read", states)
    stopped = tuple(n.name for n in nodes if n.running is False)
    if stopped:
        return RabbitDecision(
            DecisionKind.START, f"{', '.join(stopped)} down: start to rejoin", stopped, states=states
        )
    mute = [n for n in nodes if n.status is None]
    overdue = [n for n in mute if now - (n.unreadable_since or now) >= settings.unreadable_hold_s]
    if overdue and settings.partition_handling in PAUSING:
        return _hold(
            f"{_names(overdue)} runs but its CLI does not answer: under {settings.partition_handling} a "
            "node that cannot see a majority pauses (its app stops, its VM runs) and resumes by itself once "
            "it sees one again, so haven restarts nothing",
            states,
            f"An operator: check the network between {_names(overdue)} and the other nodes; the paused node "
            "resumes when it is mended (`rabbitmqctl -n NODE cluster_status` answers again). Do not "
            "`start_app` a paused node while it cannot reach a majority.",
        )
    if overdue:
        return _hold(f"{_names(overdue)} runs but its CLI does not answer", states)
    if mute:
        return RabbitDecision(
            DecisionKind.WAIT, f"{_names(mute)} runs but does not answer yet", states=states
        )
    claims = partition_claims(nodes)
    apart = [n.name for n in nodes if n.status and not set(names) <= set(n.status.running_nodes)]
    if not claims:
        if apart:
            return RabbitDecision(
                DecisionKind.WAIT, f"{', '.join(apart)} does not see every node running yet", states=states
            )
        return RabbitDecision(DecisionKind.NOTHING, "every node runs and sees every other", states=states)
    pairs = ", ".join(f"{a}/{b}" for a, b in sorted(claims))
    since = now if partitioned_since is None else partitioned_since
    if now - since < settings.partition_grace_s:
        return RabbitDecision(
            DecisionKind.WAIT,
            f"partitioned ({pairs}) for {now - since:.1f} s, grace {settings.partition_grace_s:g} s",
            states=states,
        )
    if 2 * (len(names) - 1) < len(names):  # every node runs its app here: one restart leaves n - 1
        return _hold(
            f"partitioned ({pairs}); a restart would leave fewer than half the nodes running", states
        )
    edges = partition_edges(claims, nodes)
    if edges and settings.partition_handling in PAUSING:
        kept = keep_side(sorted(names), edges)
        return _hold(
            f"partitioned ({pairs}) under {settings.partition_handling}: every node runs its app, so the "
            "mode did not pause a side and will not end this split",
            states,
            _split_brain_command(settings.partition_handling, kept, sorted(set(names) - set(kept))),
        )
    if edges:
        kept = keep_side(sorted(names), edges)
        victim = sorted(set(names) - set(kept))[0]  # a side holding every node has no edge inside it
        why = f"partitioned ({pairs}) for {now - since:.0f} s: keep {', '.join(kept)} (the largest side)"
    else:
        # Only one side still names the other: those nodes restarted since (a node forgets a partition
        # when its app restarts), the warning on this side is stale. RabbitMQ's documentation: restart
        # the kept side's nodes too, to clear it; once every node sees every other running.
        if apart:
            return RabbitDecision(
                DecisionKind.WAIT, f"a stale partition warning ({pairs}), and {', '.join(apart)} does not "
                "see every node running yet", states=states,
            )  # fmt: skip
        victim = sorted({a for a, _ in claims})[0]
        kept = tuple(n for n in sorted(names) if n != victim)
        why = f"{victim} still reports a partition ({pairs}) from nodes restarted since: a stale warning"
    return RabbitDecision(
        DecisionKind.RESTART, f"{why}; restart {victim}'s app", (victim,), tuple(kept), states
    )


@dataclass(frozen=True, slots=True)
class PastStep:
    """One step of the journal, as ``hold_if_stuck`` reads it."""

    kind: str  # "start" or "restart"
    node: str
    state: str  # issued, done, failed
    error: str
    created_at: float


def hold_if_stuck(
    decision: RabbitDecision,
    nodes: Sequence[NodeObservation],
    steps: Sequence[PastStep],
    now: float,
    settings: RabbitSettings | None = None,
) -> RabbitDecision:
    """``decision``, or a HOLD when haven's own steps keep failing on one node (read from the journal).

    - A node haven already started ``settings.start_attempts`` times in the last ``start_window_s``
      (each time it stopped again: a port taken, a damaged Mnesia folder) is not started again: a START
      of it and of other nodes starts the others only (its ``alert`` set: the loop raises it as a hold's
      alert), a START of it alone holds. A RESTART of a node restarted ``restart_attempts`` times holds.
    - A node whose app is stopped (it runs, its CLI does not answer) and whose latest step is a failed
      restart (``start_app`` failed every try) holds, rather than waiting for ``unreadable_hold_s``.
    The alert names the node, its last error and the operator's command.
    """
    settings = settings or RabbitSettings()
    recent = [s for s in steps if now - s.created_at <= settings.start_window_s]
    caps = {DecisionKind.START: settings.start_attempts, DecisionKind.RESTART: settings.restart_attempts}
    stuck: list[tuple[str, int, str]] = []  # (node, times, last error)
    for name in decision.nodes if decision.kind in caps else ():
        made = [s for s in recent if s.kind == decision.kind.value and s.node == name]
        if len(made) >= caps[decision.kind]:
            stuck.append((name, len(made), made[-1].error))
    rest = tuple(n for n in decision.nodes if n not in {name for name, _, _ in stuck})
    if stuck and (decision.kind is DecisionKind.RESTART or not rest):
        name, count, error = stuck[0]
        return _stuck(decision, name, count, error, settings.start_window_s)
    mute = {n.name for n in nodes if n.running and n.status is None}
    for name in sorted(mute):
        own = [s for s in recent if s.node == name]
        if own and own[-1].kind == DecisionKind.RESTART.value and own[-1].state == "failed":
            return _hold(
                f"{name}'s app is stopped: its restart failed (last error: {own[-1].error})",
                decision.states,
                f"For {name}: `rabbitmqctl -n {name} start_app`, then "
                f"`rabbitmqctl -n {name} cluster_status`.",
            )
    if stuck:  # a START: the stuck nodes are held, the others started (a stuck node never blocks them)
        holds = [
            _stuck(decision, name, count, error, settings.start_window_s) for name, count, error in stuck
        ]
        why = "; ".join(h.reason for h in holds)
        names = ", ".join(name for name, _, _ in stuck)
        alert = holds[0].alert if len(holds) == 1 else "\n".join(h.alert for h in holds)
        alert = alert.replace(
            "Nothing was started or restarted.",
            f"{names} is not started again; {', '.join(rest)} is started.",
        )
        return RabbitDecision(
            DecisionKind.START, f"{decision.reason}; {why}: start {', '.join(rest)} only", rest,
            states=decision.states, alert=alert,
        )  # fmt: skip
    return decision


PAUSING = frozenset({"pause_minority", "pause_if_all_down"})  # modes in which RabbitMQ pauses a side


def partition_handling_of(conf: str) -> str:
    """The ``cluster_partition_handling`` a rabbitmq.conf (new style, ``key = value``) sets; ``ignore``,
    RabbitMQ's default, when it sets none."""
    return _new_style_mode(conf) or "ignore"


def _new_style_mode(conf: str) -> str | None:
    for line in conf.splitlines():
        key, sep, value = line.split("#", 1)[0].partition("=")
        if sep and key.strip() == "cluster_partition_handling":
            return value.strip()
    return None


_ERLANG_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|%[^\n]*|[\[\]{}]|[^"\'%\[\]{}]+')
_ERLANG_MODE = re.compile(
    r"\{\s*cluster_partition_handling\s*,\s*(?:([a-z_]+)|\{\s*(pause_if_all_down)\s*,)", re.DOTALL
)


def partition_handling_of_erlang(text: str) -> str | None:
    """The ``cluster_partition_handling`` an Erlang-term config (advanced.config, or a classic
    rabbitmq.config: ``[{rabbit, [{cluster_partition_handling, pause_minority}]}].``) sets; None when it
    sets none. ``{pause_if_all_down, Nodes, Then}`` reads as ``pause_if_all_down``.

    A ValueError when the text is not one well-formed term list (unbalanced brackets or quotes, no final
    ``.``), or when the key is set to something not read here: a mode cannot be assumed then."""
    code: list[str] = []
    depth: list[str] = []
    pos = 0
    for match in _ERLANG_TOKEN.finditer(text):
        if match.start() != pos:
            raise ValueError(f"an unclosed quote at character {pos}")
        pos = match.end()
        token = match.group()
        if token.startswith("%"):  # a comment
            continue
        if token in "[{":
            depth.append("]" if token == "[" else "}")
        elif token in "]}" and (not depth or depth.pop() != token):
            raise ValueError(f"an unbalanced {token!r} at character {match.start()}")
        quoted = token.startswith(("'", '"')) and "cluster_partition_handling" not in token
        code.append(" " if quoted else token)  # a quoted key stays, and is refused below
    if pos != len(text):
        raise ValueError(f"an unclosed quote at character {pos}")
    body = "".join(code).strip()
    if depth:
        raise ValueError("an unclosed bracket")
    if not body:
        return None
    if not body.endswith("."):
        raise ValueError("the term does not end with '.'")
    if "cluster_partition_handling" not in body:
        return None
    modes = {atom or tuple_mode for atom, tuple_mode in _ERLANG_MODE.findall(body)}
    if len(modes) != 1 or body.count("cluster_partition_handling") != len(_ERLANG_MODE.findall(body)):
        raise ValueError("cluster_partition_handling is set in a form haven does not read")
    return str(modes.pop())


def partition_handling_of_files(conf: str, erlang: Sequence[tuple[str, str]] = ()) -> str:
    """The mode a node runs with: its rabbitmq.conf ``conf`` (new style), overridden by its Erlang-term
    files (``erlang``: (file name, text), advanced.config last: it is applied last). ValueError (naming
    the file) when one cannot be read as a term."""
    mode = _new_style_mode(conf)
    for name, text in erlang:
        try:
            mode = partition_handling_of_erlang(text) or mode
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from exc
    return mode or "ignore"


def _split_brain_command(mode: str, kept: Sequence[str], others: Sequence[str]) -> str:
    return (
        f"RabbitMQ's documented recovery from a split brain (the partitions guide, \"Recovering From a "
        f"Split-Brain\") is an operator's choice: choose the partition you trust (the largest here: "
        f"{', '.join(kept)}); changes made on the others are lost. On each node of the others "
        f"({', '.join(others)}), one at a time: `rabbitmqctl -n NODE stop_app`, then "
        f"`rabbitmqctl -n NODE start_app`; then restart the trusted partition's nodes the same way to "
        f"clear their warning. haven makes no such choice under {mode}, a mode chosen for consistency "
        f"over availability."
    )


def _stuck(decision: RabbitDecision, name: str, count: int, error: str, window_s: float) -> RabbitDecision:
    """The hold of a node haven started (or restarted) ``count`` times in ``window_s``."""
    if decision.kind is DecisionKind.START:
        return _hold(
            f"{name} was started {count} times in the last {window_s:g} s and is stopped again "
            f"(last error: {error or 'the start returned, then its server stopped again'})",
            decision.states,
            f"For {name}: read its log, fix the cause (a port taken, a damaged Mnesia folder), then "
            f"start it (`rabbitmq-server` with its environment, or its unit) and check it with "
            f"`rabbitmqctl -n {name} cluster_status`.",
        )
    return _hold(
        f"{name}'s app was restarted {count} times in the last {window_s:g} s and it is to be restarted "
        f"again (last error: {error or 'each restart returned, and a partition was reported again'})",
        decision.states,
        f"For {name}: restarting it has not ended the partition; check the network between {name} and "
        f"{', '.join(decision.kept) or 'the other nodes'} (its log, `rabbitmq-diagnostics -n {name} "
        f"cluster_status`), mend it, then `rabbitmqctl -n {name} stop_app` and "
        f"`rabbitmqctl -n {name} start_app`.",
    )


def partition_claims(nodes: Sequence[NodeObservation]) -> set[tuple[str, str]]:
    """Every (reporter, other) of the cluster's nodes that some node's report names as partitioned."""
    names = {n.name for n in nodes}
    claims: set[tuple[str, str]] = set()
    for node in nodes:
        if node.status is None:
            continue
        for reporter, others in node.status.partitions.items():
            claims.update((reporter, o) for o in others if reporter in names and o in names and reporter != o)
    return claims


def partition_edges(claims: set[tuple[str, str]], nodes: Sequence[NodeObservation]) -> set[tuple[str, str]]:
    """The pairs still partitioned (each sorted): both name the other, or one names the other and they
    do not both see each other running. A claim of one side only, between nodes that see each other,
    is a stale warning: the other restarted since."""
    views = {n.name: set(n.status.running_nodes) for n in nodes if n.status is not None}

    def sees(a: str, b: str) -> bool:
        return b in views.get(a, set())

    return {
        (min(a, b), max(a, b)) for a, b in claims
        if (b, a) in claims or not (sees(a, b) and sees(b, a))
    }  # fmt: skip


def keep_side(names: Sequence[str], edges: set[tuple[str, str]]) -> tuple[str, ...]:
    """The side kept: the largest set of nodes with no partition between any two of them.

    A tie goes to the side holding the lexicographically first node (then the first sorted side). A
    cluster has a handful of nodes: every subset is tried, largest first.
    """
    ordered = sorted(names)
    for size in range(len(ordered), 0, -1):
        sides = [
            side for side in itertools.combinations(ordered, size)
            if not any((a, b) in edges for a, b in itertools.combinations(side, 2))
        ]  # fmt: skip
        if sides:
            return min(sides)  # sorted tuples: the one holding the first node, then the next...
    return ()


def describe(node: NodeObservation) -> str:
    """One node's exact state, as an alert and the CLI show it."""
    if node.running is None:
        return f"unreadable ({node.error or 'its host or service manager did not answer'})"
    if not node.running:
        return "stopped (its Erlang VM does not run)"
    if node.status is None:
        return f"running, CLI not answering ({node.error or 'no answer'})"
    s = node.status
    own = s.partitions.get(node.name, ())
    text = f"running, sees {', '.join(sorted(s.running_nodes)) or 'nothing'}"
    text += f"; partitioned from {', '.join(sorted(own))}" if own else "; no partition of its own"
    if s.alarms:
        text += f"; alarms {', '.join(s.alarms)}"
    return text


def _names(nodes: Sequence[NodeObservation]) -> str:
    return ", ".join(n.name for n in nodes)


NOTHING_MADE = "Nothing was started or restarted."  # a hold's alert, unless the loop made something


def hold_decision(reason: str, states: tuple[tuple[str, str], ...], command: str = "") -> RabbitDecision:
    """A HOLD with its alert (why, each node's state, ``command`` and the operator's commands)."""
    return _hold(reason, states, command)


def _hold(reason: str, states: tuple[tuple[str, str], ...], command: str = "") -> RabbitDecision:
    lines = [f"RabbitMQ recovery held: {reason}. {NOTHING_MADE}", "Each node:"]
    lines += [f"  {name}: {state}" for name, state in states]
    lines += [command] if command else []
    lines += [
        "An operator, once every node can be read: `rabbitmqctl -n NODE cluster_status` on each node; "
        "start a stopped node (`rabbitmq-server`, or its unit); for a partition, keep the side with "
        "the most nodes and on each node of the other sides run `rabbitmqctl -n NODE stop_app` then "
        "`rabbitmqctl -n NODE start_app`, one node at a time; then restart the kept side's nodes the "
        "same way to clear their partition warning.",
    ]
    return RabbitDecision(DecisionKind.HOLD, reason, states=states, alert="\n".join(lines))
