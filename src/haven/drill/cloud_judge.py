"""The verdict of a drill on a real cloud, from Nova's and the BMCs' own answers.

Called by haven.drill.cloud_drill once the drill is over. The counters are read from
what the cloud says, never from haven's bookkeeping:

- vms_lost: HA servers of the failed host Nova does not show recovered (ACTIVE, no task, running,
  on another host: haven.drill.nova_view) once the judge waited for it after haven's recovery was
  over; ``not_recovered`` gives Nova's view of each (vm_state, task_state, host, power_state, fault);
- verified_not_recovered: VMs haven verified that Nova, read after haven's recovery was over, did
  not show recovered: haven's verification said what Nova did not (the verdict is ``failed``);
- evacuated_unfenced: evacuations whose source BMC did not answer Off just before the call
  (the WitnessedCloud asked it), plus evacuations in Nova's migration records that no
  witnessed call explains (the BMC's state then is unknown: counted, to be safe);
- vms_running_twice: evacuations whose source came back powered on without cleaning up
  (Nova's evacuation record not ``completed``: nova-compute marks it so once it destroyed
  the evacuated guest at start-up), plus the unfenced ones;
- false_evacuations: evacuations off a host that had not failed; live_hosts_fenced: hosts
  whose BMC reported Off though they had not failed.
Phase times come from the engine's events, like the simulated drills'.

host-hang is judged as host-power-loss, plus three rules read from the BMC's own power
record and Nova (``hang_violations``): the host was powered off before the first evacuate
call and is still off at the end; haven fenced it only after confirming it dead; and it
confirmed it dead only once nova-compute had missed its report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from haven.cloud.openstack.workload import Migration
from haven.domain.cloud import Server
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import Notification, Step
from haven.domain.liveness import BmcPower
from haven.drill.nova_view import NovaLook, not_recovered, nova_view, recovered_elsewhere
from haven.drill.report import DrillReport, EventRecorder, fence_time, phases_of, recover_time, worst_time
from haven.drill.witness import WitnessedEvacuation
from haven.recovery.workflows import EVACUATE
from haven.store import Store

HOST_POWER_LOSS = "host-power-loss"
HOST_HANG = "host-hang"
HOST_FAILURES = (HOST_POWER_LOSS, HOST_HANG)  # the host is gone: its HA VMs must move
NOVA_STAMP_S = 1.0  # Nova's updated_at has whole seconds, rounded down
NOT_CLEANED_UP = frozenset({"accepted", "pre-migrating", "done"})  # the source still holds the guest


@dataclass
class Observed:
    """What the drill saw of the cloud while it ran (epoch seconds)."""

    failed: HostName
    hosts: int
    liveness: str = "Nova"
    booted: list[ServerId] = field(default_factory=list)
    fault_at: float = 0.0
    injected: str = ""
    powered_off: bool = False  # the drill cut the host's power and has not restored it yet
    held: bool = False  # the drill holds the host's nova-compute down
    hung: bool = False  # the drill keeps the host's processes frozen
    witness: str = "the BMCs through Redfish"  # what the witness read before each evacuate call
    report_interval_s: float = 10.0  # Nova's report_interval, as haven's settings say
    bmc_at_end: BmcPower | None = None  # host-hang: the BMC's own record once the recovery is over
    last_report_at: float | None = None  # host-hang: nova-compute's last report before the fence
    bmc_off_at: float | None = None
    all_active_at: float | None = None
    final: dict[ServerId, Server] = field(default_factory=dict)  # the affected servers, last seen
    # Nova's list read in the poll that saw haven's recovery over (sent before that check: never judged)
    first_look: dict[ServerId, Server] = field(default_factory=dict)
    look: NovaLook | None = None  # the judge's reads once haven's recovery was over
    live_fenced: list[str] = field(default_factory=list)
    power_on_at: float = 0.0  # when the fault was undone
    returned_at: float | None = None
    disabled_at: float | None = None
    disabled_reason: str = ""
    evacuations: list[Migration] = field(default_factory=list)
    witnessed: list[WitnessedEvacuation] = field(default_factory=list)
    deleted: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CloudDrillReport(DrillReport):
    """A DrillReport (same JSON), plus what only a real cloud has."""

    cloud: str = ""
    failed_host: str = ""
    liveness: str = ""  # the channels haven's detection read, as `haven serve` would
    bmc_off_s: float | None = None  # the fault to the failed host's BMC reporting Off
    evacuate_calls_s: float | None = None  # the fault to the last evacuate call accepted by Nova
    first_evacuate_call_s: float | None = None  # the fault to the first evacuate call passed on
    witness: str = ""  # what the BMC's answer before each evacuate call was read from
    bmc_at_end: str | None = None  # host-hang: the BMC's own record when the recovery was over
    report_age_at_confirm_s: float | None = None  # host-hang: nova-compute's last report, at confirmation
    nova_all_active_s: float | None = None  # the fault to every HA VM ACTIVE elsewhere, as Nova listed them
    disabled_s: float | None = None  # nova-compute-crash: the fault to Nova showing the service disabled
    disabled_reason: str = ""
    returned_s: float | None = None  # the fault undone to the host back in service (Nova agrees)
    evacuations: list[dict[str, Any]] = field(default_factory=list)  # Nova's records + the BMC's answer
    servers: list[dict[str, Any]] = field(default_factory=list)  # the drill's servers at the end, per Nova
    not_recovered: list[dict[str, Any]] = field(default_factory=list)  # Nova's view of each, and why
    verified_not_recovered: int = 0  # haven verified them; Nova, read after, did not show them recovered
    judge_wait_s: float | None = None  # the judge's stated timeout for Nova, after haven's recovery
    judge_waited_s: float | None = None  # how long it waited (until all recovered, or the timeout)
    first_look_recovered: int | None = None  # recovered in the list read as the recovery ended
    notification_steps: list[dict[str, Any]] = field(default_factory=list)  # kept when not recovered
    servers_booted: int = 0
    servers_deleted: int = 0


def judge(
    scenario: str,
    cloud: str,
    affected: list[ServerId],
    recorder: EventRecorder,
    store: Store,
    o: Observed,
) -> CloudDrillReport:
    events = [e for e, _ in recorder.events]
    power_loss = scenario in HOST_FAILURES
    failed_hosts = {o.failed} if power_loss else set()
    if not power_loss:
        affected = []  # a crashed nova-compute on a live host: nothing should move
    recovered = [s for s in affected if s in o.final and recovered_elsewhere(o.final[s], o.failed)]
    verified = verified_by_haven(events, affected)
    first_after = o.look.first if o.look is not None and o.look.first is not None else None
    lied = [
        s
        for s in verified
        if first_after is not None and not recovered_elsewhere_in(first_after, s, o.failed)
    ]
    witnessed: dict[ServerId, list[WitnessedEvacuation]] = {}
    for w in o.witnessed:
        witnessed.setdefault(w.server_id, []).append(w)
    unexplained = [m for m in o.evacuations if m.server_id not in witnessed]
    unfenced = sum(1 for w in o.witnessed if w.bmc_before is not BmcPower.OFF) + len(unexplained)
    not_cleaned = [m for m in o.evacuations if m.source in failed_hosts and m.status in NOT_CLEANED_UP]
    notifications = store.list_notifications()
    report = CloudDrillReport(
        scenario=scenario,
        seed=0,
        hosts=o.hosts,
        vms=len(o.booted),
        injected=o.injected,
        ha_vms_affected=len(affected),
        ha_vms_recovered=len(recovered),
        vms_lost=len(affected) - len(recovered),
        vms_running_twice=len(not_cleaned) + unfenced,
        evacuated_unfenced=unfenced,
        false_evacuations=sum(1 for m in o.evacuations if m.source not in failed_hosts),
        double_evacuations=sum(1 for n in Counter(m.server_id for m in o.evacuations).values() if n > 1),
        live_hosts_fenced=len(o.live_fenced),
        unplaced=[u for n in notifications for u in n.payload.get("recovery", {}).get("unplaced", [])],
        phases=phases_of(events, o.fault_at),
        detect_s=worst_time(events, EventKind.HOST_CONFIRMED_DEAD, failed_hosts, o.fault_at),
        fence_s=fence_time(events, failed_hosts),
        recover_s=recover_time(events, affected, o.fault_at) if affected else None,
        held_by_gate=any(e.kind is EventKind.SEGMENT_HELD for e in events),
        verdict="",
        alerts=[
            {"kind": a.kind.value, "host": a.host, "message": a.message}
            for a in store.list_alerts(active_only=False)
        ],
        notifications=[_notification(n) for n in notifications],
        cloud=cloud,
        failed_host=o.failed,
        liveness=o.liveness,
        bmc_off_s=_since(o.fault_at, o.bmc_off_at),
        evacuate_calls_s=_since(o.fault_at, max(_accepted(o.witnessed), default=None)),
        first_evacuate_call_s=_since(o.fault_at, min((w.at for w in o.witnessed), default=None)),
        witness=o.witness,
        bmc_at_end=o.bmc_at_end.value if o.bmc_at_end is not None else None,
        nova_all_active_s=_since(o.fault_at, o.all_active_at),
        disabled_s=_since(o.fault_at, o.disabled_at),
        disabled_reason=o.disabled_reason,
        returned_s=_since(o.power_on_at, o.returned_at),
        evacuations=[_evacuation(m, witnessed.get(m.server_id, [])) for m in o.evacuations],
        servers=[nova_view(s) for s in o.final.values()],
        servers_booted=len(o.booted),
        not_recovered=not_recovered(affected, o.final, o.failed, verified),
        verified_not_recovered=len(lied),
        judge_wait_s=o.look.timeout_s if o.look is not None else None,
        judge_waited_s=_judge_waited(o.look),
        first_look_recovered=(
            sum(1 for s in affected if recovered_elsewhere_in(o.first_look, s, o.failed))
            if o.first_look
            else None
        ),
    )
    if not power_loss:
        created = [e.at for e in events if e.kind is EventKind.NOTIFICATION_CREATED and e.host == o.failed]
        report.detect_s = round(min(created) - o.fault_at, 3) if created else None
    report.checks = list(o.notes)
    violations: list[str] = []
    if scenario == HOST_HANG:
        confirmed = min(
            (e.at for e in events if e.kind is EventKind.HOST_CONFIRMED_DEAD and e.host == o.failed),
            default=None,
        )
        if confirmed is not None and o.last_report_at is not None:
            report.report_age_at_confirm_s = round(confirmed - o.last_report_at, 3)
        report.checks += hang_checks(o, confirmed)
        violations = hang_violations(o, confirmed)
    if unexplained:
        report.checks.append(f"{len(unexplained)} evacuation(s) in Nova's records that haven did not ask for")
    if not_cleaned:
        report.checks.append(
            f"{len(not_cleaned)} evacuation record(s) of {o.failed} not completed after it came back: "
            "its nova-compute did not clean up the evacuated guests"
        )
    if lied:
        report.checks.append(
            f"VERIFICATION WRONG: haven verified {len(lied)} VM(s) that Nova, read after its recovery was "
            f"over, did not show recovered: {', '.join(lied)}"
        )
    if power_loss:
        report.checks += _look_checks(report, o)
    report.verdict = _verdict(report, power_loss, o, violations)
    if report.verdict != "recovered":
        report.notification_steps = [_step(s) for n in notifications for s in store.list_steps(n.id)]
    return report


def verified_by_haven(events: list[EngineEvent], affected: list[ServerId]) -> list[ServerId]:
    """The affected VMs whose evacuate step haven's own events say is done (verified)."""
    done = {
        e.detail.get("subject")
        for e in events
        if e.kind is EventKind.STEP_FINISHED
        and e.detail.get("kind") == EVACUATE
        and e.detail.get("state") == "done"
    }
    return [s for s in affected if s in done]


def recovered_elsewhere_in(servers: dict[ServerId, Server], sid: ServerId, failed: HostName) -> bool:
    return sid in servers and recovered_elsewhere(servers[sid], failed)


def _look_checks(r: CloudDrillReport, o: Observed) -> list[str]:
    """What the judge's reads of Nova after haven's recovery showed, said plainly."""
    if o.look is None:
        return []
    checks = [
        f"the judge read Nova {o.look.reads} time(s) after haven's recovery was over, for up to "
        f"{o.look.timeout_s:g} s: every HA VM recovered after {r.judge_waited_s} s"
        if o.look.all_recovered_at is not None
        else f"the judge read Nova {o.look.reads} time(s) for {r.judge_waited_s} s after haven's recovery "
        f"was over (timeout {o.look.timeout_s:g} s): {len(r.not_recovered)} HA VM(s) not recovered"
    ]
    if r.first_look_recovered is not None and r.first_look_recovered < r.ha_vms_affected:
        checks.append(
            f"the list read as haven's recovery ended (sent before it ended) showed "
            f"{r.first_look_recovered} of {r.ha_vms_affected} recovered; a look at that moment only "
            "would have judged from Nova's state before haven's last verification"
        )
    return checks


def _judge_waited(look: NovaLook | None) -> float | None:
    if look is None:
        return None
    end = look.all_recovered_at if look.all_recovered_at is not None else look.ended_at
    return round(end - look.over_at, 3) if end is not None else None


def _step(s: Step) -> dict[str, Any]:
    return {
        "notification": s.notification_id,
        "seq": s.seq,
        "kind": s.kind,
        "subject": s.subject,
        "state": s.state.value,
        "attempts": s.attempts,
        "started_at": s.started_at,
        "finished_at": s.finished_at,
        "detail": dict(s.detail),
    }


def hang_violations(o: Observed, confirmed: float | None) -> list[str]:
    """What host-hang forbids, from the BMC's own record and Nova's: each broken rule, said."""
    out = []
    first = min((w.at for w in o.witnessed), default=None)
    if first is not None and (o.bmc_off_at is None or o.bmc_off_at > first):
        out.append(f"{o.failed} evacuated before its BMC recorded it powered off")
    if o.witnessed and o.bmc_at_end is not BmcPower.OFF:
        state = o.bmc_at_end.value if o.bmc_at_end is not None else "not read"
        out.append(f"{o.failed} evacuated, yet its BMC's own record says {state} at the end")
    if o.bmc_off_at is not None and (confirmed is None or o.bmc_off_at < confirmed):
        out.append(f"{o.failed} powered off before haven confirmed it dead")
    # The last report may be up to NOVA_STAMP_S later than Nova's stamp says.
    reported = o.last_report_at + NOVA_STAMP_S if o.last_report_at is not None else None
    if confirmed is not None and reported is not None and confirmed - reported <= o.report_interval_s:
        out.append(
            f"{o.failed} confirmed dead {confirmed - reported:.1f} s after nova-compute's "
            f"last report, before it missed one (report interval {o.report_interval_s:g} s)"
        )
    return out


def hang_checks(o: Observed, confirmed: float | None) -> list[str]:
    """The host-hang facts the verdict rests on, said plainly."""
    first = min((w.at for w in o.witnessed), default=None)
    off = "never" if o.bmc_off_at is None else f"{o.bmc_off_at - o.fault_at:.2f} s after the fault"
    before = ""
    if first is not None and o.bmc_off_at is not None:
        before = f", {first - o.bmc_off_at:.2f} s before the first evacuate call"
    end = o.bmc_at_end.value if o.bmc_at_end is not None else "not read"
    checks = [f"{o.failed}'s BMC (its own record) powered off {off}{before}; at the end: {end}"]
    if confirmed is None:
        checks.append(f"haven did not confirm {o.failed} dead")
    elif o.last_report_at is not None:
        checks.append(
            f"haven confirmed {o.failed} dead {confirmed - o.fault_at:.2f} s after the fault, "
            f"{confirmed - o.last_report_at:.1f} s after nova-compute's last report "
            f"(report interval {o.report_interval_s:g} s)"
        )
    return checks


def _verdict(r: CloudDrillReport, power_loss: bool, o: Observed, violations: list[str]) -> str:
    if violations:
        r.checks += [f"SAFETY VIOLATED: {v}" for v in violations]
        return "failed"
    if r.vms_running_twice or r.evacuated_unfenced or r.false_evacuations or r.double_evacuations:
        r.checks.append("SAFETY VIOLATED: a VM ran twice, was evacuated unfenced, off a live host, or twice")
        return "failed"
    if r.live_hosts_fenced:
        r.checks.append(f"SAFETY VIOLATED: live host(s) powered off: {', '.join(o.live_fenced)}")
        return "failed"
    if r.verified_not_recovered:
        return "failed"  # haven said recovered what Nova did not show so: its word cannot be trusted
    returned = o.returned_at is not None
    r.checks.append(f"{o.failed} back in service (Nova: up, enabled, not forced down): {returned}")
    if power_loss:
        r.checks.append(
            f"{r.ha_vms_recovered} of {r.ha_vms_affected} HA VMs recovered on another host (Nova: ACTIVE, "
            "no task, running)"
        )
        r.checks += [f"not recovered: {v['id']}: {v['why']}" for v in r.not_recovered]
        if r.vms_lost == 0 and returned:
            return "recovered"
        return "partial" if r.ha_vms_recovered else "failed"
    disabled = o.disabled_at is not None and bool(o.disabled_reason)
    r.checks += [
        f"compute service disabled with a reason while nova-compute was down: {disabled}",
        f"evacuations: {len(o.evacuations)} (expected none)",
    ]
    return "recovered" if disabled and returned and not o.evacuations else "failed"


def _accepted(calls: list[WitnessedEvacuation]) -> list[float]:
    return [w.accepted_at for w in calls if w.accepted_at is not None]


def _since(origin: float, at: float | None) -> float | None:
    return round(at - origin, 3) if at is not None and origin else None


def _notification(n: Notification) -> dict[str, Any]:
    failures = n.payload.get("recovery", {}).get("failures", [])
    return {
        "id": n.id,
        "type": n.type.value,
        "host": n.hostname,
        "status": n.status.value,
        "event": n.payload.get("event"),
        "reason": failures[0].get("error") if failures else None,
    }


def _evacuation(m: Migration, calls: list[WitnessedEvacuation]) -> dict[str, Any]:
    return {
        "server": m.server_id,
        "source": m.source,
        "dest": m.dest,
        "nova_status": m.status,
        "bmc_before_call": calls[0].bmc_before.value if calls else None,
    }
