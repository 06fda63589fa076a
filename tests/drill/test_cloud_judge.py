"""The real-cloud drill's verdict is judged from Nova's records and the BMCs' answers, not haven's word.

Pure: an Observed (what the drill saw of Nova and the BMCs) and an empty store go in, the
counters come out. The lab drills (test_lab_drills.py) run the same judge on a real Nova.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from haven.cloud.openstack.workload import Migration
from haven.domain.cloud import Flavor, PowerState, Server, TaskState, VmState
from haven.domain.events import EngineEvent, EventKind, discard_events
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower
from haven.drill.cloud_judge import Observed, judge
from haven.drill.nova_view import NovaLook
from haven.drill.report import EventRecorder
from haven.drill.witness import WitnessedEvacuation
from haven.store import Store

FAILED, OTHER = HostName("compute-1"), HostName("compute-2")
VMS = [ServerId(f"vm-{i}") for i in (1, 2)]
T0 = 1_800_000_000.0


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open("sqlite://") as opened:
        yield opened


def recovered_world(**changes: object) -> Observed:
    """Both VMs evacuated to compute-2 after the BMC said Off, the records completed, the host back."""
    o = Observed(
        failed=FAILED, hosts=2, booted=list(VMS), fault_at=T0, power_on_at=T0 + 30, returned_at=T0 + 45
    )
    o.final = {s: Server(s, s, OTHER, Flavor("tiny", 1, 64, 1)) for s in VMS}
    o.witnessed = [WitnessedEvacuation(s, FAILED, None, BmcPower.OFF, T0 + 11, T0 + 12) for s in VMS]
    o.evacuations = [Migration(f"m-{s}", s, FAILED, OTHER, "completed", T0 + 12) for s in VMS]
    for key, value in changes.items():
        setattr(o, key, value)
    return o


def verdict(o: Observed, store: Store) -> dict[str, object]:
    report = judge("host-power-loss", "lab", list(VMS), EventRecorder(discard_events), store, o)
    return report.to_dict()


def test_every_vm_active_elsewhere_after_a_fence_and_a_clean_return_is_recovered(store: Store) -> None:
    r = verdict(recovered_world(), store)
    assert r["verdict"] == "recovered"
    assert (r["vms_lost"], r["vms_running_twice"], r["evacuated_unfenced"], r["false_evacuations"]) == (
        0,
        0,
        0,
        0,
    )
    assert r["evacuate_calls_s"] == 12.0 and r["returned_s"] == 15.0
    assert {e["bmc_before_call"] for e in r["evacuations"]} == {"off"}  # type: ignore[union-attr]


def test_an_evacuation_while_the_bmc_said_on_is_unfenced_and_may_run_twice(store: Store) -> None:
    o = recovered_world()
    o.witnessed[0] = WitnessedEvacuation(VMS[0], FAILED, None, BmcPower.ON, T0 + 11, T0 + 12)
    r = verdict(o, store)
    assert (r["evacuated_unfenced"], r["vms_running_twice"], r["verdict"]) == (1, 1, "failed")


def test_an_evacuation_in_novas_records_that_haven_did_not_ask_for_counts_as_unfenced(store: Store) -> None:
    r = verdict(recovered_world(witnessed=[]), store)
    assert r["evacuated_unfenced"] == 2 and r["verdict"] == "failed"


def test_a_source_back_without_cleaning_up_runs_the_vm_twice(store: Store) -> None:
    o = recovered_world()
    o.evacuations[1] = Migration("m", VMS[1], FAILED, OTHER, "done", T0 + 12)  # not "completed"
    r = verdict(o, store)
    assert (r["vms_running_twice"], r["evacuated_unfenced"], r["verdict"]) == (1, 0, "failed")


def test_an_evacuation_off_a_live_host_is_false_and_a_vm_left_behind_is_lost(store: Store) -> None:
    o = recovered_world()
    o.evacuations.append(Migration("m-x", ServerId("vm-x"), OTHER, FAILED, "done", T0 + 12))
    o.witnessed.append(WitnessedEvacuation(ServerId("vm-x"), OTHER, None, BmcPower.OFF, T0 + 11, T0 + 12))
    o.final[VMS[0]] = Server(VMS[0], "vm-1", FAILED, Flavor("tiny", 1, 64, 1), vm_state=VmState.ERROR)
    r = verdict(o, store)
    assert (r["false_evacuations"], r["vms_lost"], r["verdict"]) == (1, 1, "failed")


def test_a_host_not_back_in_service_is_not_a_recovery(store: Store) -> None:
    r = verdict(recovered_world(returned_at=None), store)
    assert r["vms_lost"] == 0 and r["verdict"] == "partial"
    assert any("back in service" in c and c.endswith("False") for c in r["checks"])  # type: ignore[union-attr]


# ---- when a VM counts as recovered, and what the judge says of one that is not (issue 17) ---------


def looked(
    o: Observed, first: dict[ServerId, Server], last: dict[ServerId, Server] | None = None
) -> Observed:
    """The judge's reads of Nova after haven's recovery was over: the first, and the last (``final``)."""
    o.look = NovaLook(over_at=T0 + 25, timeout_s=60.0, first=first, last=last or first, reads=2)
    o.look.ended_at = T0 + 85
    o.final = dict(last or first)
    return o


def verified_events(*vms: ServerId) -> EventRecorder:
    recorder = EventRecorder(discard_events)
    for sid in vms:
        detail = {"kind": "evacuate", "state": "done", "subject": sid}
        recorder(EngineEvent(EventKind.STEP_FINISHED, T0 + 20, FAILED, detail=detail))
    return recorder


@pytest.mark.parametrize(
    ("nova", "why"),
    [
        ({"power_state": PowerState.SHUTDOWN}, "power_state shutdown"),
        ({"task_state": TaskState.REBUILD_SPAWNING}, "task in progress (rebuild_spawning)"),
        ({"host": FAILED}, "on the failed host compute-1"),
        ({"vm_state": VmState.ERROR, "fault": "No valid host was found. "}, "Nova's fault: No valid host"),
    ],
)
def test_a_vm_not_settled_elsewhere_is_lost_and_novas_view_of_it_is_reported(
    store: Store, nova: dict[str, object], why: str
) -> None:
    o = recovered_world()
    o.final[VMS[1]] = replace(o.final[VMS[1]], **nova)  # type: ignore[arg-type]
    r = verdict(o, store)
    assert (r["ha_vms_recovered"], r["vms_lost"], r["verdict"]) == (1, 1, "partial")
    (view,) = r["not_recovered"]  # type: ignore[misc]
    assert view["id"] == VMS[1] and why in view["why"]
    assert {"vm_state", "task_state", "host", "power_state", "fault"} <= set(view)
    assert any(c.startswith(f"not recovered: {VMS[1]}") for c in r["checks"])  # type: ignore[union-attr]
    assert r["notification_steps"] == []  # the store is empty here: no notification to keep


def test_a_vm_haven_verified_that_nova_does_not_show_recovered_fails_the_drill(store: Store) -> None:
    o = recovered_world()
    not_yet = {**o.final, VMS[1]: replace(o.final[VMS[1]], host=FAILED)}
    looked(o, first=not_yet)
    report = judge("host-power-loss", "lab", list(VMS), verified_events(*VMS), store, o).to_dict()
    assert (report["verified_not_recovered"], report["verdict"]) == (1, "failed")
    assert any("VERIFICATION WRONG" in c and VMS[1] in c for c in report["checks"])
    assert report["not_recovered"][0]["verified_by_haven"] is True


def test_a_stale_first_look_is_not_judged_once_nova_shows_every_vm_recovered(store: Store) -> None:
    o = recovered_world()
    stale = {**o.final, VMS[1]: replace(o.final[VMS[1]], task_state=TaskState.REBUILD_SPAWNING)}
    o.first_look = stale
    looked(o, first=dict(o.final))
    o.look.all_recovered_at = T0 + 26  # type: ignore[union-attr]
    report = judge("host-power-loss", "lab", list(VMS), verified_events(*VMS), store, o).to_dict()
    assert (report["verdict"], report["vms_lost"], report["first_look_recovered"]) == ("recovered", 0, 1)
    assert (report["judge_wait_s"], report["judge_waited_s"]) == (60.0, 1.0)
    assert any("showed 1 of 2 recovered" in c for c in report["checks"])
