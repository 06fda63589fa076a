"""The Galera journal in haven's store (migration 0012): one unfinished step per cluster, and a
restarted loop finishing a step its predecessor left ``issued`` without repeating a made effect.

The node here is a stand-in recording what was asked of it; the real-server version of the restart is
tests/stateful/test_galera_real.py's (judged from the servers' logs). What a resumed step may and may
not do (never made blindly, fenced by the epoch) is tests/stateful/test_galera_resume.py's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from haven.domain.clock import RealClock
from haven.domain.errors import Conflict
from haven.domain.galera import GaleraAction
from haven.domain.incidents import AlertKind
from haven.stateful.galera import GraState, LiveStatus, Position
from haven.stateful.galera_recovery import GaleraRecovery
from haven.store import Store

UUID = "6b4e2a38-0000-0000-0000-000000000001"


def _step(id_: str, node: str = "g1", kind: str = "bootstrap") -> GaleraAction:
    return GaleraAction(id_, "c1", kind, node, "test", f"{UUID}:5", 1.0)


def test_one_unfinished_step_per_cluster(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'h.db'}") as store:
        store.issue_galera_action(_step("a"))
        with pytest.raises(Conflict):
            store.issue_galera_action(_step("b", node="g2"))  # a second engine, or a second node
        store.issue_galera_action(GaleraAction("c", "c2", "start", "x", "", "", 1.0))  # another cluster
        store.finish_galera_action("a", "done", 2.0)
        store.issue_galera_action(_step("b", node="g2"))
        store.finish_galera_action("b", "failed", 3.0, "boom", position="p")
        steps = store.galera_actions_since("c1")
    assert [(s.id, s.state, s.error, s.finished_at) for s in steps] == [
        ("a", "done", "", 2.0),
        ("b", "failed", "boom", 3.0),
    ]
    assert steps[1].position == "p"


class _Node:
    """Stopped until started; records every effect asked of it."""

    def __init__(self, name: str, running: bool = False) -> None:
        self.name, self.is_running, self.effects = name, running, list[str]()

    async def running(self) -> bool:
        return self.is_running

    async def grastate(self) -> GraState:
        return GraState(UUID, 5, False)

    async def live(self) -> LiveStatus:
        return LiveStatus(True, "Primary", 1, "Synced", UUID, 5)

    async def recover_position(self) -> Position:
        return Position(UUID, 5)

    async def start(self, position: Position | None) -> None:
        self.effects.append("start")
        self.is_running = True

    async def bootstrap(self, position: Position) -> None:
        self.effects.append("bootstrap")
        self.is_running = True


@pytest.mark.parametrize("made", [True, False], ids=["effect-made", "effect-not-made"])
def test_a_restarted_loop_finishes_the_unfinished_bootstrap_once(made: bool) -> None:
    """Made (g1 runs, Primary): done, never made again. Not made: failed, and a fresh decision (here the
    same bootstrap, the positions being unchanged) is its own step. Either way g1 is bootstrapped once."""
    store = Store.open("sqlite://")
    store.issue_galera_action(GaleraAction("a", "c1", "bootstrap", "g1", "test", f"{UUID}:5", 1.0))
    nodes = [_Node("g1", running=made), _Node("g2"), _Node("g3")]
    recovery = GaleraRecovery.on_store(nodes, store, "c1", RealClock())  # type: ignore[arg-type]
    asyncio.run(recovery.run_pass())
    assert nodes[0].effects == ([] if made else ["bootstrap"])
    steps = [(s.id == "a", s.kind, s.node, s.state) for s in store.galera_actions_since("c1")]
    assert steps[0] == (True, "bootstrap", "g1", "done" if made else "failed")
    bootstraps = [s for s in steps[1:] if s[1] == "bootstrap"]
    assert bootstraps == ([] if made else [(False, "bootstrap", "g1", "done")])
    asyncio.run(recovery.run_pass())
    assert [n.effects for n in nodes] == [[] if made else ["bootstrap"], ["start"], ["start"]]


def test_a_hold_is_one_store_alert_cleared_when_the_loop_acts() -> None:
    store = Store.open("sqlite://")

    class Unreadable(_Node):
        async def grastate(self) -> GraState:
            from haven.domain.errors import PermanentError

            raise PermanentError("grastate.dat does not exist")

    nodes = [_Node("g1"), Unreadable("g2"), _Node("g3")]
    recovery = GaleraRecovery.on_store(nodes, store, "c1", RealClock())  # type: ignore[arg-type]
    for _ in range(3):
        assert asyncio.run(recovery.run_pass()).kind == "hold"
    held = [a for a in store.list_alerts() if a.kind is AlertKind.GALERA_HOLD]
    assert len(held) == 1 and held[0].host == "c1"
    assert "g2: stopped, grastate.dat unreadable" in held[0].message
    assert all(n.effects == [] for n in nodes)
    # haven restarted while another node is unreadable: that hold's alert replaces the first one
    nodes = [_Node("g1"), _Node("g2"), Unreadable("g3")]
    recovery = GaleraRecovery.on_store(nodes, store, "c1", RealClock())  # type: ignore[arg-type]
    for _ in range(2):
        assert asyncio.run(recovery.run_pass()).kind == "hold"
    held = [a for a in store.list_alerts() if a.kind is AlertKind.GALERA_HOLD]
    assert len(held) == 1 and "g3: stopped, grastate.dat unreadable" in held[0].message
    assert "g2: stopped, grastate.dat unreadable" not in held[0].message
    assert len([a for a in store.list_alerts(active_only=False) if a.kind is AlertKind.GALERA_HOLD]) == 2
    nodes = [_Node("g1"), _Node("g2"), _Node("g3")]
    recovery = GaleraRecovery.on_store(nodes, store, "c1", RealClock())  # type: ignore[arg-type]
    assert asyncio.run(recovery.run_pass()).kind == "bootstrap"
    assert [a for a in store.list_alerts() if a.kind is AlertKind.GALERA_HOLD] == []


def test_a_deposed_leaders_loop_makes_no_effect() -> None:
    store = Store.open("sqlite://")
    store.fence(7)  # a newer leader (epoch 7) owns the store
    nodes = [_Node("g1"), _Node("g2"), _Node("g3")]
    stale = GaleraRecovery.on_store(nodes, store, "c1", RealClock(), epoch=6)  # type: ignore[arg-type]
    asyncio.run(stale.run_pass())  # decides to bootstrap, but its intent is refused
    assert all(n.effects == [] for n in nodes)
    assert store.galera_actions_since("c1") == []
    leader = GaleraRecovery.on_store(nodes, store, "c1", RealClock(), epoch=7)  # type: ignore[arg-type]
    assert asyncio.run(leader.run_pass()).kind == "bootstrap"
    assert [n.effects for n in nodes] == [["bootstrap"], [], []]
