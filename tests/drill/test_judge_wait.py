"""The real-cloud drill's judge reads Nova after haven's recovery is over, and waits for it (issue 17).

One lab drill in seven ended ``partial`` although haven had verified every VM: the drill's only look at
Nova was a server list sent *before* it saw haven's recovery over, so it could show a VM still
rebuilding. Here Nova is a scripted list whose answer is Nova's state when the call was sent, and haven
finishes (its last VM settles and is verified, its notification closes) while that call is in flight,
exactly the interleaving of that run. The drill's wait (haven.drill.cloud_drill) and its judge run for
real; the verdict must come from reads of Nova sent after the recovery was over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, cast

import pytest

from haven.domain.cloud import Flavor, PowerState, Server, TaskState
from haven.domain.events import EngineEvent, EventKind, discard_events
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower
from haven.drill.cloud_drill import CloudDrill, _wait_recovered
from haven.drill.cloud_judge import CloudDrillReport, Observed, judge
from haven.drill.report import EventRecorder
from haven.drill.witness import WitnessedEvacuation
from haven.store import Store

FAILED, OTHER = HostName("compute-1"), HostName("compute-2")
VMS = [ServerId(f"vm-{i}") for i in (1, 2, 3)]
TINY = Flavor("tiny", 1, 64, 1)


@dataclass
class Haven:
    """What the drill sees of haven: its events and whether a notification is still open."""

    recorder: EventRecorder = field(default_factory=lambda: EventRecorder(discard_events))
    open: list[str] = field(default_factory=lambda: ["n-1"])

    def open_notifications(self) -> list[str]:
        return list(self.open)

    def verify(self, sid: ServerId) -> None:
        self.recorder(EngineEvent(EventKind.STEP_FINISHED, time.time(), FAILED,
                                  detail={"kind": "evacuate", "state": "done", "subject": sid}))  # fmt: skip

    def finish(self) -> None:
        self.recorder(EngineEvent(EventKind.NOTIFICATION_FINISHED, time.time(), FAILED))
        self.open.clear()


@dataclass
class Nova:
    """Nova's servers; a list call answers with the state as it was when the call was sent, and
    ``in_flight`` runs while the first call is on its way (haven acting meanwhile)."""

    servers: dict[ServerId, Server]
    in_flight: Any = None
    calls: int = 0

    async def list(self, ids: list[ServerId]) -> dict[ServerId, Server]:
        sent = {s: self.servers[s] for s in ids if s in self.servers}
        self.calls += 1
        if self.calls == 1 and self.in_flight is not None:
            self.in_flight()
        await asyncio.sleep(0)
        return sent


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open("sqlite://") as opened:
        yield opened


@pytest.fixture
async def engine_loop() -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(asyncio.Event().wait())
    yield cast("asyncio.Task[None]", task)
    task.cancel()


def settled(sid: ServerId) -> Server:
    return Server(sid, sid, OTHER, TINY)


async def drill_and_judge(
    nova: Nova,
    haven: Haven,
    store: Store,
    loop: asyncio.Task[None],
    judge_wait_s: float,
    asked: list[ServerId] = VMS,
    give_up_s: float = 30.0,
) -> tuple[CloudDrillReport, Observed]:
    haven.recorder(EngineEvent(EventKind.NOTIFICATION_CREATED, time.time(), FAILED))
    workload = type("Workload", (), {"servers": staticmethod(nova.list)})()
    drill = CloudDrill(
        "host-power-loss", "lab", cast(Any, None), cast(Any, None), cast(Any, None), cast(Any, workload),
        "tiny", "img", give_up_s=give_up_s, judge_wait_s=judge_wait_s,
    )  # fmt: skip
    o = Observed(failed=FAILED, hosts=3, booted=list(VMS), fault_at=time.time() - 25.0)
    now = time.time()  # haven's evacuate calls, as the drill's witness records them
    o.witnessed = [WitnessedEvacuation(vm, FAILED, OTHER, BmcPower.OFF, now, now) for vm in asked]
    await _wait_recovered(drill, cast(Any, haven), loop, FAILED, list(VMS), haven.recorder, o)
    o.power_on_at, o.returned_at = time.time(), time.time() + 1  # the host came back (not judged here)
    return judge("host-power-loss", "lab", list(VMS), haven.recorder, store, o), o


async def test_a_list_sent_before_haven_verified_the_last_vm_is_not_the_verdict(
    store: Store, engine_loop: asyncio.Task[None]
) -> None:
    spawning = replace(settled(VMS[2]), task_state=TaskState.REBUILD_SPAWNING)
    nova = Nova({VMS[0]: settled(VMS[0]), VMS[1]: settled(VMS[1]), VMS[2]: spawning})
    haven = Haven()
    haven.verify(VMS[0])
    haven.verify(VMS[1])

    def last_vm_settles_and_haven_finishes() -> None:
        nova.servers[VMS[2]] = settled(VMS[2])
        haven.verify(VMS[2])
        haven.finish()

    nova.in_flight = last_vm_settles_and_haven_finishes
    report, o = await drill_and_judge(nova, haven, store, engine_loop, judge_wait_s=30.0)
    # The list in flight as haven finished still showed the last VM spawning: never the verdict.
    assert o.first_look[VMS[2]].task_state is TaskState.REBUILD_SPAWNING
    assert (report.verdict, report.vms_lost, report.ha_vms_recovered) == ("recovered", 0, 3)
    assert report.first_look_recovered == 2 and report.verified_not_recovered == 0
    assert nova.calls >= 2 and report.nova_all_active_s is not None
    assert report.judge_wait_s == 30.0 and report.judge_waited_s is not None and report.judge_waited_s < 30.0


async def test_a_vm_that_never_settles_is_waited_for_then_reported_with_novas_view(
    store: Store, engine_loop: asyncio.Task[None]
) -> None:
    off = replace(settled(VMS[1]), power_state=PowerState.SHUTDOWN)
    nova = Nova({VMS[0]: settled(VMS[0]), VMS[1]: off, VMS[2]: settled(VMS[2])})
    haven = Haven()
    haven.finish()
    started = time.monotonic()
    report, _ = await drill_and_judge(nova, haven, store, engine_loop, judge_wait_s=1.2)
    assert time.monotonic() - started >= 1.2 and nova.calls >= 3  # it waited, reading again and again
    assert (report.verdict, report.vms_lost) == ("partial", 1)
    assert report.judge_waited_s is not None and report.judge_waited_s >= 1.2
    (view,) = report.not_recovered
    assert (view["id"], view["host"], view["vm_state"], view["power_state"]) == (
        VMS[1],
        OTHER,
        "active",
        "shutdown",
    )
    assert view["task_state"] is None and view["verified_by_haven"] is False
    assert "power_state shutdown" in view["why"]
    assert any("did not show every HA VM recovered within 1.2 s" in c for c in report.checks)


async def test_nova_is_not_read_while_haven_has_evacuations_left_to_ask(
    store: Store, engine_loop: asyncio.Task[None]
) -> None:
    # Nova cannot list every VM recovered before each was asked: the wait reads nothing meanwhile (a
    # list of every server costs nova-api about 1 s on the lab, competing with haven's own calls),
    # as the oracle's and by-hand watchers start once their calls are made (issue 15).
    nova = Nova({vm: settled(vm) for vm in VMS})
    haven = Haven()  # its notification stays open: no recovery over to read after
    _, o = await drill_and_judge(
        nova, haven, store, engine_loop, judge_wait_s=0.5, asked=VMS[:2], give_up_s=1.0
    )
    assert o.first_look == {}  # the wait never read Nova; only the judge's own look did, after it
    assert o.notes and "gave up waiting for the recovery" in o.notes[0]


async def test_with_no_vm_asked_to_move_the_judge_reads_nova_once_and_does_not_wait(
    store: Store, engine_loop: asyncio.Task[None]
) -> None:
    # A failed fence ends haven's recovery before any evacuate call: no VM can show recovered
    # elsewhere, so the judge's wait for Nova (60 s by default) would only delay the verdict.
    nova = Nova({vm: replace(settled(vm), host=FAILED) for vm in VMS})  # still on the failed host
    haven = Haven()
    haven.finish()
    started = time.monotonic()
    report, o = await drill_and_judge(nova, haven, store, engine_loop, judge_wait_s=30.0, asked=[])
    assert time.monotonic() - started < 5.0
    assert nova.calls == 2  # the wait's read as the recovery ended, then the judge's one read after it
    assert (report.verdict, report.vms_lost, report.ha_vms_recovered) == ("failed", 3, 0)
    assert report.judge_wait_s == 0.0
    assert {v["id"] for v in report.not_recovered} == set(VMS)
    assert any("the judge read Nova once instead of waiting up to 30 s" in n for n in o.notes)


async def test_one_vm_asked_to_move_keeps_the_judges_wait(
    store: Store, engine_loop: asyncio.Task[None]
) -> None:
    nova = Nova({VMS[0]: settled(VMS[0]), VMS[1]: replace(settled(VMS[1]), host=FAILED),
                 VMS[2]: replace(settled(VMS[2]), host=FAILED)})  # fmt: skip
    haven = Haven()
    haven.finish()
    started = time.monotonic()
    report, _ = await drill_and_judge(nova, haven, store, engine_loop, judge_wait_s=1.2, asked=VMS[:1])
    assert time.monotonic() - started >= 1.2 and report.judge_wait_s == 1.2
    assert report.vms_lost == 2


async def test_a_recovery_still_running_when_the_wait_gave_up_keeps_the_judges_wait(
    store: Store, engine_loop: asyncio.Task[None]
) -> None:
    # The drill's wait gave up while haven was still fencing (no evacuate call yet, its notification
    # open); its evacuations land during the judge's wait: the verdict must see them.
    nova = Nova({vm: replace(settled(vm), host=FAILED) for vm in VMS})
    haven = Haven()  # its notification stays open

    async def evacuations_land_late() -> None:
        await asyncio.sleep(1.5)
        for vm in VMS:
            nova.servers[vm] = settled(vm)

    late = asyncio.create_task(evacuations_land_late())
    report, o = await drill_and_judge(
        nova, haven, store, engine_loop, judge_wait_s=6.0, asked=[], give_up_s=1.0
    )
    await late
    assert report.judge_wait_s == 6.0
    assert (report.vms_lost, report.ha_vms_recovered) == (0, 3)
    assert not any("the judge read Nova once" in n for n in o.notes)
