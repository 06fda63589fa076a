"""A stand-in for the OpenStack driver's HTTP layer (NovaApi) that keeps a tiny Nova and counts requests.

Used by tests/cloud/test_openstack_recovery_requests.py to count what one host recovery asks of
nova-api, phase by phase. Each method of NovaApi is one HTTP request (a list that Nova would page
counts one request per page, as NovaApi's own paging does); the stand-in records it as
``METHOD /path`` (queries apart) and answers from its state: compute services, hypervisors,
servers (with embedded flavor), server groups and instance actions, as Nova does at the
microversions NovaApi pins. An evacuate moves the server to its target with task ``rebuilding``
and records an ``evacuate`` action; ``settle()`` ends every rebuild (ACTIVE, no task). It is no
stand-in for Nova's behaviour beyond that: the lab drill runs the same recovery on a real Nova.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from openstack import exceptions as os_exc

from haven.cloud.openstack.nova import PAGE, Stamp

Json = dict[str, Any]


@dataclass
class FakeServer:
    id: str
    name: str
    host: str
    group: str | None = None
    vm_state: str = "active"
    task_state: str | None = None
    actions: list[str] = field(default_factory=list)

    def body(self) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "OS-EXT-SRV-ATTR:host": self.host,
            "OS-EXT-STS:vm_state": self.vm_state,
            "OS-EXT-STS:power_state": 1 if self.vm_state == "active" else 4,
            "OS-EXT-STS:task_state": self.task_state,
            "flavor": {"original_name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1, "extra_specs": {}},
            "metadata": {"HA_Enabled": "True"},
        }


class CountingNova:
    """NovaApi's methods over a small in-memory Nova; ``requests`` counts what was asked."""

    def __init__(self, hosts: int = 3) -> None:
        self.requests: Counter[str] = Counter()
        self.log: list[str] = []
        self._lock = threading.Lock()
        self.services: dict[str, Json] = {
            f"compute-{i}": {
                "id": str(uuid.UUID(int=i)),
                "binary": "nova-compute",
                "host": f"compute-{i}",
                "zone": "nova",
                "status": "enabled",
                "state": "up",
                "forced_down": False,
                "disabled_reason": None,
                "updated_at": "2026-12-06T20:00:00.000000",
            }
            for i in range(1, hosts + 1)
        }
        self.vms: dict[str, FakeServer] = {}
        self.vm_groups: dict[str, Json] = {}

    # ---- building the world ---------------------------------------------------------------

    def boot(self, name: str, host: str, group: str | None = None) -> str:
        server_id = str(uuid.uuid5(uuid.NAMESPACE_OID, name))
        self.vms[server_id] = FakeServer(server_id, name, host, group)
        if group is not None:
            self.vm_groups.setdefault(
                group, {"id": group, "name": group, "policy": "anti-affinity", "members": []}
            )["members"].append(server_id)
        return server_id

    def settle(self) -> None:
        """Every rebuild under way ends: the server runs on its new host."""
        for s in self.vms.values():
            if s.task_state == "rebuilding":
                s.task_state, s.vm_state = None, "active"

    def reset(self) -> Counter[str]:
        """The requests counted so far, and a fresh count from now."""
        with self._lock:
            counted, self.requests = self.requests, Counter()
            return counted

    def _asked(self, what: str) -> None:
        with self._lock:
            self.requests[what] += 1
            self.log.append(what)

    # ---- NovaApi: reads -------------------------------------------------------------------

    @property
    def connection(self) -> Any:
        raise AssertionError("the recovery makes no request outside NovaApi")

    def compute_services(self, host: str | None = None) -> list[Json]:
        return self.compute_services_dated(host)[0]

    def compute_services_dated(self, host: str | None = None) -> tuple[list[Json], Stamp]:
        self._asked("GET /os-services")
        found = [dict(s) for s in self.services.values() if host is None or s["host"] == host]
        return found, Stamp(None, 0.0)

    def hypervisors(self) -> list[Json]:
        self._asked("GET /os-hypervisors/detail")
        return [
            {
                "hypervisor_hostname": name,
                "service": {"host": name},
                "vcpus": 64,
                "memory_mb": 65536,
                "local_gb": 1000,
                "vcpus_used": sum(1 for v in self.vms.values() if v.host == name),
                "memory_mb_used": 512 * sum(1 for v in self.vms.values() if v.host == name),
                "local_gb_used": sum(1 for v in self.vms.values() if v.host == name),
            }
            for name in self.services
        ]

    def aggregates(self) -> list[Json]:
        self._asked("GET /os-aggregates")
        return []

    def servers(self, host: str | None = None) -> list[Json]:
        self._asked("GET /servers/detail")
        found = [s.body() for s in self.vms.values() if host is None or s.host == host]
        assert len(found) < PAGE
        return found

    def server(self, server_id: str) -> Json:
        self._asked("GET /servers/{id}")
        s = self.vms[server_id]
        return {**s.body(), "server_groups": [s.group] if s.group else []}

    def server_groups(self) -> list[Json]:
        self._asked("GET /os-server-groups")
        return [dict(g, members=list(g["members"])) for g in self.vm_groups.values()]

    def instance_actions(self, server_id: str, changes_since: str | None) -> tuple[list[Json], Stamp]:
        self._asked("GET /servers/{id}/os-instance-actions")
        actions = self.vms[server_id].actions
        return [{"action": a, "start_time": "2026-12-06T20:00:00.000000"} for a in reversed(actions)], Stamp(
            None, 0.0
        )

    # ---- NovaApi: actions -----------------------------------------------------------------

    def update_service(self, service_id: str, body: Json) -> None:
        self._asked("PUT /os-services/{id}")
        service = next((s for s in self.services.values() if s["id"] == service_id), None)
        if service is None:
            raise os_exc.NotFoundException(f"Service {service_id} could not be found.")
        service.update(body)
        if body.get("forced_down"):
            service["state"] = "down"

    def server_action(self, server_id: str, body: Json, microversion: str = "2.1") -> None:
        self._asked(f"POST /servers/{{id}}/action {next(iter(body))}")

    def evacuate(self, server_id: str, target: str | None) -> None:
        self._asked("POST /servers/{id}/action evacuate")
        with self._lock:
            s = self.vms[server_id]
            assert s.task_state is None, f"{s.name} evacuated while {s.task_state}"
            s.actions.append("evacuate")
            s.host, s.task_state = target or "compute-2", "rebuilding"

    # ---- placement ------------------------------------------------------------------------

    def has_placement(self) -> bool:
        return False

    def resource_providers(self) -> list[Json]:
        raise AssertionError("no Placement here")

    def inventories(self, provider_uuid: str) -> Json:
        raise AssertionError("no Placement here")
