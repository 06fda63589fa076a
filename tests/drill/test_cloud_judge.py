"""The real-cloud drill's verdict is judged from Nova's records and the BMCs' answers, not haven's word.

Pure: an Observed (what the drill saw of Nova and the BMCs) and an empty store go in, the
counters come out. The lab drills (test_lab_drills.py) run the same judge on a real Nova.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from haven.cloud.openstack.workload import Migration
from haven.domain.cloud import Flavor, Server, VmState
from haven.domain.events import discard_events
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower
from haven.drill.cloud_judge import Observed, judge
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
