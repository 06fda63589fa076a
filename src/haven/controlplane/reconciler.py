"""The control-plane reconciler: observe, plan (pure), act through persisted idempotent actions.

Owned by the service layer (a leader-only runnable under its TaskGroup) or driven pass by pass by tests.
Each pass:
1. finishes any action a previous pass or engine left ``issued`` (its handler re-reads the world first,
   so an effect that already happened is not made twice);
2. reads every replica's unit (systemd) and the load balancer's members (HAProxy), starts the probes
   that are due and reads those that finished within ``PROBE_WAIT_S`` of its clock (a slower one at a
   later pass); each probe is followed by a read of its unit's CPU time, when the host's driver is a
   CpuMeter (how the planner tells a busy replica from a hung one); notes restarts systemd made by itself
   (NRestarts went up) as history; what changed (a probe failing or passing again, a unit stopped, a
   new process) is kept as the explainer's evidence (haven.evidence.controlplane);
3. asks haven.controlplane.planner for the plan, commits each action's intent (``issued``, with what proves
   its effect: the unit's InvocationID before a restart) before the effect, and its outcome after;
4. records every replica's state (for ``haven controlplane status`` and the metrics), raises one alert
   per root event (haven.controlplane.alerts: a lost controller, a service down with its dependents'
   holds folded in, a crash loop, Keystone refusing haven's probe account...) and clears those that
   ended; then, if the recorded states differ from the previous pass's (their observation times
   aside), tells ``on_replicas`` (the dashboard).
One action's failure, expected or not, fails that action only: the next pass plans again from the world.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from haven.controlplane.alerts import probe_account, probe_credentials, root_alerts, unread_services
from haven.controlplane.config import ControlPlaneConfig
from haven.controlplane.planner import PROBE_HUNG, RESPREAD, plan
from haven.controlplane.ports import Balancer, CpuMeter, Killer, Prober, Units
from haven.domain.clock import Clock
from haven.domain.controlplane import (
    ActionDetail,
    ActionKind,
    ActionRecord,
    ActionState,
    ControlPlanePlan,
    DomainName,
    MemberAdmin,
    MemberStatus,
    PlannedAction,
    ProbeResult,
    ProbeSpec,
    ReplicaState,
    ReplicaView,
    ServiceName,
    ServiceSpec,
    UnitActive,
    UnitStatus,
)
from haven.domain.errors import Conflict, HavenError, NotFound
from haven.domain.ids import HostName
from haven.domain.incidents import Alert, AlertKind
from haven.domain.waiting import in_thread_to_the_end, within
from haven.evidence.controlplane import ControlPlaneEvidence, Probed
from haven.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")
Key = tuple[ServiceName, HostName]
_LB_KINDS = (ActionKind.DRAIN, ActionKind.MAINT, ActionKind.READY, ActionKind.START, ActionKind.STOP)
_ADMIN = {
    ActionKind.DRAIN: MemberAdmin.DRAIN,
    ActionKind.MAINT: MemberAdmin.MAINT,
    ActionKind.READY: MemberAdmin.READY,
}
_RUNNING = (UnitActive.ACTIVE, UnitActive.RELOADING, UnitActive.ACTIVATING)
# How long a pass waits for the probes it started; one still under way is read by a later pass.
PROBE_WAIT_S = 0.5
NOT_RESUMED = "unfinished stop not resumed: its unit still ran; planned again from the world"
_HOLD_ALERTS = (
    AlertKind.REPLICA_CRASH_LOOP,
    AlertKind.SERVICE_HOLD,
    AlertKind.SERVICE_DOWN,
    AlertKind.CONTROLLER_DOWN,
)
ActionHook = Callable[[ActionRecord, ActionState], None]
ReplicasHook = Callable[[Sequence[ReplicaState]], None]


@dataclass(frozen=True, slots=True)
class Observed:
    units: Mapping[Key, UnitStatus | None]
    members: Mapping[tuple[str, str], MemberStatus] | None  # None: the load balancer could not be read


class Reconciler:
    def __init__(
        self,
        config: ControlPlaneConfig,
        units: Mapping[HostName, Units],
        balancer: Balancer | None,
        prober: Prober,
        store: Store,
        clock: Clock,
        leader_epoch: Callable[[], int | None] | None = None,
        on_action: ActionHook | None = None,
        on_replicas: ReplicasHook | None = None,
        evidence: ControlPlaneEvidence | None = None,
    ) -> None:
        """``units``: each controller's systemd; ``leader_epoch`` None: one engine alone, unfenced;
        ``on_action``: told each action's outcome (the metrics), never allowed to raise into a pass;
        ``on_replicas``: told the recorded states after a pass that changed them (likewise);
        ``evidence``: words what each pass saw change as the explainer's evidence (kept in the store)."""
        self._config, self._units, self._balancer, self._prober = config, units, balancer, prober
        self._store, self._clock, self._leader_epoch = store, clock, leader_epoch
        self._specs = {s.name: s for s in config.services}
        self._domains = {c.host: c.domain for c in config.controllers}
        self._address = {c.host: c.address or c.host for c in config.controllers}
        self._replicas = [(spec, host) for spec in config.services for host in self._hosts_of(spec)]
        self._probes: dict[Key, collections.deque[ProbeResult]] = {}
        self._inflight: dict[Key, tuple[str, asyncio.Task[ProbeResult]]] = {}  # (invocation, probe)
        self._n_restarts: dict[Key, int] = {}
        self._invocations: dict[Key, str] = {}
        # invocation, when haven first saw it (None: running when haven first read the unit, "found")
        self._first_seen: dict[Key, tuple[str, float | None]] = {}
        self._out_by_other: dict[Key, str] = {}  # member out, not by haven: the unit's invocation then
        self._restarted_by_haven: set[Key] = set()  # since the last observation of NRestarts
        self._unread_since: dict[ServiceName, float] = {}  # a replica of it unread since
        self._window = max((s.restart.crash_loop_window_s for s in config.services), default=600.0)
        self._on_action = on_action
        self._on_replicas = on_replicas
        self._recorded: tuple[ReplicaState, ...] | None = None  # the last pass's, observed_at zeroed
        self._evidence = evidence or ControlPlaneEvidence()
        self.last_plan: ControlPlanePlan | None = None

    def _hosts_of(self, spec: ServiceSpec) -> list[HostName]:
        hosts = spec.hosts or tuple(c.host for c in self._config.controllers)
        return [h for h in hosts if not spec.domains or self._domains.get(h) in spec.domains]

    # ---- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Pass after pass until cancelled (by the TaskGroup that owns it)."""
        interval = self._config.settings.pass_interval_s
        try:
            while True:
                started = self._clock.now()
                try:
                    result = await self.run_pass()
                    due = min(started + interval, result.recheck_at or started + interval)
                except HavenError as exc:  # the store unreachable: try again next pass
                    log.warning("control-plane pass failed: %s", exc)
                    due = started + interval
                except Exception:  # a bug: this pass is lost, never the loop
                    log.exception("control-plane pass failed")
                    due = started + interval
                await self._clock.sleep_until(max(due, self._clock.now() + 0.05))
        finally:
            await self.aclose()

    async def run_pass(self) -> ControlPlanePlan:
        epoch = self._epoch()
        acting = self._leader_epoch is None or epoch is not None
        now = self._clock.now()
        if acting:
            for record in await self._db(self._store.unfinished_actions):
                if record.kind is ActionKind.STOP:
                    await self._resume_stop(record, epoch)
                    continue
                await self._finish(record, epoch)
        observed = await self._observe()
        probed = await self._probe_due(observed)
        now = self._clock.now()  # after the probes: the plan judges results it has just read
        await self._keep_evidence(observed, probed, now)
        if acting:
            await self._note_systemd_restarts(observed, now, epoch)
        views, moves = await self._views(observed, now)
        stale = self._stale(views)
        found = frozenset(key for key, (_, seen_at) in self._first_seen.items() if seen_at is None)
        result = plan(
            list(self._specs.values()), views, self._domains, now, self._config.settings, moves, stale, found
        )
        self.last_plan = result
        if acting:
            for action in result.actions:
                await self._act(action, observed, epoch)
            states = _states(views, result, now)
            await self._db(self._store.record_replicas, states, epoch=epoch)
            await self._alerts(result, now, epoch)
            self._announce(states)
        return result

    async def _resume_stop(self, record: ActionRecord, epoch: int | None) -> None:
        """A stop left unfinished (an engine stopped mid-action) is not made blindly: the world may
        have changed since (the moved replica no longer serving). Already stopped: it happened (done,
        and its move is over). Still running: it fails, and this pass's plan stops the replica again
        only if the moved one still serves."""
        spec = self._specs.get(record.service)
        units = self._units.get(record.host)
        try:
            status = None if spec is None or units is None else await units.status(spec.unit)
        except Exception as exc:  # unreadable: it fails as not resumed; the plan decides again
            log.info("unfinished stop of %s on %s: unit unreadable: %s", record.service, record.host, exc)
            status = None
        state, error = ActionState.FAILED, NOT_RESUMED
        if status is not None and status.active not in _RUNNING:
            state, error = ActionState.DONE, ""
        await self._db(self._store.finish_action, record.id, state, self._clock.now(), error, epoch=epoch)

    def _announce(self, states: list[ReplicaState]) -> None:
        """Tell ``on_replicas`` when the recorded states changed (not at every pass)."""
        seen = tuple(dataclasses.replace(s, observed_at=0.0) for s in states)
        if seen == self._recorded:
            return
        self._recorded = seen
        if self._on_replicas is None:
            return
        try:
            self._on_replicas(states)
        except Exception:  # a listener's bug never fails a pass
            log.exception("replica hook failed")

    def _epoch(self) -> int | None:
        return None if self._leader_epoch is None else self._leader_epoch()

    async def _db(self, call: Callable[..., T], *args: object, **kw: object) -> T:
        # A cancelled pass lets its store call end: the owner closes the store once run() returns.
        return await in_thread_to_the_end(call, *args, **kw)

    # ---- observe ---------------------------------------------------------------------------------

    async def _observe(self) -> Observed:
        keys = [(spec.name, host) for spec, host in self._replicas]
        statuses = await asyncio.gather(*(self._status(spec.unit, host) for spec, host in self._replicas))
        members: Mapping[tuple[str, str], MemberStatus] | None = {}
        if self._balancer is not None:
            try:
                members = await self._balancer.members()
            except HavenError as exc:
                log.warning("load balancer unreadable, its services wait: %s", exc)
                members = None
            except Exception:  # a driver's bug: as unreadable
                log.exception("load balancer unreadable, its services wait")
                members = None
        now = self._clock.now()
        units = {key: self._seen(key, status, now) for key, status in zip(keys, statuses, strict=True)}
        return Observed(units, members)

    def _seen(self, key: Key, status: UnitStatus | None, now: float) -> UnitStatus | None:
        """The unit, its start moved to when haven first saw this process if that is later.

        The start-up grace runs from the unit's start as its host's clock says; a host clock behind
        haven's would shorten it (and a slow start be killed). A process that started while haven
        watched started no earlier than haven first saw it; one found at haven's start keeps systemd's time.
        """
        if status is None:
            return status
        known = self._first_seen.get(key)
        if not status.invocation_id or status.active not in (UnitActive.ACTIVE, UnitActive.RELOADING):
            # No process running (yet, or any more: killed, systemd's RestartSec under way, whose
            # InvocationID may still be the old one's): the one that runs next is seen starting, not
            # found running (rule 2).
            if known is None or known[1] is None:
                self._first_seen[key] = ("", now)
            return status
        if known is None or known[0] != status.invocation_id:
            known = (status.invocation_id, None if known is None else now)
            self._first_seen[key] = known
        seen_at = known[1]
        if seen_at is None or status.active_since is None or status.active_since >= seen_at:
            return status
        return dataclasses.replace(status, active_since=seen_at)

    async def _status(self, unit: str, host: HostName) -> UnitStatus | None:
        units = self._units.get(host)
        if units is None:
            return None
        try:
            return await units.status(unit)
        except NotFound:
            return UnitStatus(UnitActive.INACTIVE, "dead", loaded=False)
        except HavenError as exc:
            log.info("systemd on %s unreadable: %s", host, exc)
            return None
        except Exception:  # a driver's bug: this replica is unknown this pass, the others go on
            log.exception("systemd on %s unreadable", host)
            return None

    async def _keep_evidence(self, observed: Observed, probed: list[Probed], now: float) -> None:
        """What changed this pass, as the explainer's evidence; never fails the pass."""
        try:
            events = self._evidence.observe(observed.units, probed, now)
            if events:
                await self._db(self._store.keep_evidence, events, now)
        except HavenError as exc:
            log.warning("control-plane evidence not kept: %s", exc)
        except Exception:  # a bug in the wording: the evidence is lost, never the pass
            log.exception("control-plane evidence not kept")

    async def _probe_due(self, observed: Observed) -> list[Probed]:
        """Starts the probes that are due (one at a time per replica), waits for them ``PROBE_WAIT_S``
        at most, and returns those that finished (started by this pass or an earlier one). A pass does
        not wait for its slowest probe (a hung replica's runs to its timeout, a nova_rpc ping's 3 s): a
        replica killed now is seen, and its member taken out, at the next pass, not once the probes of
        the others have timed out (systemd restarts it after RestartSec, 1 s on the HA lab; its port
        then accepts connections that wait for its worker to load)."""
        now = self._clock.now()
        for spec, host in self._replicas:
            key = (spec.name, host)
            status = observed.units.get(key)
            if spec.probe is None or status is None or status.active not in _RUNNING:
                continue
            log_ = self._probes.setdefault(key, collections.deque(maxlen=_kept(spec.probe)))
            if self._invocations.get(key, status.invocation_id) != status.invocation_id:
                # A new process: the old one's results say nothing about it (whatever the clocks of
                # haven and that host say about when it started).
                log_.clear()
            self._invocations[key] = status.invocation_id
            if key in self._inflight or (log_ and now - log_[-1].at < spec.probe.period_s):
                continue
            address = self._address.get(host, host)
            task = asyncio.create_task(self._probe(address, spec.probe, spec.unit, host))
            self._inflight[key] = (status.invocation_id, task)
        if self._inflight:
            await self._wait_for_probes([task for _, task in self._inflight.values()])
        now = self._clock.now()
        probed = []
        for key, (invocation, task) in list(self._inflight.items()):
            if not task.done():
                continue
            del self._inflight[key]
            try:
                result = task.result()
            except Exception:  # a prober's bug (probes never raise): this result is lost, not the pass
                log.exception("probe of %s on %s failed", *key)
                continue
            if invocation != self._invocations.get(key):
                continue  # a probe of a process that has been replaced since
            self._probes[key].append(result)
            kind = self._specs[key[0]].probe
            probed.append(Probed(key[0], key[1], kind.kind.value if kind else "", now, result))
        return probed

    async def _wait_for_probes(self, tasks: Sequence[asyncio.Task[ProbeResult]]) -> None:
        """Until every probe under way has finished or ``PROBE_WAIT_S`` has passed on the injected clock
        (a VirtualClock jumps there at once: a simulated pass never waits in real time, and a probe that
        never answers costs it ``PROBE_WAIT_S`` of virtual time). The probes get one turn of the loop
        first: those that answer at once (the simulated ones) are read without moving the clock."""
        await asyncio.sleep(0)
        pending: set[asyncio.Future[Any]] = {task for task in tasks if not task.done()}
        if not pending:
            return
        deadline = asyncio.ensure_future(self._clock.sleep_until(self._clock.now() + PROBE_WAIT_S))
        try:
            while pending and not deadline.done():
                _, pending = await asyncio.wait({*pending, deadline}, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(deadline)
        finally:
            deadline.cancel()

    async def aclose(self) -> None:
        """Cancels the probes still under way (the owner calls it when it stops passes)."""
        tasks = [task for _, task in self._inflight.values()]
        self._inflight.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _probe(self, address: str, probe: ProbeSpec, unit: str, host: HostName) -> ProbeResult:
        """One probe, then the unit's CPU time just after it (when its systemd tells it): the planner
        compares it across failed probes to tell a busy replica from a hung one. The read is bounded
        by the probe's timeout and its failure only leaves the figure unknown."""
        result = await self._prober.probe(address, probe, host)
        meter = self._units.get(host)
        if not isinstance(meter, CpuMeter):
            return result
        try:
            cpu = await within(meter.cpu_s(unit), probe.timeout_s)
        except (HavenError, TimeoutError) as exc:
            log.debug("CPU time of %s on %s unread: %s", unit, host, exc)
            return result
        except Exception:  # a driver's bug: the figure is unknown, the probe counts
            log.exception("CPU time of %s on %s unread", unit, host)
            return result
        return result if cpu is None else dataclasses.replace(result, cpu_s=cpu)

    def _stale(self, views: Sequence[ReplicaView]) -> frozenset[Key]:
        """Rule 7: members someone other than haven took out whose unit was restarted since haven
        first saw them out (a new invocation); an operator's maintenance of a running process stays."""
        stale = set()
        for v in views:
            key = (v.service, v.host)
            if v.member is None or v.member.admin is MemberAdmin.READY or v.held_out:
                self._out_by_other.pop(key, None)
                continue
            if v.unit is None:
                continue  # unread: judged again when it is read
            invocation = v.unit.invocation_id if v.unit.active in _RUNNING else ""
            first = self._out_by_other.setdefault(key, invocation)
            if invocation and invocation != first:
                stale.add(key)
        return frozenset(stale)

    async def _note_systemd_restarts(self, observed: Observed, now: float, epoch: int | None) -> None:
        """systemd's own restarts (Restart=) count towards the back-off and the crash-loop limit."""
        for key, status in observed.units.items():
            if status is None or not status.loaded:
                continue
            before = self._n_restarts.get(key)
            self._n_restarts[key] = status.n_restarts
            by_haven = key in self._restarted_by_haven
            self._restarted_by_haven.discard(key)
            if before is None or status.n_restarts <= before:
                continue  # first sight, or NRestarts reset by a start by hand
            if by_haven and status.n_restarts == before + 1:
                # systemd's own restart (Restart=) of the process haven had just killed: one restart,
                # already counted as haven's.
                continue
            record = ActionRecord(
                str(uuid.uuid4()), ActionKind.SEEN_RESTART, key[0], key[1], ActionState.DONE,
                f"systemd restarted the unit by itself (NRestarts {before} -> {status.n_restarts})",
                ActionDetail(n_restarts=status.n_restarts), now, finished_at=now,
            )  # fmt: skip
            await self._db(self._store.issue_action, record, epoch=epoch)

    async def _views(
        self, observed: Observed, now: float
    ) -> tuple[list[ReplicaView], frozenset[tuple[ServiceName, HostName]]]:
        """The planner's views, and the replicas haven started to re-spread (within the window)."""
        history = await self._db(self._store.actions_since, now - self._window)
        moves = open_moves(history)
        latest_lb = {(a.service, a.host): a for a in await self._db(self._store.latest_actions, _LB_KINDS)}
        restarts: dict[Key, list[float]] = collections.defaultdict(list)
        busy: set[Key] = set()
        for a in history:
            if a.kind in (ActionKind.RESTART, ActionKind.SEEN_RESTART):
                restarts[(a.service, a.host)].append(a.created_at)
        for a in await self._db(self._store.unfinished_actions):
            busy.add((a.service, a.host))
        views = []
        for spec, host in self._replicas:
            key = (spec.name, host)
            member: MemberStatus | None = None
            lb_unknown = spec.backend is not None and observed.members is None
            if spec.backend is not None and observed.members is not None:
                member = observed.members.get((spec.backend.name, host))
            lb = latest_lb.get(key)
            views.append(
                ReplicaView(
                    service=spec.name,
                    host=host,
                    domain=self._domains.get(host, DomainName(host)),
                    unit=observed.units.get(key),
                    probes=tuple(self._probes.get(key, ())),
                    member=member,
                    restarts=tuple(restarts[key]),
                    held_out=lb is not None and lb.kind is not ActionKind.READY,
                    drained_at=lb.created_at if lb is not None and lb.kind is ActionKind.DRAIN else None,
                    busy=key in busy or lb_unknown,
                )
            )
        return views, moves

    # ---- act ---------------------------------------------------------------------------------------

    async def _act(self, action: PlannedAction, observed: Observed, epoch: int | None) -> None:
        spec = self._specs[action.service]
        status = observed.units.get((action.service, action.host))
        detail = ActionDetail(
            invocation_id=status.invocation_id if status is not None else "",
            backend=spec.backend.name if spec.backend is not None else "",
        )
        record = ActionRecord(
            str(uuid.uuid4()), action.kind, action.service, action.host, ActionState.ISSUED, action.reason,
            detail, self._clock.now(),
        )  # fmt: skip
        try:
            await self._db(self._store.issue_action, record, epoch=epoch)
        except Conflict:
            return  # another pass or engine has an unfinished action on this replica
        await self._finish(record, epoch)

    async def _finish(self, record: ActionRecord, epoch: int | None) -> None:
        """Make (or confirm) the effect of an issued action, then commit its outcome."""
        state, error = ActionState.DONE, ""
        try:
            await self._effect(record)
        except HavenError as exc:
            state, error = ActionState.FAILED, str(exc)
            log.warning("%s of %s on %s failed: %s", record.kind.value, record.service, record.host, exc)
        except Exception as exc:  # a bug: this action fails, never the reconciler
            state, error = ActionState.FAILED, f"unexpected error: {type(exc).__name__}: {exc}"
            log.exception("%s of %s on %s", record.kind.value, record.service, record.host)
        await self._db(self._store.finish_action, record.id, state, self._clock.now(), error, epoch=epoch)
        if self._on_action is not None:
            try:
                self._on_action(record, state)
            except Exception:  # the metrics must never stop the reconciler
                log.exception("control-plane action hook failed")

    async def _effect(self, record: ActionRecord) -> None:
        spec = self._specs.get(record.service)
        if spec is None:
            raise NotFound(f"{record.service} is no longer a managed service")
        if record.kind in _ADMIN:
            if self._balancer is None or not record.detail.backend:
                raise NotFound(f"{record.service} has no load balancer to act on")
            await self._balancer.set_member(record.detail.backend, record.host, _ADMIN[record.kind])
            return
        units = self._units.get(record.host)
        if units is None:
            raise NotFound(f"no systemd is known for {record.host}")
        now = await units.status(spec.unit)  # re-read: the effect may already have happened
        if record.kind is ActionKind.RESTART:
            moved = record.detail.invocation_id and now.invocation_id != record.detail.invocation_id
            if not moved and now.active not in (UnitActive.ACTIVATING, UnitActive.DEACTIVATING):
                self._restarted_by_haven.add((record.service, record.host))
                if killable(spec, record.reason) and isinstance(units, Killer):
                    # A replica that answers no probe (hung, deadlocked) would hold its stop for its own
                    # graceful timeout (gunicorn's, systemd's TimeoutStopSec: 90 s by default) and
                    # serves nobody: out of the load balancer already, it is killed, not asked. If
                    # systemd restarts it by itself (Restart=) before haven's restart, that one restart
                    # is not counted twice (_note_systemd_restarts).
                    try:
                        await units.kill(spec.unit)
                    except HavenError as exc:
                        log.warning("kill of %s on %s failed, restarting: %s", spec.unit, record.host, exc)
                await units.restart(spec.unit)
        elif record.kind is ActionKind.START and now.active not in _RUNNING:
            await units.start(spec.unit)
        elif record.kind is ActionKind.STOP and now.active in _RUNNING:
            await units.stop(spec.unit)

    def _unread_grace(self, result: ControlPlanePlan, now: float) -> set[ServiceName]:
        grace = max(2 * self._config.settings.pass_interval_s, 10.0)  # two passes, 10 s at least
        return unread_grace(self._unread_since, unread_services(result), now, grace)

    async def _alerts(self, result: ControlPlanePlan, now: float, epoch: int | None) -> None:
        wanted = {
            (a.kind, a.subject): a.reason
            for a in root_alerts(result, self._specs, self._unread_grace(result, now))
        }
        latest = {key: results[-1] for key, results in self._probes.items() if results}
        refused, accepted = probe_credentials(self._specs, latest)
        wanted.update({(a.kind, a.subject): a.reason for a in refused})
        accounts = {probe_account(s) for s in self._specs.values() if s.probe is not None}
        active = await self._db(self._store.list_alerts)
        for alert in active:
            if alert.host is None or (alert.kind, alert.host) in wanted:
                continue
            if alert.kind in _HOLD_ALERTS or (
                alert.kind is AlertKind.PROBE_CREDENTIALS
                and (alert.host in accepted or alert.host not in accounts)
            ):
                await self._db(
                    self._store.clear_alerts, now=now, kind=alert.kind, host=alert.host, epoch=epoch
                )
        raised = {(a.kind, a.host) for a in active}
        for (kind, subject), reason in wanted.items():
            if (kind, subject) not in raised:
                log.warning("%s", reason)
                alert = Alert(str(uuid.uuid4()), kind, reason, now, host=HostName(subject))
                await self._db(self._store.raise_alert, alert, epoch=epoch)


def _kept(probe: ProbeSpec) -> int:
    """How many probe results a replica keeps: its failure threshold and a few, and enough to see
    when a busy replica's failures began for ``busy_grace_s`` (one result per period at most)."""
    return probe.failure_threshold + 5 + int(probe.busy_grace_s / probe.period_s) + 1


def unread_grace(
    since: dict[ServiceName, float], unread: set[ServiceName], now: float, grace_s: float
) -> set[ServiceName]:
    """Updates ``since`` (when each service was first unread, in a row) and returns those unread for
    less than ``grace_s``: their no_host hold waits for the controller's own alert that long."""
    for service in list(since):
        if service not in unread:
            del since[service]
    for service in unread:
        since.setdefault(service, now)
    return {s for s, t in since.items() if now - t < grace_s}


def killable(spec: ServiceSpec, reason: str) -> bool:
    """A restart made with SIGKILL first: only a stateless replica whose probes failed by timeout
    (hung). A stateful one (MariaDB would lose its clean shutdown and seqno; a RabbitMQ node paused by
    pause_minority closes its port) and one that answers with errors get systemd's graceful stop."""
    return not spec.stateful and reason.startswith(PROBE_HUNG)


def open_moves(history: Sequence[ActionRecord]) -> frozenset[Key]:
    """Rule 6's moves not yet ended: replicas haven started to re-spread (a DONE START whose reason
    begins ``re-spread``), less one per re-spread STOP of the same service made after it (each move
    ends in one stop at most; the oldest open move is the one a stop ends). A stop that failed ends
    its move too (the unit may have stopped all the same: never a second one; a surplus replica still
    running goes back into the load balancer), except an unfinished one not resumed (``NOT_RESUMED``:
    the unit was still running, the plan decides again). ``history``: any order."""
    opened: dict[ServiceName, list[ActionRecord]] = collections.defaultdict(list)
    for a in sorted(history, key=lambda a: a.created_at):
        if not a.reason.startswith(RESPREAD):
            continue
        made = a.state is ActionState.DONE or (a.state is ActionState.FAILED and a.error != NOT_RESUMED)
        if a.kind is ActionKind.START and a.state is ActionState.DONE:
            opened[a.service].append(a)
        elif a.kind is ActionKind.STOP and made and opened[a.service]:
            opened[a.service].pop(0)
    return frozenset((a.service, a.host) for starts in opened.values() for a in starts)


def _states(views: list[ReplicaView], result: ControlPlanePlan, now: float) -> list[ReplicaState]:
    health = {(service, host): h for service, host, h in result.health}
    out = []
    for v in views:
        probe = v.probes[-1].detail if v.probes else ""
        out.append(
            ReplicaState(
                service=v.service,
                host=v.host,
                domain=v.domain,
                health=health[(v.service, v.host)],
                unit=v.unit.active.value if v.unit is not None else "",
                member=v.member.admin.value if v.member is not None else "",
                probe=probe,
                observed_at=now,
            )
        )
    return out
