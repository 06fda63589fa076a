"""host-hang on a real cloud: judged from the BMC's own power record and Nova's last report, not haven's word.

Pure: an Observed (what the drill saw) and the engine's confirmation event go in, the verdict and the
broken rules come out. The drill itself runs on the lab in test_lab_drills.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from haven.cloud.openstack.workload import Migration
from haven.domain.cloud import Flavor, Server
from haven.domain.events import EngineEvent, EventKind, discard_events
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower
from haven.drill.cloud_judge import Observed, judge
from haven.drill.report import EventRecorder
from haven.drill.witness import WitnessedEvacuation
from haven.store import Store

FAILED, OTHER = HostName("compute-1"), HostName("compute-2")
VMS = [ServerId(f"vm-{i}") for i in (1, 2)]
T0 = 1_800_000_000.0
CONFIRMED = T0 + 7.0


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open("sqlite://") as opened:
        yield opened


def hung_world(**changes: object) -> Observed:
    """Frozen at T0, last report T0 - 1, confirmed at +7, BMC off at +8, evacuated at +9, still off."""
    o = Observed(
        failed=FAILED, hosts=2, booted=list(VMS), fault_at=T0, power_on_at=T0 + 30, returned_at=T0 + 45
    )
    o.report_interval_s, o.last_report_at = 2.0, T0 - 1
    o.bmc_off_at, o.bmc_at_end = T0 + 8, BmcPower.OFF
    o.final = {s: Server(s, s, OTHER, Flavor("tiny", 1, 64, 1)) for s in VMS}
    o.witnessed = [WitnessedEvacuation(s, FAILED, None, BmcPower.OFF, T0 + 9, T0 + 9.5) for s in VMS]
    o.evacuations = [Migration(f"m-{s}", s, FAILED, OTHER, "completed", T0 + 10) for s in VMS]
    for key, value in changes.items():
        setattr(o, key, value)
    return o


def verdict(o: Observed, store: Store, confirmed: float | None = CONFIRMED) -> dict[str, object]:
    recorder = EventRecorder(discard_events)
    if confirmed is not None:
        recorder(EngineEvent(EventKind.HOST_CONFIRMED_DEAD, confirmed, host=FAILED))
    return judge("host-hang", "lab", list(VMS), recorder, store, o).to_dict()


def violations(r: dict[str, object]) -> list[str]:
    return [c for c in r["checks"] if c.startswith("SAFETY VIOLATED")]  # type: ignore[attr-defined]


def test_confirmed_after_a_missed_report_fenced_then_evacuated_is_recovered(store: Store) -> None:
    r = verdict(hung_world(), store)
    assert r["verdict"] == "recovered", r["checks"]
    assert (r["ha_vms_affected"], r["ha_vms_recovered"], r["evacuated_unfenced"]) == (2, 2, 0)
    assert (r["detect_s"], r["first_evacuate_call_s"], r["bmc_at_end"]) == (7.0, 9.0, "off")
    assert r["report_age_at_confirm_s"] == 8.0
    assert any("powered off 8.00 s after the fault, 1.00 s before the first evacuate call" in c
               for c in r["checks"])  # type: ignore[attr-defined]  # fmt: skip


def test_an_evacuation_before_the_bmc_recorded_off_fails_even_if_redfish_said_off(store: Store) -> None:
    r = verdict(hung_world(bmc_off_at=T0 + 9.2), store)
    assert r["verdict"] == "failed"
    assert violations(r) == ["SAFETY VIOLATED: compute-1 evacuated before its BMC recorded it powered off"]


def test_a_host_back_on_at_the_end_after_its_vms_moved_fails(store: Store) -> None:
    r = verdict(hung_world(bmc_at_end=BmcPower.ON), store)
    assert r["verdict"] == "failed"
    assert "its BMC's own record says on at the end" in violations(r)[0]


def test_confirming_before_nova_compute_missed_its_report_fails(store: Store) -> None:
    # Last stamped report at +5 (really up to +6): confirmed at +7 is within the 2 s report interval.
    r = verdict(hung_world(last_report_at=T0 + 5), store)
    assert r["verdict"] == "failed"
    assert "before it missed one (report interval 2 s)" in violations(r)[0]


def test_a_fence_before_the_confirmation_fails(store: Store) -> None:
    r = verdict(hung_world(bmc_off_at=T0 + 6), store)
    assert violations(r) == ["SAFETY VIOLATED: compute-1 powered off before haven confirmed it dead"]


def test_a_hang_haven_did_not_fence_moves_nothing_and_is_not_recovered(store: Store) -> None:
    o = hung_world(bmc_off_at=None, bmc_at_end=BmcPower.ON, witnessed=[], evacuations=[])
    o.final = {s: Server(s, s, FAILED, Flavor("tiny", 1, 64, 1)) for s in VMS}
    r = verdict(o, store, confirmed=None)
    assert violations(r) == []
    assert (r["verdict"], r["vms_lost"], r["evacuated_unfenced"]) == ("failed", 2, 0)
    assert "haven did not confirm compute-1 dead" in r["checks"]  # type: ignore[operator]
