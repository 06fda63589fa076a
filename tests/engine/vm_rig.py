"""A simulated cloud, a store and an engine with chosen settings, plus every host's agent, in virtual time.

Shared by the VM recovery engine tests (test_vm_recovery.py, test_vm_resume.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from haven.cloud.sim import CloudSpec, SimCloud, SimFencer, build_cloud
from haven.domain.clock import VirtualClock
from haven.domain.events import EngineEvent
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import Notification, Step
from haven.domain.settings import EngineSettings, RecoverySettings
from haven.drill.run import SimAgents
from haven.recovery.executor import CommitHook, no_hook
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.runner import run_until
from haven.store import Store

SPEC = CloudSpec(hosts=4, vms=16, zones=1, ha_fraction=0.5, seed=3)


@dataclass
class VmRig:
    cloud: SimCloud
    clock: VirtualClock
    url: str
    settings: EngineSettings
    store: Store
    engine: Engine
    events: list[EngineEvent] = field(default_factory=list)

    @classmethod
    async def build(
        cls, url: str, recovery: RecoverySettings | None = None, template: Path | None = None
    ) -> VmRig:
        """``template``: a store file already holding the segments, copied to ``url``'s file (faster)."""
        clock = VirtualClock()
        cloud, _ = build_cloud(SPEC, clock)
        settings = EngineSettings(recovery=recovery or RecoverySettings())
        if template is not None:
            shutil.copyfile(template, url.removeprefix("sqlite:///"))
        store = Store.open(url)
        if template is None:
            segments_per_zone(store, await cloud.list_hosts())
        rig = cls(cloud, clock, url, settings, store, None)  # type: ignore[arg-type]
        rig.engine = rig.new_engine()
        rig.engine.start()
        await rig.run_for(5.0)
        return rig

    def new_engine(self, on_commit: CommitHook = no_hook, cloud: object | None = None) -> Engine:
        used = cloud if cloud is not None else self.cloud
        return Engine(
            used,  # type: ignore[arg-type]
            used,  # type: ignore[arg-type]
            SimFencer(self.cloud),
            self.store,
            self.clock,
            self.settings,
            on_event=self.events.append,
            on_commit=on_commit,
        )

    def restart(self) -> int:
        """A new engine process on the same store (opened again) and the same cloud."""
        self.store.close()
        self.store = Store.open(self.url)
        self.engine = self.new_engine()
        return self.engine.start()

    async def run_for(self, seconds: float) -> None:
        await self.run_until(lambda: False, seconds)

    async def run_until(self, done: Callable[[], bool], limit_s: float = 600.0) -> None:
        await run_until(
            self.engine,
            self.clock,
            self.clock.now() + limit_s,
            done=done,
            wake_sources=[self.cloud.next_event_time],
            before_tick=SimAgents(self.cloud, self.engine),
        )

    def ha_vm(self, index: int = 0) -> ServerId:
        """A running HA VM (deterministic for the spec)."""
        found = sorted(
            s.id
            for h in self.cloud.host_names()
            for s in self.cloud.servers_on(h)
            if s.metadata.get("HA_Enabled") == "True"
        )
        return found[index]

    def plain_vm(self) -> ServerId:
        return sorted(
            s.id
            for h in self.cloud.host_names()
            for s in self.cloud.servers_on(h)
            if "HA_Enabled" not in s.metadata
        )[0]

    def host_of(self, vm: ServerId) -> HostName:
        return self.cloud.sim_server(vm).host

    def notifications_of(self, vm: ServerId) -> list[Notification]:
        """Newest first."""
        return [n for n in self.store.list_notifications() if n.payload.get("instance_uuid") == vm]

    def steps(self, notification: Notification) -> list[tuple[str, str]]:
        return [(s.kind, s.state.value) for s in self.store.list_steps(notification.id)]

    def all_steps(self, notification: Notification) -> list[Step]:
        return self.store.list_steps(notification.id)

    def actions(self, vm: ServerId) -> list[str]:
        return [a.action for a in self.cloud.vm_actions if a.server_id == vm]

    def settled(self) -> bool:
        return not self.engine.open_notifications()

    def close(self) -> None:
        self.store.close()


async def make_template(folder: Path) -> Path:
    """A store file with the segments of SPEC's cloud, for VmRig.build to copy."""
    path = folder / "template.db"
    cloud, _ = build_cloud(SPEC, VirtualClock())
    with Store.open(f"sqlite:///{path}") as store:
        segments_per_zone(store, await cloud.list_hosts())
    return path


MakeRig = Callable[..., Awaitable[VmRig]]  # the make_rig fixture (conftest.py): recovery settings -> a rig
