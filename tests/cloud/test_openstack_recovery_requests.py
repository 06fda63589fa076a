"""What one host recovery asks of nova-api, from the force down to the last evacuate call (issue 15).

On the real-Nova lab haven's own reads compete with Nova's rebuilds for CPU: every list of servers
also read every server group, so the plan read them twice and each issuing batch and each
verification tick read them once per host listed. The recovery's steps (force down, plan, the
evacuate batches, one verification tick) run here on the OpenStack driver over CountingNova, a
stand-in for its HTTP layer that counts each request; the checks before every evacuate call
(safety policy, the fenced host's BMC, the server's evacuate-action count) are counted too, and
must not move. Ground truth: every server is evacuated exactly once, off the failed host.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import pytest

from cloud.counting_nova import CountingNova
from haven.cloud.openstack.calls import CallPool
from haven.cloud.openstack.cloud import OpenStackCloud
from haven.cloud.openstack.nova import NovaApi
from haven.domain.clock import VirtualClock
from haven.domain.ids import HostName, NotificationId, SegmentId
from haven.domain.incidents import (
    Notification,
    NotificationStatus,
    NotificationType,
    Segment,
    SegmentHost,
    Step,
    StepState,
)
from haven.domain.liveness import BmcPower
from haven.domain.settings import RecoverySettings
from haven.recovery.context import StepContext
from haven.recovery.evacuate_step import evacuate
from haven.recovery.host_steps import force_down, plan
from haven.recovery.outcome import Outcome
from haven.recovery.targets import TargetBook
from haven.safety import Action, Answer, Decision
from haven.store import Store

SOURCE = HostName("compute-1")
VMS = 20
GROUPS = "GET /os-server-groups"
LISTS = "GET /servers/detail"
COUNTS = "GET /servers/{id}/os-instance-actions"
EVACUATE = "POST /servers/{id}/action evacuate"


class OffFencer:
    """The failed host's BMC: off. Every reading is counted (one per host per batch is the rule)."""

    def __init__(self) -> None:
        self.readings: Counter[HostName] = Counter()

    async def power_off(self, host: HostName) -> None:
        pass

    async def power_on(self, host: HostName) -> None:
        pass

    async def power_status(self, host: HostName) -> BmcPower:
        self.readings[host] += 1
        return BmcPower.OFF


@dataclass
class Phases:
    force_down: Counter[str]
    plan: Counter[str]
    issuing: list[Counter[str]]  # one per batch, until every evacuate call was made
    verify: Counter[str]  # one verification tick once Nova shows every rebuild done
    policy_asked: int
    bmc_readings: int


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open("sqlite://") as opened:
        segment = opened.create_segment(Segment(SegmentId("a" * 32), "rack-1"))
        for i in (1, 2, 3):
            opened.add_host(SegmentHost(HostName(f"compute-{i}"), segment.id))
        yield opened


def _world() -> CountingNova:
    nova = CountingNova(hosts=3)
    for i in range(VMS):
        # Two of the failed host's VMs are in anti-affinity groups with a member elsewhere.
        nova.boot(f"vm-{i}", SOURCE, group=f"aa-{i}" if i < 2 else None)
    nova.boot("peer-0", "compute-2", group="aa-0")
    nova.boot("peer-1", "compute-3", group="aa-1")
    nova.boot("other", "compute-2", group="unrelated")
    return nova


async def _recover(store: Store) -> tuple[CountingNova, Phases]:
    nova = _world()
    cloud = OpenStackCloud(cast(NovaApi, nova), CallPool(8))
    clock = VirtualClock()
    fencer = OffFencer()
    asked: list[Action] = []

    def allow(action: Action, host: HostName, waited_s: float = 0.0, bmc: float | None = None) -> Decision:
        asked.append(action)
        return Decision(Answer.ALLOW, "test")

    note = Notification(
        NotificationId("n-1"), NotificationType.COMPUTE_HOST, SOURCE, NotificationStatus.RUNNING,
        {"event": "STOPPED"}, clock.now(), clock.now(), clock.now(),
    )  # fmt: skip
    book = TargetBook(lambda: {})

    def context() -> StepContext:
        return StepContext(
            cloud=cloud, fencer=fencer, store=store, settings=RecoverySettings(), now=clock.now(),
            notification=note, host_is_healthy=lambda h: h != SOURCE, targets=book, authorize=allow,
            persist=lambda step, detail: None,
        )  # fmt: skip

    try:
        nova.reset()
        out = await force_down(Step(note.id, 1, "force_down", SOURCE, StepState.RUNNING, {}), context())
        assert out.state is StepState.DONE, out.detail
        down = nova.reset()
        out = await plan(Step(note.id, 2, "plan", SOURCE, StepState.RUNNING, {}), context())
        assert out.state is StepState.DONE, out.detail
        planned = nova.reset()
        steps = [
            Step(note.id, 3 + i, n.kind, n.subject, StepState.RUNNING, dict(n.detail))
            for i, n in enumerate(out.new_steps)
        ]
        assert len(steps) == VMS
        issuing: list[Counter[str]] = []
        policy_before = len(asked)
        while any(not s.detail.get("issued") for s in steps):
            assert len(issuing) < 5, "the evacuations were never all asked"
            ctx = context()
            outcomes: Sequence[Outcome] = await asyncio.gather(*(evacuate(s, ctx) for s in steps))
            steps = _next(steps, outcomes)
            issuing.append(nova.reset())
        nova.settle()
        clock.advance_to(clock.now() + RecoverySettings().verify_poll_interval_s)
        ctx = context()
        outcomes = await asyncio.gather(*(evacuate(s, ctx) for s in steps))
        assert all(o.state is StepState.DONE for o in outcomes), [o.detail for o in outcomes]
        verified = nova.reset()
    finally:
        cloud.close()
    return nova, Phases(
        down, planned, issuing, verified, len(asked) - policy_before, sum(fencer.readings.values())
    )


def _next(steps: list[Step], outcomes: Sequence[Outcome]) -> list[Step]:
    for out in outcomes:
        assert out.state is not StepState.FAILED, out.detail
    return [Step(s.notification_id, s.seq, s.kind, s.subject, StepState.RUNNING, dict(o.detail))
            for s, o in zip(steps, outcomes, strict=True)]  # fmt: skip


def _total(counters: Sequence[Counter[str]]) -> Counter[str]:
    return sum(counters, Counter())


def _judge(nova: CountingNova) -> None:
    for s in nova.vms.values():  # Nova's own records: each VM evacuated once, off the failed host
        if s.name.startswith("vm-"):
            assert s.actions == ["evacuate"] and s.host != SOURCE, (s.name, s.actions, s.host)
            assert (s.vm_state, s.task_state) == ("active", None)
    # The plan still knew each VM's anti-affinity group (its list no longer carries them): none joined
    # the group's other member.
    by_name = {s.name: s for s in nova.vms.values()}
    assert by_name["vm-0"].host != by_name["peer-0"].host == "compute-2"
    assert by_name["vm-1"].host != by_name["peer-1"].host == "compute-3"


async def test_the_force_down_step_puts_on_the_service_it_has_just_listed(store: Store) -> None:
    nova, phases = await _recover(store)
    assert nova.services[SOURCE]["forced_down"] is True and nova.services[SOURCE]["status"] == "disabled"
    # One list of the services (whether haven disabled it before), then the two PUTs by its id:
    # before, each PUT first listed the host's service again for its id (3 service lists).
    assert phases.force_down["GET /os-services"] == 1, phases.force_down
    assert phases.force_down["PUT /os-services/{id}"] == 2, phases.force_down


async def test_a_service_registered_again_under_a_new_id_is_still_forced_down() -> None:
    nova = _world()
    cloud = OpenStackCloud(cast(NovaApi, nova), CallPool(2))
    try:
        await cloud.list_hosts()  # haven learns each service's id
        nova.services[SOURCE]["id"] = "a-new-uuid"  # deleted and registered again meanwhile
        nova.reset()
        await cloud.force_down(SOURCE, True)
        await cloud.disable_service(SOURCE, "haven: test")
    finally:
        cloud.close()
    assert nova.services[SOURCE]["forced_down"] is True and nova.services[SOURCE]["status"] == "disabled"
    assert nova.reset() == Counter({"PUT /os-services/{id}": 3, "GET /os-services": 1})  # 404, read, PUT


async def test_the_plan_reads_server_groups_and_the_failed_hosts_servers_once(store: Store) -> None:
    nova, phases = await _recover(store)
    _judge(nova)
    print("force down:", dict(phases.force_down), "\nplan:", dict(phases.plan))
    assert phases.plan[GROUPS] == 1, phases.plan  # before: 2 (with the failed host's list, then alone)
    assert phases.plan[LISTS] == 1, phases.plan  # the failed host's servers
    assert phases.plan["GET /servers/{id}"] == 2, phases.plan  # the two group peers, where they run


async def test_issuing_and_verifying_read_no_server_group(store: Store) -> None:
    nova, phases = await _recover(store)
    _judge(nova)
    issued = _total(phases.issuing)
    print("issuing:", [dict(c) for c in phases.issuing], "\nverify:", dict(phases.verify))
    assert issued[GROUPS] == 0, issued  # before: one per host listed (the source: 1)
    assert phases.verify[GROUPS] == 0, phases.verify  # before: one per host listed (the targets: 2)
    # Each batch still lists each host it needs once (the source; the two targets), never per server.
    for batch in phases.issuing:
        assert batch[LISTS] == 1 and batch["GET /servers/{id}"] == 0, batch
    assert phases.verify[LISTS] == 2 and phases.verify["GET /servers/{id}"] == 0, phases.verify


async def test_the_checks_before_each_evacuate_call_are_all_still_made(store: Store) -> None:
    # Fewer reads, not fewer checks: every call is preceded by the policy's answer, the fenced host's
    # BMC (once per batch) and that server's own evacuate-action count, read in the same batch.
    nova, phases = await _recover(store)
    _judge(nova)
    issued = _total(phases.issuing)
    assert issued[EVACUATE] == VMS
    assert issued[COUNTS] == VMS  # one count per server, before its call
    assert phases.policy_asked == VMS
    assert phases.bmc_readings == len(phases.issuing)  # one BMC reading per issuing batch
    calls = [i for i, what in enumerate(nova.log) if what == EVACUATE]
    counts = [i for i, what in enumerate(nova.log) if what == COUNTS]
    assert max(counts) < max(calls) and min(counts) < min(calls)
