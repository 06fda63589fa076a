"""Runs one fault schedule in virtual time and judges it after every event and every engine tick.

Called by haven.drill.explore. The world is a simulated cloud (build_cloud), one store (a copy of a
migrated SQLite template, so opening costs a file copy) and one or two engines over it: with two,
each has a ``Term`` (a controllable leadership) whose epoch a ``leader_change`` bumps; a stale
former leader may keep believing it leads for a while. ``engine_crash`` drops the Engine object and
builds a new one on the same store (after ``down_s``); ``commit_crash`` makes the executor's
``on_commit`` hook raise ``CommitCrash`` (a BaseException, as a dying process) at the n-th commit.
An exception escaping a tick is a violation; the engine is then rebuilt so the schedule goes on.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from haven.cloud.sim import CloudSpec, SimFencer, build_cloud
from haven.domain.clock import VirtualClock
from haven.domain.cloud import Server, ServerGroup
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import NotificationType
from haven.drill.explore_check import (
    ENGINE_CRASH,
    ENGINE_STALLED,
    LIVENESS_BOUND_S,
    Ledger,
    SafetyJudge,
    Violation,
    has_room,
    held_segments,
    liveness,
)
from haven.drill.explore_schedule import FaultEvent, Schedule, host_name
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.sim_agents import deliver_reports
from haven.store import Store

WARM_UP_S = 5.0
# After the last event, run at least this long before stopping early: SETTLE_S when every host an event
# named is plainly healthy or powered off, else long enough for Nova to count a silent nova-compute down
# (service_down_time 60 s) and the engine to act on it.
SETTLE_S = 20.0
SETTLE_UNCLEAN_S = 80.0
MAX_STEPS = 100_000  # loop iterations per schedule before the engine counts as stalled


class CommitCrash(BaseException):
    """The engine process dies inside a commit (nothing in haven may catch it)."""


class Term:
    """A controllable leadership: what an elector answers, without etcd."""

    def __init__(self, epoch: int | None) -> None:
        self.current = epoch

    def is_leader(self) -> bool:
        return self.current is not None

    def epoch(self) -> int | None:
        return self.current


@dataclass(slots=True)
class Slot:
    """One engine process: its leadership, the Engine object while it runs, when it restarts."""

    term: Term | None
    engine: Engine | None = None
    restart_at: float | None = None
    crash_after: int = 0  # commits until the armed commit crash (0: none armed)
    seen_epoch: int | None = -1  # the term's epoch at its last tick (-1: never ticked)

    def due(self) -> bool:
        """Whether to tick it: it runs, and leads, believes it leads, or its term changed since.

        A follower's tick only looks whether it leads now, so one tick after each change is
        all a follower needs here (a real one polls every 0.2 s, which would cost most of a run).
        """
        if self.engine is None:
            return False
        return self.term is None or self.term.current is not None or self.term.current != self.seen_epoch


@dataclass(slots=True)
class RunResult:
    violations: list[Violation] = field(default_factory=list)
    events: int = 0
    skipped: list[str] = field(default_factory=list)  # event kinds the simulator lacks (yet)
    simulated_s: float = 0.0
    ticks: int = 0

    def invariants(self) -> set[str]:
        return {v.invariant for v in self.violations}


_template: list[str] = []


def _store_copy() -> str:
    """A fresh SQLite file at the schema's head: a copy of a template migrated once per process."""
    if not _template:
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        folder = tempfile.mkdtemp(prefix="haven-explore-", dir=shm)
        atexit.register(shutil.rmtree, folder, True)
        path = os.path.join(folder, "template.db")
        Store.open(f"sqlite:///{path}").close()
        _template.append(path)
    copy = os.path.join(os.path.dirname(_template[0]), f"{uuid.uuid4().hex}.db")
    shutil.copyfile(_template[0], copy)
    return copy


def _accepts(method: Callable[..., Any], name: str) -> bool:
    return name in inspect.signature(method).parameters


class World:
    def __init__(self, schedule: Schedule, stop_early: bool = True) -> None:
        self.schedule = schedule
        self.stop_early = stop_early
        self.clock = VirtualClock()
        spec = CloudSpec(
            hosts=schedule.hosts, vms=schedule.vms, zones=schedule.zones, ha_fraction=schedule.ha_fraction,
            seed=schedule.seed, second_network=schedule.second_network,
        )  # fmt: skip
        self.cloud, _ = build_cloud(spec, self.clock)
        self.origin = self.clock.now() + WARM_UP_S
        self.ledger = Ledger()
        self.judge = SafetyJudge(self.cloud, self.origin, self.ledger)
        self.result = RunResult()
        self._path = _store_copy()
        self.store = Store.open(f"sqlite:///{self._path}")
        self.slots = [Slot(Term(1) if schedule.engines == 2 else None)]
        if schedule.engines == 2:
            self.slots.append(Slot(Term(None)))
        self._epoch = 1
        self._later: list[tuple[float, Callable[[], None]]] = []  # the runner's own timed actions
        self._outage_from: float | None = None
        self._ha: list[Server] = []
        self._held_checked_at = float("-inf")
        self._groups: dict[ServerId, ServerGroup] = {}
        self._touched: set[HostName] = set()  # hosts any event named so far

    # ---- engines -------------------------------------------------------------------------

    def _build(self, slot: Slot) -> None:
        def hook(_: str) -> None:
            if slot.crash_after > 0:
                slot.crash_after -= 1
                if slot.crash_after == 0:
                    raise CommitCrash("the engine died inside a commit")

        cloud = self.cloud
        slot.engine = Engine(
            cloud, cloud, SimFencer(cloud), self.store, self.clock, on_commit=hook, leadership=slot.term
        )
        slot.restart_at, slot.seen_epoch = None, -1
        if slot.term is None:
            self._guard(slot, slot.engine.start)

    def _guard(self, slot: Slot, call: Callable[[], object]) -> object:
        try:
            return call()
        except CommitCrash:
            slot.engine, slot.restart_at = None, self.clock.now()
        except Exception as exc:  # the invariant: nothing escapes an engine
            where = getattr(call, "__name__", "tick")
            self._violate(ENGINE_CRASH, f"{type(exc).__name__} escaped Engine.{where}: {exc}")
            slot.engine, slot.restart_at = None, self.clock.now()
        return None

    def _acting(self) -> Slot:
        """The engine that leads now (or the only one)."""
        for slot in self.slots:
            if slot.term is None or slot.term.current == self._epoch:
                return slot
        return self.slots[0]

    # ---- the loop ------------------------------------------------------------------------

    async def run(self) -> RunResult:
        haven_log = logging.getLogger("haven")
        level = haven_log.level
        haven_log.setLevel(logging.CRITICAL)  # the faults make the engine warn thousands of times
        try:
            segments_per_zone(self.store, await self.cloud.list_hosts())
            for g in await self.cloud.list_server_groups():
                self._groups.update({m: g for m in g.members})
            servers = await self.cloud.list_servers()
            self._ha = sorted((s for s in servers if s.ha_enabled), key=lambda s: s.name)
            for slot in self.slots:
                self._build(slot)
            await self._loop(self.origin, [])
            events = list(self.schedule.events)
            last = self.origin + (events[-1].at if events else 0.0)
            await self._loop(last + LIVENESS_BOUND_S + 120.0, events, settle_from=last)
            self._final()
        finally:
            haven_log.setLevel(level)
            self.store.close()
            os.unlink(self._path)
        self.result.simulated_s = round(self.clock.now() - self.origin, 3)
        return self.result

    async def _loop(self, until: float, events: list[FaultEvent], settle_from: float | None = None) -> None:
        clock, cloud = self.clock, self.cloud
        steps = 0
        while clock.now() < until:
            steps += 1
            if steps > MAX_STEPS:
                self._violate(ENGINE_STALLED, f"{MAX_STEPS} loop turns without reaching the end")
                return
            wakes = [until, *(t for t, _ in self._later)]
            if events:
                wakes.append(self.origin + events[0].at)
            nxt = cloud.next_event_time()
            if nxt is not None:
                wakes.append(nxt)
            for slot in self.slots:
                if slot.due():
                    assert slot.engine is not None
                    wakes.append(slot.engine.next_wake())
                elif slot.engine is None and slot.restart_at is not None:
                    wakes.append(slot.restart_at)
            clock.advance_to(min(wakes))
            now = clock.now()
            while events and self.origin + events[0].at <= now:
                self._apply(events.pop(0))
                self._check()
            for when, action in [x for x in self._later if x[0] <= now]:
                self._later.remove((when, action))
                action()
            for slot in self.slots:
                if slot.engine is None and slot.restart_at is not None and slot.restart_at <= now:
                    self._build(slot)
            acting = self._acting().engine
            if acting is not None:
                deliver_reports(cloud, acting)
            for slot in self.slots:
                if slot.due():
                    self.result.ticks += 1
                    await self._tick(slot)
            cloud.settle()
            self._check()
            if settle_from is not None and self._settled(now, settle_from):
                return

    def _settled(self, now: float, last_event: float) -> bool:
        """Whether to stop early: long enough after the last event, and nothing left to happen."""
        if not self.stop_early or now < last_event + SETTLE_S or not self._quiet():
            return False
        return now >= last_event + SETTLE_UNCLEAN_S or all(self._clean(h) for h in self._touched)

    def _clean(self, host: HostName) -> bool:
        """Powered off, or healthy in every respect (nothing about it left for the engine to notice)."""
        h = self.cloud.sim_host(host)
        if not h.powered:
            return True
        return (
            h.booting_until is None and not h.hung and not h.observer_cut and h.agent_running
            and h.nova_compute_running and h.mgmt_up and (h.second_up or not h.has_second_network)
            and not getattr(h, "network_failed", False)
        )  # fmt: skip

    async def _tick(self, slot: Slot) -> None:
        assert slot.engine is not None
        slot.seen_epoch = slot.term.current if slot.term is not None else None
        try:
            await slot.engine.tick()
        except CommitCrash:
            slot.engine, slot.restart_at = None, self.clock.now()
        except Exception as exc:  # the invariant: nothing escapes an engine's tick
            self._violate(ENGINE_CRASH, f"{type(exc).__name__} escaped Engine.tick: {exc}")
            slot.engine, slot.restart_at = None, self.clock.now()

    def _check(self) -> None:
        self.judge.note_silence(self._touched)
        self.result.violations += self.judge.check()

    def _violate(self, invariant: str, detail: str) -> None:
        self.result.violations.append(Violation(invariant, self.clock.now() - self.origin, detail))

    def _quiet(self) -> bool:
        """Nothing left to do or wait for: no open recovery, every lost HA VM running again or excused."""
        if self._later or self._outage_from is not None:
            return False
        for slot in self.slots:
            if slot.engine is None or slot.engine.open_notifications():
                return False
        ledger, cloud = self.ledger, self.cloud
        waiting = [
            sid
            for sid, (host, died_at) in ledger.lost.items()
            if cloud.sim_server(sid).metadata
            and not cloud.hosts_running(sid)
            and host not in ledger.bmc_trouble
            and sid not in ledger.rebuild_failed
            and ledger.room_at_loss.get(sid, True)
            and ledger.revived.get(host, died_at - 1) < died_at
        ]
        if not waiting:
            return True
        now = self.clock.now()
        if now - self._held_checked_at < 10.0:
            return False
        self._held_checked_at = now  # a held segment's VMs are excused: ask the store now and then
        segment_of = {h.name: h.segment_id for h in self.store.list_hosts()}
        held, everything = held_segments(self.store.list_alerts(active_only=False), segment_of)
        return everything or all(segment_of.get(ledger.lost[sid][0]) in held for sid in waiting)

    def _final(self) -> None:
        if self._outage_from is not None:
            self.ledger.outage_s += self.clock.now() - self._outage_from
        segment_of = {h.name: h.segment_id for h in self.store.list_hosts()}
        alerts = self.store.list_alerts(active_only=False)
        self.result.violations += liveness(
            self.cloud, self.ledger, self.origin, alerts, segment_of, self._groups
        )

    # ---- faults --------------------------------------------------------------------------

    def _apply(self, e: FaultEvent) -> None:
        self.result.events += 1
        handler = getattr(self, f"_do_{e.kind}")
        hosts = [host_name(h) for h in e.hosts]
        self._touched.update(hosts)
        if handler(e, hosts) is False:
            self.result.skipped.append(e.kind)

    def _sim(self, name: str, *args: Any, **kwargs: Any) -> bool:
        """Call a simulator fault; False when the simulator lacks it or the keywords (yet)."""
        method = getattr(self.cloud, name, None)
        if method is None or any(not _accepts(method, k) for k in kwargs):
            return False  # TODO(sim): every fault kind once the simulator has it
        method(*args, **kwargs)
        return True

    def _lose(self, host: HostName) -> None:
        """Note the VMs running on ``host`` as it dies, and whether their zone had room for them."""
        now = self.clock.now()
        h = self.cloud.sim_host(host)
        for sid in sorted(h.running):
            self.ledger.lost[sid] = (host, now)
            self.ledger.room_at_loss[sid] = has_room(self.cloud, sid, h.zone, self._groups, exclude=(host,))

    def _do_power_loss(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        for host in hosts:
            if self.cloud.is_powered(host):
                self._lose(host)
                self.cloud.fail_power(host)
        return True

    def _do_hang(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        for host in hosts:
            if self.cloud.is_powered(host) and not self.cloud.sim_host(host).hung:
                self._lose(host)
                self.cloud.hang(host)
        return True

    def _do_power_on(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        for host in hosts:
            if not self.cloud.is_powered(host):
                try:
                    self.cloud.bmc_request_power(host, on=True)
                except Exception:
                    continue  # the operator's BMC did not answer either
                self.ledger.revived[host] = self.clock.now()
        return True

    def _do_mgmt_cut(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        for host in hosts:
            self.cloud.partition_management(host, cut=bool(e.arg("cut", True)))
        return True

    def _do_second_cut(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        for host in hosts:
            h = self.cloud.sim_host(host)
            h.second_up = not e.arg("cut", True)  # the flag its second channel reads (no call for it)
            self.cloud.crash_agent(host, crashed=not h.agent_running)  # unchanged: refreshes its channels
        return True

    def _do_nic_fail(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        return all([self._sim("fail_networks", host, failed=bool(e.arg("failed", True))) for host in hosts])

    def _do_observer_cut(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        cut, reachable = bool(e.arg("cut", True)), bool(e.arg("bmc_reachable", False))
        if reachable:
            if not self._sim("cut_observer", hosts, cut=cut, bmc_reachable=True):
                return False
        else:
            self.cloud.cut_observer(hosts, cut=cut)
            if cut:
                self.ledger.bmc_trouble.update(hosts)
        return True

    def _do_bmc(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        kwargs = {
            "reachable": bool(e.arg("reachable", True)),
            "apply_delay_s": e.arg("apply_delay_s"),
            "stale_for_s": float(e.arg("stale_for_s", 0.0)),
        }
        ok = all([self._sim("set_bmc", host, **kwargs) for host in hosts])
        trouble = not kwargs["reachable"] or kwargs["apply_delay_s"] is not None or kwargs["stale_for_s"] > 0
        if ok and trouble:
            self.ledger.bmc_trouble.update(hosts)
            for host in hosts:
                delay = float(kwargs["apply_delay_s"] or 0.0)
                self.ledger.bmc_delay_s[host] = max(self.ledger.bmc_delay_s.get(host, 0.0), delay)
        return ok

    def _do_nova_error(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        return self._sim(
            "fail_nova_calls", str(e.arg("call", "*")), count=int(e.arg("count", 1)),
            effect_applied=bool(e.arg("applied", False)), delay_s=float(e.arg("delay_s", 1.0)),
        )  # fmt: skip

    def _do_rebuild_fail(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        if not self._ha:
            return True
        sid = self._ha[int(e.arg("vm", 0)) % len(self._ha)].id
        if self._sim("fail_rebuild", sid):
            self.ledger.rebuild_failed.add(sid)
            return True
        return False

    def _do_outage(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        down = bool(e.arg("down", True))
        if not self._sim("control_plane_outage", down=down):
            return False
        now = self.clock.now()
        if down and self._outage_from is None:
            self._outage_from = now
        elif not down and self._outage_from is not None:
            self.ledger.outage_s += now - self._outage_from
            self._outage_from = None
        return True

    def _do_clock_skew(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        if not hasattr(self.cloud, "nova_clock_skew_s"):
            return False  # TODO(sim): Nova's clock skew
        self.cloud.nova_clock_skew_s = float(e.arg("skew_s", 0.0))
        return True

    def _do_agent_crash(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        for host in hosts:
            self.cloud.crash_agent(host, crashed=bool(e.arg("crashed", True)))
        return True

    def _do_compute_crash(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        for host in hosts:
            self.cloud.crash_nova_compute(host, crashed=bool(e.arg("crashed", True)))
        return True

    def _do_engine_crash(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        slot = self._acting()
        slot.engine = None
        slot.restart_at = self.clock.now() + float(e.arg("down_s", 0.0))
        return True

    def _do_commit_crash(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        self._acting().crash_after = max(1, int(e.arg("after", 1)))
        return True

    def _do_leader_change(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        if len(self.slots) < 2:
            return False
        old = self._acting()
        new = self.slots[1] if old is self.slots[0] else self.slots[0]
        assert old.term is not None and new.term is not None
        self._epoch += 1
        new.term.current = self._epoch
        stale_s = float(e.arg("stale_s", 0.0))
        if stale_s <= 0:
            old.term.current = None
        else:  # the old leader still believes it leads (a paused process, woken), for a while
            term, stale_epoch = old.term, old.term.current

            def wake() -> None:
                if term.current == stale_epoch:  # not if it has been elected again meanwhile
                    term.current = None

            self._later.append((self.clock.now() + stale_s, wake))
        return True

    def _do_report(self, e: FaultEvent, hosts: list[HostName]) -> bool:
        engine = self._acting().engine or next((s.engine for s in self.slots if s.engine), None)
        if engine is None:
            return True  # no engine runs to receive it: the monitor's call fails
        payload = {"event": "STOPPED", "host_status": "NORMAL", "cluster_status": "OFFLINE"}
        for host in hosts:
            try:
                engine.submit(NotificationType.COMPUTE_HOST, host, payload)
            except Exception as exc:
                self._violate(ENGINE_CRASH, f"{type(exc).__name__} escaped Engine.submit: {exc}")
        return True
