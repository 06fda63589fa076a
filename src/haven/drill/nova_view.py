"""The drill judge's look at Nova: when a VM counts as recovered, the wait for it, and Nova's view of a VM
that did not recover.

Called by haven.drill.cloud_drill (the wait, once haven's recovery is over) and
haven.drill.cloud_judge (the counting and the report). The rule is haven's own verification
rule (haven.recovery.evacuate_step), restated here from Nova's fields so the judge does not
take haven's word for it: ACTIVE, no task in progress, powered on (running), on a host other
than the failed one.

Why the judge waits (issue 17): one lab drill in seven ended ``partial`` although haven had
verified all 20 VMs. The drill took its only look at Nova in the same poll that found haven's
recovery over, and that list call was *sent before* the check: under load a server list takes
seconds, so it could return Nova's state from before haven's last verification (a VM still
rebuilding) and the judge counted it lost. Now the judge reads Nova again, each read started
after haven's recovery ended, until every VM is recovered or ``judge_wait_s`` passes, and says
for each VM not recovered what Nova shows of it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from haven.domain.cloud import PowerState, Server, TaskState, VmState
from haven.domain.ids import HostName, ServerId

JUDGE_WAIT_S = 60.0  # after haven's recovery is over, for Nova to show every HA VM recovered


def recovered_elsewhere(server: Server, failed: HostName) -> bool:
    """Nova shows the VM recovered: ACTIVE, no task in progress, running, on another (named) host."""
    return (
        server.vm_state is VmState.ACTIVE
        and server.task_state is TaskState.NONE
        and server.power_state is PowerState.RUNNING
        and server.host not in ("", failed)
    )


def why_not(server: Server | None, failed: HostName) -> str:
    """What keeps a VM from counting as recovered, in Nova's words ("" if nothing does)."""
    if server is None:
        return "not in Nova's server list"
    reasons = []
    if server.vm_state is not VmState.ACTIVE:
        reasons.append(f"vm_state {server.vm_state.value}")
    if server.task_state is not TaskState.NONE:
        reasons.append(f"task in progress ({server.task_state.value})")
    if server.power_state is not PowerState.RUNNING:
        reasons.append(f"power_state {server.power_state.value}")
    if server.host in ("", failed):
        reasons.append(f"on the failed host {failed}" if server.host else "on no host")
    if server.fault:
        reasons.append(f"Nova's fault: {server.fault}")
    return "; ".join(reasons)


def nova_view(server: Server) -> dict[str, Any]:
    """One server as Nova lists it, every field the verdict rests on."""
    return {
        "id": server.id,
        "name": server.name,
        "host": server.host,
        "vm_state": server.vm_state.value,
        "task_state": server.task_state.value or None,
        "power_state": server.power_state.value,
        "fault": server.fault or None,
    }


def not_recovered(
    affected: Sequence[ServerId],
    servers: Mapping[ServerId, Server],
    failed: HostName,
    verified: Collection[ServerId],
) -> list[dict[str, Any]]:
    """Every affected VM Nova does not show recovered: Nova's view, why, and whether haven verified it."""
    out = []
    for sid in affected:
        server = servers.get(sid)
        if server is not None and recovered_elsewhere(server, failed):
            continue
        view = nova_view(server) if server is not None else {"id": sid}
        out.append({**view, "why": why_not(server, failed), "verified_by_haven": sid in verified})
    return out


@dataclass
class NovaLook:
    """The judge's reads of Nova once haven's recovery was over (epoch seconds)."""

    over_at: float  # when the drill saw haven's recovery over
    timeout_s: float  # the judge's stated wait for Nova from then
    first: dict[ServerId, Server] | None = None  # the first read started after ``over_at``
    last: dict[ServerId, Server] | None = None  # the last read (all recovered, or at the timeout)
    last_read_at: float | None = None  # when the last read was sent
    all_recovered_at: float | None = None  # when a read (answered then) showed every VM recovered
    ended_at: float | None = None  # when the judge stopped reading
    reads: int = 0


async def look_until_recovered(
    read: Callable[[], Awaitable[dict[ServerId, Server]]],
    poll: Callable[[Callable[[], Awaitable[bool]], float], Awaitable[bool]],
    affected: Sequence[ServerId],
    failed: HostName,
    timeout_s: float,
) -> NovaLook:
    """Read Nova (each read sent after this call began) until every affected VM is recovered, or
    ``timeout_s``; ``poll(check, timeout_s)`` repeats ``check`` (haven.drill.cloud_prep.until)."""
    look = NovaLook(over_at=time.time(), timeout_s=timeout_s)

    async def settled() -> bool:
        sent = time.time()
        servers = await read()
        look.reads += 1
        look.last, look.last_read_at = servers, sent
        if look.first is None:
            look.first = servers
        ok = all(s in servers and recovered_elsewhere(servers[s], failed) for s in affected)
        if ok:
            look.all_recovered_at = time.time()
        return ok

    await poll(settled, timeout_s)
    look.ended_at = time.time()
    return look
