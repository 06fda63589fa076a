"""A VM recovery survives the engine dying at any step boundary: a new engine finishes it, nothing twice.

The pattern of test_resume.py, for the VM workflow (check_vm, then stop/start/confirm or reboot/confirm):
engine #1 dies at the k-th commit boundary (``Crash`` from the executor's on_commit hook, a "before-*"
boundary losing the commit, an "after-*" one keeping it), or its task is cancelled at the n-th suspension
point around a cloud call; engine #2 opens the store again and must finish the recovery with the VM
running, every action asked exactly as often as in an undisturbed run, and one finished notification.
The "before-outcome" crashes are the ones that matter: the action was asked, the step does not know it,
and only Nova's instance actions (re-read by the step) keep it from being asked again.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from test_resume import Crash, Interrupter, YieldingCloud, crash_on_call
from vm_rig import VmRig, make_template

from haven.domain.cloud import ServerAction
from haven.domain.ids import ServerId
from haven.domain.incidents import NotificationStatus, StepState
from haven.domain.settings import RecoverySettings
from haven.recovery.executor import CommitHook


def crash(rig: VmRig, vm: ServerId) -> None:
    rig.cloud.crash_guest(vm)


def crash_shown_as_error(rig: VmRig, vm: ServerId) -> None:
    rig.cloud.crash_guest(vm, shows_error=True)


def watchdog(rig: VmRig, vm: ServerId) -> None:
    rig.cloud.fire_watchdog(vm)


# name: (fault, [recovery] settings, the actions an undisturbed recovery asks)
CASES: dict[str, tuple[Callable[[VmRig, ServerId], None], RecoverySettings, list[str]]] = {
    "crash": (crash, RecoverySettings(), ["start"]),
    "crash-error": (crash_shown_as_error, RecoverySettings(), ["stop", "start"]),
    "crash-hard-reboot": (
        crash_shown_as_error,
        RecoverySettings(vm_restart_method="hard_reboot"),
        ["reboot"],
    ),
    "watchdog": (watchdog, RecoverySettings(), ["reboot"]),
}
GIVE_UP_S = 120.0


async def first_engine(url: str, case: str, on_commit: CommitHook, template: Path) -> tuple[VmRig, ServerId]:
    fault, settings, _ = CASES[case]
    rig = await VmRig.build(url, settings, template)
    rig.engine = rig.new_engine(on_commit=on_commit)
    rig.engine.start()
    vm = rig.ha_vm()
    fault(rig, vm)
    return rig, vm


async def finish_and_judge(rig: VmRig, vm: ServerId, case: str) -> list[str]:
    rig.restart()
    await rig.run_until(lambda: bool(rig.notifications_of(vm)) and rig.settled(), GIVE_UP_S)
    await rig.run_for(20.0)  # nothing more may happen
    found = []
    expected = CASES[case][2]
    if rig.actions(vm) != expected:
        found.append(f"actions {rig.actions(vm)}, expected {expected}")
    if not rig.cloud.guest_healthy(vm):
        found.append("the VM does not run")
    notes = rig.notifications_of(vm)
    if [n.status for n in notes] != [NotificationStatus.FINISHED]:
        found.append(f"notifications: {[n.status.value for n in notes]}")
    for n in notes:
        bad = [(s.kind, s.state.value) for s in rig.all_steps(n) if s.state is not StepState.DONE]
        if bad:
            found.append(f"steps not done: {bad}")
    return found


@pytest.mark.parametrize("case", list(CASES))
async def test_a_vm_recovery_finishes_after_a_crash_at_every_commit_boundary(
    tmp_path: Path, case: str
) -> None:
    urls = (f"sqlite:///{tmp_path}/haven-{n}.db" for n in itertools.count())
    template = await make_template(tmp_path)
    calls: list[str] = []
    rig, vm = await first_engine(next(urls), case, calls.append, template)
    await rig.run_until(lambda: bool(rig.notifications_of(vm)) and rig.settled(), GIVE_UP_S)
    assert await finish_and_judge(rig, vm, case) == []
    rig.close()
    total = len(calls)
    assert total >= 12 and {"before-intent", "before-outcome", "after-outcome", "after-finish"} <= set(calls)

    failures: dict[str, list[str]] = {}
    for k in range(1, total + 1):
        seen: list[str] = []
        rig, vm = await first_engine(next(urls), case, crash_on_call(k, seen), template)
        with pytest.raises(Crash):
            await rig.run_until(lambda: bool(rig.notifications_of(vm)) and rig.settled(), GIVE_UP_S)  # noqa: B023
        assert seen == calls[:k]
        found = await finish_and_judge(rig, vm, case)
        rig.close()
        if found:
            failures[f"crash at call {k} ({calls[k - 1]})"] = found
    assert failures == {}


class YieldingVmCloud(YieldingCloud):
    """test_resume's yielding cloud, with the guest actions too."""

    async def stop_server(self, server_id: ServerId) -> None:
        await self._around(lambda: self._cloud.stop_server(server_id))

    async def start_server(self, server_id: ServerId) -> None:
        await self._around(lambda: self._cloud.start_server(server_id))

    async def reboot_server(self, server_id: ServerId) -> None:
        await self._around(lambda: self._cloud.reboot_server(server_id))

    async def server_actions(self, server_id: ServerId, since: float) -> Sequence[ServerAction]:
        return await self._around(lambda: self._cloud.server_actions(server_id, since))


async def first_engine_cancelled(
    url: str, case: str, stop: Interrupter, template: Path
) -> tuple[VmRig, ServerId, bool]:
    fault, settings, _ = CASES[case]
    rig = await VmRig.build(url, settings, template)
    rig.engine = rig.new_engine(cloud=YieldingVmCloud(rig.cloud, stop))
    rig.engine.start()
    vm = rig.ha_vm()
    fault(rig, vm)
    stop.armed = True
    stop.task = asyncio.create_task(
        rig.run_until(lambda: bool(rig.notifications_of(vm)) and rig.settled(), GIVE_UP_S)
    )
    await asyncio.wait([stop.task])
    if not stop.task.cancelled():
        stop.task.result()
    return rig, vm, stop.task.cancelled()


@pytest.mark.parametrize("case", ["crash-error"])  # stop, start, confirm: the longest; enough
async def test_a_vm_recovery_finishes_after_cancellation_at_every_suspension_point(
    tmp_path: Path, case: str
) -> None:
    urls = (f"sqlite:///{tmp_path}/haven-{n}.db" for n in itertools.count())
    template = await make_template(tmp_path)
    counting = Interrupter()
    rig, vm, cancelled = await first_engine_cancelled(next(urls), case, counting, template)
    assert not cancelled
    assert await finish_and_judge(rig, vm, case) == []
    rig.close()
    total = counting.points
    assert total >= 10

    failures: dict[int, list[str]] = {}
    for n in range(1, total + 1):
        rig, vm, cancelled = await first_engine_cancelled(
            next(urls), case, Interrupter(cancel_at=n), template
        )
        assert cancelled, f"not cancelled at point {n}"
        found = await finish_and_judge(rig, vm, case)
        rig.close()
        if found:
            failures[n] = found
    assert failures == {}
