"""haven counts an evacuated VM as recovered only when Nova shows it settled: ACTIVE, no task in progress,
powered on (running), on a host other than the failed one (issue 17).

The evacuate step runs against a simulated cloud whose Nova view is the ground truth: the host's power
is cut, its service forced down, the step issues the evacuation for real, and virtual time decides what
Nova shows (a rebuild in flight, a guest destroyed behind Nova's back, a server never moved). The step
must keep polling while Nova shows anything but a settled VM, and finish once Nova shows one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from haven.cloud.sim import CloudSpec, SimCloud, SimFencer, build_cloud
from haven.domain.clock import VirtualClock
from haven.domain.cloud import PowerState, TaskState, VmState
from haven.domain.ids import HostName, NotificationId, ServerId
from haven.domain.incidents import Notification, NotificationStatus, NotificationType, Step, StepState
from haven.domain.settings import RecoverySettings
from haven.recovery.context import StepContext
from haven.recovery.evacuate_step import VERIFY, evacuate
from haven.recovery.outcome import Outcome
from haven.recovery.targets import TargetBook
from haven.safety import Action, Answer, Decision
from haven.store import Store

SETTINGS = RecoverySettings()


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open("sqlite://") as opened:
        yield opened


class World:
    """A simulated cloud with one host powered off and forced down, and one HA VM of it to evacuate."""

    def __init__(self, store: Store) -> None:
        self.clock = VirtualClock()
        self.cloud: SimCloud
        self.cloud, _ = build_cloud(CloudSpec(hosts=3, vms=6, zones=1, ha_fraction=1.0, seed=3), self.clock)
        self.store = store
        self.source = next(h for h in self.cloud.host_names() if self.cloud.servers_on(h))
        self.vm = self.cloud.servers_on(self.source)[0].id
        self.detail: dict[str, Any] = {"source": self.source, "target": None, "name": "vm", "ha": True}
        self.note = Notification(
            NotificationId("n-1"), NotificationType.COMPUTE_HOST, self.source, NotificationStatus.RUNNING,
            {"event": "STOPPED"}, self.clock.now(), self.clock.now(), self.clock.now(),
        )  # fmt: skip

    async def fail_source(self) -> None:
        self.cloud.fail_power(self.source)
        await self.cloud.force_down(self.source, True)

    def ctx(self) -> StepContext:
        def allow(
            action: Action, host: HostName, waited_s: float = 0.0, bmc: float | None = None
        ) -> Decision:
            return Decision(Answer.ALLOW, "test")

        return StepContext(
            cloud=self.cloud, fencer=SimFencer(self.cloud), store=self.store, settings=SETTINGS,
            now=self.clock.now(), notification=self.note,
            host_is_healthy=lambda h: h != self.source and self.cloud.is_powered(h),
            targets=TargetBook(lambda: {}), authorize=allow, persist=lambda step, detail: None,
        )  # fmt: skip

    async def step(self) -> Outcome:
        """One run of the evacuate step, its detail kept for the next run (as the executor commits it)."""
        out = await evacuate(
            Step(self.note.id, 3, "evacuate", self.vm, StepState.RUNNING, self.detail), self.ctx()
        )
        self.detail = dict(out.detail)
        return out

    def advance(self, seconds: float) -> None:
        self.clock.advance_to(self.clock.now() + seconds)
        self.cloud.settle()

    async def nova(self) -> tuple[VmState, TaskState, PowerState, HostName]:
        s = await self.cloud.get_server(self.vm)
        return s.vm_state, s.task_state, s.power_state, s.host


async def test_a_vm_active_with_its_rebuild_in_flight_is_not_recovered_until_the_task_ends(
    store: Store,
) -> None:
    w = World(store)
    await w.fail_source()
    first = await w.step()  # issues the evacuation
    assert first.state is StepState.RUNNING and w.detail["phase"] == VERIFY
    assert w.cloud.evacuation_count(w.vm) == 1
    vm_state, task, _, host = await w.nova()
    # Nova already names the new host and still says ACTIVE: only the task tells the rebuild is in flight.
    assert (vm_state, task) == (VmState.ACTIVE, TaskState.REBUILDING) and host != w.source
    assert not w.cloud.hosts_running(w.vm)  # ground truth: it runs nowhere yet
    assert (await w.step()).state is StepState.RUNNING
    w.advance(10.0)  # the rebuild finishes
    assert await w.nova() == (VmState.ACTIVE, TaskState.NONE, PowerState.RUNNING, host)
    done = await w.step()
    assert done.state is StepState.DONE and done.detail["host"] == host
    assert w.cloud.hosts_running(w.vm) == {host}


async def test_a_vm_active_on_the_failed_host_is_not_recovered(store: Store) -> None:
    w = World(store)
    await w.fail_source()
    # A resumed step in verification although Nova never moved the VM (its call was lost): Nova shows it
    # ACTIVE, no task, on the failed host.
    w.detail.update(phase=VERIFY, issued=True, issued_at=w.clock.now())
    assert (await w.nova())[:2] == (VmState.ACTIVE, TaskState.NONE)
    assert (await w.nova())[3] == w.source
    for _ in range(5):
        out = await w.step()
        assert out.state is StepState.RUNNING
        w.advance(1.0)
    w.advance(SETTINGS.verify_timeout_s)
    out = await w.step()
    assert out.state is StepState.FAILED and f"on {w.source}" in out.detail["error"]


async def test_a_vm_active_but_powered_off_elsewhere_is_not_recovered(store: Store) -> None:
    w = World(store)
    await w.fail_source()
    await w.step()
    w.advance(10.0)
    target = (await w.nova())[3]
    w.cloud.destroy_guest(w.vm)  # the guest dies right after its rebuild; Nova still says ACTIVE
    assert await w.nova() == (VmState.ACTIVE, TaskState.NONE, PowerState.SHUTDOWN, target)
    assert not w.cloud.hosts_running(w.vm)
    for _ in range(5):
        assert (await w.step()).state is StepState.RUNNING
        w.advance(1.0)
    w.advance(SETTINGS.verify_timeout_s)
    out = await w.step()
    assert out.state is StepState.FAILED and "power shutdown" in out.detail["error"]


async def test_a_failed_rebuild_is_retried_and_a_second_failure_names_novas_fault(store: Store) -> None:
    w = World(store)
    await w.fail_source()
    w.cloud.fail_rebuild(ServerId(w.vm))
    await w.step()
    w.advance(10.0)  # the rebuild fails: ERROR, back on the source
    assert (await w.nova())[0] is VmState.ERROR
    w.cloud.fail_rebuild(ServerId(w.vm))
    retried = await w.step()  # asks again at once (requeue 0), the scheduler picking the host
    assert retried.state is StepState.RUNNING and w.detail["attempt"] == 2
    await w.step()
    assert w.cloud.evacuation_count(w.vm) == 2
    w.advance(10.0)
    out = await w.step()
    assert out.state is StepState.FAILED
    assert "failed 2 time(s)" in out.detail["error"] and "Rebuild of" in out.detail["error"]
    assert not w.cloud.hosts_running(w.vm) and w.cloud.servers_running_twice() == []
