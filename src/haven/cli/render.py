"""Tables a person can read, for drills and for the state commands; `--json` bypasses all of this."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from haven.domain.incidents import Notification, Segment, SegmentHost, Step
from haven.drill.report import DrillReport
from haven.service.status import StatusSummary

VERDICT_STYLE = {
    "recovered": "bold green",
    "held": "bold yellow",
    "partial": "bold yellow",
    "failed": "bold red",
}


def when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def drill_report(report: DrillReport) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_row("scenario", report.scenario, "seed", str(report.seed))
    real_cloud = str(getattr(report, "cloud", ""))  # a CloudDrillReport: a drill on a real cloud
    size = f"{report.hosts} hosts, {report.vms} {'HA servers booted' if real_cloud else 'VMs'}"
    head.add_row("cloud", f"{real_cloud + ': ' if real_cloud else ''}{size}", "injected", report.injected)
    verdict = Text(report.verdict, style=VERDICT_STYLE.get(report.verdict, ""))
    if real_cloud:
        head.add_row("verdict", verdict, "took", f"{report.wall_s:.1f} s real")
    else:
        head.add_row(
            "verdict", verdict, "simulated", f"{report.simulated_s:.1f} s in {report.wall_s:.2f} s real"
        )

    phases = Table(title="phases (seconds after the failure)")
    for col in ("phase", "start", "end"):
        phases.add_column(col, justify="right" if col != "phase" else "left")
    for p in report.phases:
        phases.add_row(p.name, f"{p.start_s:.2f}", f"{p.end_s:.2f}")

    truth = "Nova's and the BMCs' own answers" if real_cloud else "the simulated cloud's ground truth"
    counts = Table(title=f"outcome (checked against {truth})")
    counts.add_column("measure")
    counts.add_column("value", justify="right")
    for name, value in (
        ("HA VMs affected", report.ha_vms_affected),
        ("HA VMs recovered", report.ha_vms_recovered),
        ("VMs lost", report.vms_lost),
        ("VMs running twice", report.vms_running_twice),
        ("evacuated before fencing", report.evacuated_unfenced),
        ("false evacuations", report.false_evacuations),
        ("evacuated twice", report.double_evacuations),
        ("actions asked twice", report.double_actions),
        ("VMs left stopped (crash loop)", report.vms_left_stopped),
        ("death to confirmed (s)", _num(report.detect_s)),
        ("confirmed to fenced (s)", _num(report.fence_s)),
        ("death to last HA VM verified (s)", _num(report.recover_s)),
        ("held by observer gate", report.held_by_gate),
    ):
        counts.add_row(name, str(value))
    parts: list[Table | Text] = [head, phases, counts]
    if report.unplaced:
        unplaced = Table(title="could not be placed")
        unplaced.add_column("VM")
        unplaced.add_column("reason")
        for u in report.unplaced:
            unplaced.add_row(u.get("name") or u["server"], u["reason"])
        parts.append(unplaced)
    for alert in report.alerts:
        parts.append(Text(f"alert [{alert['kind']}] {alert['message']}", style="yellow"))
    for check in report.checks:
        parts.append(Text(f"check: {check}"))
    return Group(*parts)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def status(summary: StatusSummary) -> Group:
    table = Table(title="haven status")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("segments", str(summary.segments))
    for condition, n in summary.hosts_by_condition.items():
        table.add_row(f"hosts {condition}", str(n))
    for state, n in summary.notifications_by_status.items():
        table.add_row(f"notifications {state}", str(n))
    table.add_row("active alerts", str(len(summary.alerts)))
    parts: list[Table | Text] = [table]
    for a in summary.alerts:
        parts.append(Text(f"{when(a.raised_at)} [{a.kind.value}] {a.message}", style="yellow"))
    return Group(*parts)


def hosts_table(hosts: Sequence[SegmentHost], segments: Sequence[Segment]) -> Table:
    names = {s.id: s.name for s in segments}
    table = Table(title=f"{len(hosts)} hosts")
    for col in ("host", "segment", "condition", "reserved", "maintenance", "disabled by haven"):
        table.add_column(col)
    for h in hosts:
        style = "" if h.condition == "healthy" else "yellow"
        table.add_row(
            h.name,
            names.get(h.segment_id, h.segment_id),
            Text(h.condition, style=style),
            _yes(h.reserved),
            _yes(h.on_maintenance),
            _yes(h.disabled_by_haven),
        )
    return table


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def notifications_table(notifications: Sequence[Notification]) -> Table:
    table = Table(title=f"{len(notifications)} notifications")
    for col in ("id", "type", "host", "status", "event", "created", "updated"):
        table.add_column(col)
    for n in notifications:
        table.add_row(
            n.id,
            n.type.value,
            n.hostname,
            n.status.value,
            str(n.payload.get("event", "")),
            when(n.created_at),
            when(n.updated_at),
        )
    return table


def notification_detail(n: Notification, steps: Sequence[Step]) -> Group:
    head = Table.grid(padding=(0, 2))
    for key, value in (
        ("id", n.id),
        ("type", n.type.value),
        ("host", n.hostname),
        ("status", n.status.value),
        ("created", when(n.created_at)),
        ("updated", when(n.updated_at)),
    ):
        head.add_row(key, value)
    table = Table(title="steps")
    for col in ("#", "step", "subject", "state", "started", "took (s)", "detail"):
        table.add_column(col)
    for s in steps:
        took = f"{s.finished_at - s.started_at:.2f}" if s.finished_at and s.started_at else ""
        note = s.detail.get("error") or s.detail.get("target") or s.detail.get("disabled_reason") or ""
        table.add_row(
            str(s.seq),
            s.kind,
            s.detail.get("name") or s.subject,
            s.state.value,
            when(s.started_at),
            took,
            str(note),
        )
    return Group(head, table)


def print_group(console: Console, renderable: Group | Table) -> None:
    console.print(renderable)
