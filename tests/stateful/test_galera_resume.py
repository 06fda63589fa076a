"""A step a stopped (or deposed) haven left ``issued`` is never carried out blindly (review G1-G4).

The nodes are stand-ins whose world (running or not, grastate.dat, wsrep status, every effect asked of
them) is the ground truth each test judges; the journal is the store's (migration 0012). The rules:
- a start or bootstrap whose node does not run was not made: it is finished ``failed`` and the next
  decision is made afresh from every node's state now (never the recorded bootstrap at its recorded
  position, which may be any age: an operator may have brought the cluster up meanwhile);
- a bootstrap is ``done`` only if its node is now Primary (a running node left non-primary: failed);
- a deposed loop (an older leader epoch) finishes nothing, makes nothing and writes nothing;
- a ``--wsrep-recover``'s result (position or failure) is kept only while grastate.dat is unchanged.
"""

from __future__ import annotations

import asyncio
import time

from haven.domain.clock import RealClock
from haven.domain.errors import PermanentError
from haven.domain.galera import GaleraAction
from haven.domain.incidents import AlertKind
from haven.stateful.galera import DecisionKind, GraState, LiveStatus, Position
from haven.stateful.galera_recovery import GaleraRecovery
from haven.store import Store

UUID = "6b4e2a38-0000-0000-0000-000000000001"
PRIMARY_500 = LiveStatus(True, "Primary", 2, "Synced", UUID, 500)


class _Node:
    """A stand-in node: its state is the world; ``effects`` records every start/bootstrap asked."""

    def __init__(
        self, name: str, running: bool = False, live: LiveStatus | None = None, seqno: int = 5
    ) -> None:
        self.name, self.is_running, self.status, self.seqno = name, running, live, seqno
        self.mtime_ns = 1
        self.effects: list[tuple[str, str]] = []
        self.recover_reads = 0
        self.recover_fails = False
        self.recovered_seqno, self.recovered_uuid = (5 if seqno == -1 else seqno), UUID

    async def running(self) -> bool:
        return self.is_running

    async def grastate(self) -> GraState:
        return GraState(UUID, self.seqno, False, mtime_ns=self.mtime_ns)

    async def live(self) -> LiveStatus:
        if self.status is None:
            raise PermanentError(f"{self.name}: SQL does not answer")
        return self.status

    async def recover_position(self) -> Position:
        self.recover_reads += 1
        if self.recover_fails:
            raise PermanentError(f"{self.name}: --wsrep-recover found no position")
        return Position(self.recovered_uuid, self.recovered_seqno)

    async def start(self, position: Position | None) -> None:
        self.effects.append(("start", str(position or "")))
        self.is_running = True

    async def bootstrap(self, position: Position) -> None:
        self.effects.append(("bootstrap", str(position)))
        self.is_running = True
        self.status = LiveStatus(True, "Primary", 1, "Synced", UUID, position.seqno)


def _left_issued(store: Store, kind: str = "bootstrap", node: str = "g1", epoch: int | None = None) -> None:
    """What a haven that died after committing an intent (at seqno 5), before its effect, left behind."""
    store.issue_galera_action(GaleraAction("old", "c1", kind, node, "t", f"{UUID}:5", 1.0), epoch=epoch)


def _run(nodes: list[_Node], store: Store, epoch: int | None = None) -> DecisionKind:
    recovery = GaleraRecovery.on_store(nodes, store, "c1", RealClock(), epoch=epoch)  # type: ignore[arg-type]
    return asyncio.run(recovery.run_pass()).kind


def _steps(store: Store) -> list[tuple[str, str, str, str]]:
    return [(s.id, s.kind, s.node, s.state) for s in store.galera_actions_since("c1")]


def test_a_stale_bootstrap_is_not_made_beside_a_primary_an_operator_brought_up() -> None:
    """haven died after "bootstrap g1 at seqno 5"; meanwhile g2, g3 were brought up (Primary at 500)."""
    store = Store.open("sqlite://")
    _left_issued(store)
    nodes = [_Node("g1"), _Node("g2", True, PRIMARY_500), _Node("g3", True, PRIMARY_500)]
    assert _run(nodes, store) is DecisionKind.START
    # g1 rejoins the primary component; it never forms a second cluster from seqno 5.
    assert nodes[0].effects == [("start", f"{UUID}:5")]
    assert nodes[1].effects == nodes[2].effects == []
    old = store.galera_actions_since("c1")[0]
    assert (old.id, old.state) == ("old", "failed") and "decided afresh" in old.error


def test_a_stale_bootstrap_gives_way_to_the_node_that_is_ahead_now() -> None:
    """No primary now, but g2's position moved past the recorded one: the fresh decision bootstraps g2."""
    store = Store.open("sqlite://")
    _left_issued(store)
    nodes = [_Node("g1", seqno=5), _Node("g2", seqno=500), _Node("g3", seqno=400)]
    assert _run(nodes, store) is DecisionKind.BOOTSTRAP
    assert [n.effects for n in nodes] == [[], [("bootstrap", f"{UUID}:500")], []]


def test_a_stale_step_is_not_made_while_a_node_cannot_be_read() -> None:
    class Unreadable(_Node):
        async def grastate(self) -> GraState:
            raise PermanentError("grastate.dat does not exist")

    store = Store.open("sqlite://")
    _left_issued(store)
    nodes = [_Node("g1"), Unreadable("g2", seqno=500), _Node("g3")]
    assert _run(nodes, store) is DecisionKind.HOLD
    assert all(n.effects == [] for n in nodes)
    assert [a.kind for a in store.list_alerts()] == [AlertKind.GALERA_HOLD]


def test_a_stale_start_is_decided_afresh_too() -> None:
    """A start left issued, while no primary exists any more: starting g1 alone would not rejoin anything."""
    store = Store.open("sqlite://")
    _left_issued(store, kind="start")
    nodes = [_Node("g1", seqno=5), _Node("g2", seqno=9), _Node("g3", seqno=7)]
    assert _run(nodes, store) is DecisionKind.BOOTSTRAP
    assert [n.effects for n in nodes] == [[], [("bootstrap", f"{UUID}:9")], []]


def test_a_bootstrap_already_made_is_never_made_again() -> None:
    store = Store.open("sqlite://")
    _left_issued(store)
    made = LiveStatus(True, "Primary", 1, "Synced", UUID, 5)
    nodes = [_Node("g1", True, made), _Node("g2"), _Node("g3")]
    assert _run(nodes, store) is DecisionKind.START
    assert nodes[0].effects == []  # it runs, Primary: the bootstrap was made, it is done
    assert [(n.name, n.effects) for n in nodes[1:]] == [
        ("g2", [("start", f"{UUID}:5")]),
        ("g3", [("start", f"{UUID}:5")]),
    ]
    assert _steps(store)[0] == ("old", "bootstrap", "g1", "done")


def test_a_bootstrap_whose_node_runs_but_is_still_not_primary_is_not_done() -> None:
    """An in-place bootstrap (pc.bootstrap) that did not take: the node runs, non-primary."""
    store = Store.open("sqlite://")
    _left_issued(store)
    non_primary = LiveStatus(False, "non-Primary", 1, "Initialized", UUID, 5)
    nodes = [_Node("g1", True, non_primary), _Node("g2", seqno=3), _Node("g3", seqno=3)]
    assert _run(nodes, store) is DecisionKind.BOOTSTRAP  # decided afresh: g1 in place, again
    steps = store.galera_actions_since("c1")
    assert (steps[0].id, steps[0].state) == ("old", "failed") and "not Primary" in steps[0].error
    assert nodes[0].effects == [("bootstrap", f"{UUID}:5")]


def test_a_bootstrap_whose_node_runs_but_does_not_answer_yet_waits() -> None:
    """A --wsrep-new-cluster start still coming up: the step is neither done nor failed yet."""
    store = Store.open("sqlite://")
    _left_issued(store)
    nodes = [_Node("g1", True, None), _Node("g2"), _Node("g3")]
    assert _run(nodes, store) is DecisionKind.WAIT
    assert _steps(store) == [("old", "bootstrap", "g1", "issued")]
    assert all(n.effects == [] for n in nodes)
    nodes[0].status = LiveStatus(True, "Primary", 1, "Synced", UUID, 5)
    assert _run(nodes, store) is DecisionKind.START
    assert _steps(store)[0] == ("old", "bootstrap", "g1", "done")


def test_a_deposed_loop_resumes_nothing_and_writes_nothing() -> None:
    """Leader 7 has a bootstrap in flight; a loop of epoch 6 (deposed) wakes up and passes."""
    store = Store.open("sqlite://")
    store.fence(7)
    _left_issued(store, epoch=7)
    nodes = [_Node("g1"), _Node("g2"), _Node("g3")]
    _run(nodes, store, epoch=6)
    assert all(n.effects == [] for n in nodes)
    assert _steps(store) == [("old", "bootstrap", "g1", "issued")]  # leader 7's step untouched
    assert store.list_alerts(active_only=False) == []
    # Leader 7 itself finishes its step (not made) and decides afresh.
    assert _run(nodes, store, epoch=7) is DecisionKind.BOOTSTRAP
    assert [n.effects for n in nodes] == [[("bootstrap", f"{UUID}:5")], [], []]


def test_a_failed_recover_is_read_again_once_grastate_changes() -> None:
    """--wsrep-recover failed on g2 (a hold); an operator fixes it (grastate.dat rewritten): read again."""
    store = Store.open("sqlite://")
    nodes = [_Node("g1", seqno=-1), _Node("g2", seqno=-1), _Node("g3", seqno=-1)]
    nodes[1].recover_fails = True
    recovery = GaleraRecovery.on_store(nodes, store, "c1", RealClock())  # type: ignore[arg-type]
    assert asyncio.run(recovery.run_pass()).kind is DecisionKind.HOLD
    assert asyncio.run(recovery.run_pass()).kind is DecisionKind.HOLD
    assert nodes[1].recover_reads == 1  # while nothing changed, the failure stands (no re-read per pass)
    nodes[1].recover_fails, nodes[1].mtime_ns = False, 2  # the operator's fix
    assert asyncio.run(recovery.run_pass()).kind is DecisionKind.BOOTSTRAP
    assert nodes[1].recover_reads == 2
    assert [n.effects for n in nodes] == [[("bootstrap", f"{UUID}:5")], [], []]


def test_a_recovered_position_is_read_again_once_grastate_changes() -> None:
    """g1 was read at seqno 5; it then ran (elsewhere) and stopped again at 900: the old read is stale.

    The first reads hold (g3's data is another cluster's); an operator then restores g3's data."""
    store = Store.open("sqlite://")
    nodes = [_Node("g1", seqno=-1), _Node("g2", seqno=-1), _Node("g3", seqno=-1)]
    nodes[2].recovered_uuid = "99999999-0000-0000-0000-000000000009"
    recovery = GaleraRecovery.on_store(nodes, store, "c1", RealClock())  # type: ignore[arg-type]
    assert asyncio.run(recovery.run_pass()).kind is DecisionKind.HOLD
    assert asyncio.run(recovery.run_pass()).kind is DecisionKind.HOLD
    assert [n.recover_reads for n in nodes] == [1, 1, 1]  # unchanged files: the reads stand
    nodes[0].recovered_seqno, nodes[0].mtime_ns = 900, 2  # g1's data moved on
    nodes[2].recovered_uuid, nodes[2].mtime_ns = UUID, 2  # g3's data restored
    assert asyncio.run(recovery.run_pass()).kind is DecisionKind.BOOTSTRAP
    assert [n.recover_reads for n in nodes] == [2, 1, 2]
    assert [n.effects for n in nodes] == [[("bootstrap", f"{UUID}:900")], [], []]


# ---- a node that keeps stopping is started 3 times, then held (issue 12, correctness) -------------------


class _Dies(_Node):
    """A node whose server exits right after each start (a full disk, a damaged data folder)."""

    async def start(self, position: Position | None) -> None:
        self.effects.append(("start", str(position or "")))

    async def bootstrap(self, position: Position) -> None:
        self.effects.append(("bootstrap", str(position)))
        raise PermanentError(f"{self.name}: mariadbd exited during start (No space left on device)")


def test_a_lost_node_that_keeps_stopping_is_started_three_times_then_held() -> None:
    store = Store.open("sqlite://")
    nodes = [_Node("g1", True, PRIMARY_500), _Node("g2", True, PRIMARY_500), _Dies("g3", seqno=400)]
    recovery = GaleraRecovery.on_store(nodes, store, "c1", RealClock())  # type: ignore[arg-type]
    kinds = [asyncio.run(recovery.run_pass()).kind for _ in range(7)]
    assert kinds == [DecisionKind.START] * 3 + [DecisionKind.HOLD] * 4
    assert [kind for kind, _ in nodes[2].effects] == ["start"] * 3
    held = [a for a in store.list_alerts() if a.kind is AlertKind.GALERA_HOLD]
    assert len(held) == 1 and "g3 was started 3 times in the last 600 s" in held[0].message
    assert "start mariadb on it" in held[0].message and "g1: running: Primary" in held[0].message
    nodes[2].is_running, nodes[2].status = True, PRIMARY_500  # the operator fixed it and started it
    assert asyncio.run(recovery.run_pass()).kind is DecisionKind.NOTHING
    assert [a for a in store.list_alerts() if a.kind is AlertKind.GALERA_HOLD] == []


def test_a_bootstrap_that_keeps_failing_is_tried_three_times_then_held() -> None:
    store = Store.open("sqlite://")
    nodes = [_Dies("g1", seqno=9), _Node("g2", seqno=7), _Node("g3", seqno=5)]
    recovery = GaleraRecovery.on_store(nodes, store, "c1", RealClock())  # type: ignore[arg-type]
    kinds = [asyncio.run(recovery.run_pass()).kind for _ in range(5)]
    assert kinds == [DecisionKind.BOOTSTRAP] * 3 + [DecisionKind.HOLD] * 2
    assert nodes[0].effects == [("bootstrap", f"{UUID}:9")] * 3
    assert nodes[1].effects == nodes[2].effects == []  # never a bootstrap from a lower seqno instead
    held = [a for a in store.list_alerts() if a.kind is AlertKind.GALERA_HOLD]
    assert len(held) == 1 and "g1 was bootstrapped 3 times" in held[0].message
    assert "No space left on device" in held[0].message and "`galera_new_cluster` on it" in held[0].message


def test_a_stuck_node_does_not_block_starting_its_healthy_peer() -> None:
    """START (g2, g3) with g3 started 3 times already: g2 is started, g3 is not, the alert names g3."""
    store = Store.open("sqlite://")
    nodes = [_Node("g1", True, PRIMARY_500), _Node("g2", seqno=400), _Dies("g3", seqno=400)]
    now = time.time()
    for i in range(3):  # g3 started three times in the window, each time it stopped again
        store.issue_galera_action(GaleraAction(f"s{i}", "c1", "start", "g3", "t", "", now - 10 * (i + 1)))
        store.finish_galera_action(f"s{i}", "done", now)
    recovery = GaleraRecovery.on_store(nodes, store, "c1", RealClock())  # type: ignore[arg-type]
    decision = asyncio.run(recovery.run_pass())
    assert decision.kind is DecisionKind.START and decision.nodes == ("g2",)
    assert nodes[1].effects and nodes[1].is_running and nodes[2].effects == []
    held = [a for a in store.list_alerts() if a.kind is AlertKind.GALERA_HOLD]
    assert len(held) == 1 and "g3 was started 3 times" in held[0].message
    assert "g3 is not started again; g2 is started." in held[0].message
    assert "Nothing was started" not in held[0].message


def test_a_stuck_best_node_still_holds_the_bootstrap_rather_than_a_lower_one() -> None:
    store = Store.open("sqlite://")
    nodes = [_Node("g1", seqno=9), _Node("g2", seqno=7)]
    now = time.time()
    for i in range(3):
        store.issue_galera_action(GaleraAction(f"b{i}", "c1", "bootstrap", "g1", "t", "", now - 10 * (i + 1)))
        store.finish_galera_action(f"b{i}", "failed", now, "mariadbd exited")
    assert _run(nodes, store) is DecisionKind.HOLD  # type: ignore[arg-type]
    assert nodes[0].effects == nodes[1].effects == []
