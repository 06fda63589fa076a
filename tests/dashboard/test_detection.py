"""Detection and verification in the dashboard: how long haven took to see a host die, and each VM
verified running again, as the plot and the timeline show them.

The detection time runs from the host's last heartbeat, which haven's detector records in the
notification it opens (``silent_since``), to that opening. The verify line of a timeline comes from
what each evacuate step persists (``issued_at`` when Nova accepted the evacuation, ``verified_at``
when the VM was seen running on a healthy host). A real engine recovers a power loss on the simulated
cloud in virtual time, judged against the cloud's own record of the beats it sent and the
evacuations it was asked for; then boards built from hand-made records cover what the engine does not
produce on its own (notifications opened by others, a recovery caught half-way); and the page itself
is read through the dashboard's app.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from haven.api.auth import LocalTokenAuthenticator
from haven.cloud.sim import CloudSpec, SimFencer, build_cloud
from haven.dashboard.app import ROOT, create_dashboard, template_environment
from haven.dashboard.board import Board, Phase
from haven.dashboard.hub import EventHub
from haven.domain.clock import RealClock, VirtualClock
from haven.domain.ids import HostName, NotificationId, SegmentId
from haven.domain.incidents import (
    SILENT_SINCE_KEY,
    Notification,
    NotificationStatus,
    NotificationType,
    Step,
    StepState,
)
from haven.domain.settings import EngineSettings
from haven.notify.events import notification_payload
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.runner import run_until
from haven.store import Store

SEG = SegmentId("seg-1")
TOKEN = "detection-test-token"
# An evacuate step's detail as the plan step writes it (haven.recovery.host_steps); the step adds
# its phase, the issued marker and times as it goes (haven.recovery.evacuate_step).
PLANNED: dict[str, Any] = {"source": "compute-1", "target": "compute-2", "name": "vm", "ha": True}
NOT_RECORDED = "\N{EN DASH}"  # the table's detect cell when haven did not record the last heartbeat


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as opened:
        yield opened


def _parts() -> Any:
    return template_environment().get_template("parts.html").module


async def test_a_power_loss_shows_its_detection_and_each_vm_verified(store: Store) -> None:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=6, vms=30, zones=1, ha_fraction=1.0, seed=11), clock)
    segments_per_zone(store, await cloud.list_hosts())
    engine = Engine(cloud, cloud, SimFencer(cloud), store, clock)
    engine.start()
    wake = [cloud.next_event_time]
    await run_until(engine, clock, clock.now() + 5.0, wake_sources=wake)  # quiet passes first
    victim = cloud.host_names()[2]
    ha_vms = [s.id for s in await cloud.list_servers(victim) if s.ha_enabled]
    assert ha_vms
    fault_at = clock.now()
    cloud.fail_power(victim)

    def over() -> bool:
        return bool(store.list_notifications()) and not engine.open_notifications()

    await run_until(engine, clock, clock.now() + 600.0, done=over, wake_sources=wake)
    assert over()

    # The detector recorded the victim's last heartbeat: the cloud's own last beat before the power
    # went, no later than the fault and less than one heartbeat interval before it.
    (n,) = store.list_notifications()
    assert n.status is NotificationStatus.FINISHED and n.hostname == victim
    h = cloud.sim_host(victim)
    interval = cloud.timings.heartbeat_interval_s
    last_beat = max(
        h.mgmt.last_beat(clock.now(), h.heartbeat_phase, interval),
        h.second.last_beat(clock.now(), h.heartbeat_phase, interval),
    )
    heard = n.payload[SILENT_SINCE_KEY]
    assert heard == pytest.approx(last_beat) and fault_at - interval < heard <= fault_at
    grace = EngineSettings().detection.grace_s
    assert n.created_at - heard >= grace  # dead only once every channel was silent past grace
    # haven's own key: a Masakari client (the API, webhooks, RabbitMQ) gets its payload without it
    assert SILENT_SINCE_KEY not in notification_payload(n)["payload"]

    board = Board(store)
    (incident,) = board.incidents()
    assert incident.detect_s == pytest.approx(n.created_at - heard)
    view = board.notifications[n.id]
    phases = {p.kind: p for p in view.phases}
    assert list(phases) == ["fence", "force_down", "plan", "evacuate", "verify"]
    evacuate, verify = phases["evacuate"], phases["verify"]
    assert (evacuate.done, evacuate.total, evacuate.state) == (len(ha_vms), len(ha_vms), "done")
    assert (verify.done, verify.total, verify.state) == (len(ha_vms), len(ha_vms), "done")
    # Ground truth: each HA VM runs on one other host now, and evacuating ended when the cloud got
    # its last evacuate call; verifying began with the first call and ended after the last.
    assert all(len(cloud.hosts_running(s)) == 1 and victim not in cloud.hosts_running(s) for s in ha_vms)
    asked = sorted(e.at for e in cloud.evacuations if e.source == victim)
    assert len(asked) == len(ha_vms)
    assert evacuate.finished_at == pytest.approx(asked[-1])
    assert verify.started_at == pytest.approx(asked[0])
    ended = verify.finished_at
    assert ended is not None and asked[-1] < ended <= n.updated_at
    steps = [s for s in store.list_steps(n.id) if s.kind == "evacuate"]
    assert ended == max(s.detail["verified_at"] for s in steps)
    bars = {kind: (start, end) for kind, start, end in incident.phases}
    assert bars["verify"] == pytest.approx((asked[0] - n.created_at, ended - n.created_at))

    parts = _parts()
    plot, card = str(parts.plot(board)), str(parts.notification(view))
    assert 'class="ph-detect"' in plot and 'class="ph-verify"' in plot
    assert f'<td class="detect">{incident.detect_s:.1f}</td>' in plot
    assert f"verify {len(ha_vms)}/{len(ha_vms)}" in card
    assert f"{incident.detect_s:.1f} s after the host's last heartbeat" in card


Evacuation = tuple[str, dict[str, Any], float | None]  # the step's state, detail and end


def _notification(
    store: Store, nid: str, payload: dict[str, Any], evacuations: list[Evacuation], at: float = 1000.0
) -> Notification:
    """A host recovery opened at ``at``: fence, force down and plan one second each, from +1 s, then
    the evacuate steps given, all started at +4 s (they run side by side)."""
    n = Notification(NotificationId(nid), NotificationType.COMPUTE_HOST, HostName("compute-1"),
                     NotificationStatus.FINISHED, payload, at, at, at + 60)  # fmt: skip
    steps = [
        Step(n.id, i, kind, "compute-1", StepState.DONE, started_at=at + 1 + i, finished_at=at + 2 + i)
        for i, kind in enumerate(("fence", "force_down", "plan"))
    ]
    for i, (state, detail, end) in enumerate(evacuations, start=3):
        steps.append(Step(n.id, i, "evacuate", f"vm-{i}", StepState(state), detail, 1, at + 4, end))
    store.create_notification(n, steps)
    return n


def test_a_notification_without_a_recorded_heartbeat_shows_no_detection(store: Store) -> None:
    def whole(at: float) -> list[Evacuation]:  # evacuate steps recorded without their phases: older
        return [("done", {}, at + 10), ("done", {}, at + 11)]

    # Opened through the API (a monitor), by an older haven, or with something unreadable in the key.
    payloads: list[dict[str, Any]] = [
        {}, {SILENT_SINCE_KEY: "yesterday"}, {SILENT_SINCE_KEY: True}, {SILENT_SINCE_KEY: float("inf")}
    ]  # fmt: skip
    for i, payload in enumerate(payloads):
        _notification(store, f"old-{i}", payload, whole(1000.0 + i), at=1000.0 + i)
    _notification(store, "new", {SILENT_SINCE_KEY: 1990.0}, whole(2000.0), at=2000.0)
    board = Board(store)
    detect = {i.notification_id: i.detect_s for i in board.incidents()}
    assert detect == {"old-0": None, "old-1": None, "old-2": None, "old-3": None, "new": 10.0}
    plot = str(_parts().plot(board))
    cells = re.findall(r'<td class="detect">([^<]*)</td>', plot)
    assert cells == ["10.0", *[NOT_RECORDED] * 4]  # newest first
    assert plot.count('class="ph-detect"') == 1
    # Nothing timed to verify in such records: the line says done, the plot has no verify bar.
    assert "ph-verify" not in plot
    phases = {p.kind: p for p in board.notifications[NotificationId("new")].phases}
    assert phases["evacuate"] == Phase("evacuate", 2, 2, "done", 2004.0, 2011.0)
    assert phases["verify"] == Phase("verify", 2, 2, "done", None, None)


def test_a_recovery_half_way_counts_evacuations_asked_and_vms_verified(store: Store) -> None:
    verified = {**PLANNED, "phase": "verify", "issued": True, "issued_at": 1004.5, "verified_at": 1030.0}
    verifying = {**PLANNED, "phase": "verify", "issued": True, "issued_at": 1005.0}
    issuing = {**PLANNED, "issued": True, "issued_at": 1005.5}  # the marker: not accepted yet
    waiting = PLANNED
    steps: list[Evacuation] = [
        ("done", verified, 1030.0), ("running", verifying, None), ("running", issuing, None),
        ("pending", waiting, None),
    ]  # fmt: skip
    n = _notification(store, "n", {}, steps)
    phases = {p.kind: p for p in Board(store).notifications[n.id].phases}
    assert list(phases) == ["fence", "force_down", "plan", "evacuate", "verify"]
    assert phases["evacuate"] == Phase("evacuate", 2, 4, "running", 1004.0, None)
    assert phases["verify"] == Phase("verify", 1, 4, "running", 1004.5, None)

    # One VM's verification times out, another's evacuation is refused before Nova accepts it: the
    # recovery stops, the last one skipped. Each line says failed, and ends at its last part's end.
    timed_out = {**verifying, "error": "not verified within 600 s"}
    refused = {**PLANNED, "error": "Nova refused the evacuation"}
    steps = [
        ("done", verified, 1030.0), ("failed", timed_out, 1605.0), ("failed", refused, 1006.0),
        ("skipped", waiting, 1605.0),
    ]  # fmt: skip
    n = _notification(store, "m", {}, steps)
    phases = {p.kind: p for p in Board(store).notifications[n.id].phases}
    assert phases["evacuate"] == Phase("evacuate", 2, 4, "failed", 1004.0, 1605.0)
    assert phases["verify"] == Phase("verify", 1, 4, "failed", 1004.5, 1605.0)


async def test_the_page_shows_the_detect_column_and_the_verify_line(store: Store) -> None:
    done = {**PLANNED, "phase": "verify", "issued": True, "issued_at": 1005.0, "verified_at": 1012.0}
    _notification(store, "n", {SILENT_SINCE_KEY: 996.5}, [("done", done, 1012.0)])
    app = Starlette(
        routes=[Mount(ROOT, create_dashboard(store, LocalTokenAuthenticator(TOKEN), EventHub(), RealClock()))]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        assert (await client.get(f"{ROOT}/")).status_code == 401
        logged = await client.post(f"{ROOT}/login", data={"token": TOKEN})
        assert logged.status_code == 303
        page = await client.get(f"{ROOT}/")
    assert page.status_code == 200
    html = page.text
    assert '<th scope="col">detect</th>' in html and '<td class="detect">3.5</td>' in html
    assert "opened 00:16:40.0 UTC, 3.5 s after the host's last heartbeat" in html
    assert re.search(r'<li class="p-done">\s*<span class="step">verify</span>', html)
    # The plot: detection left of the opening, then the evacuation asked and the VM verified.
    assert "detect: the last heartbeat 3.5 s before the notification opened" in html
    assert "verify: +5.0 s to +12.0 s" in html and "evacuate: +4.0 s to +5.0 s" in html
