"""The lab's files and small admin calls: clouds.yaml, haven.toml, the hardware plan, Nova readiness.

Who calls it: haven.lab.lab (``haven lab up`` / ``status``). Files that hold passwords
are created private (0600) before anything is written to them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from keystoneauth1 import exceptions as ks_exceptions

from haven.lab.bmc import BmcInfo
from haven.lab.keystone import REGION, Account
from haven.lab.nova import compute_argv
from haven.lab.process import LabServiceError

COMPUTE_MICROVERSION = "2.53"  # service ids are UUIDs from 2.53; far below 2.95 (evacuate semantics)


def private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text + ("" if text.endswith("\n") else "\n"))
    return path


def haven_python(module: str) -> list[str]:
    """How to run one of haven's lab modules with the Python haven itself runs on."""
    return [sys.executable, "-m", module]


def hardware_plan(
    folder: Path, nova_venv: Path, bmcs: Sequence[BmcInfo], agents: Mapping[str, object] | None = None
) -> Path:
    """The JSON that haven.lab.hardware reads: each host's BMC, how to run its nova-compute and agent."""
    own = folder / "hardware"
    own.mkdir(parents=True, exist_ok=True)
    computes = [
        {
            "bmc": {"host": b.host, "url": b.url, "username": b.username, "system_id": b.system_id},
            "argv": compute_argv(nova_venv, folder / "nova", b.host),
            "log": str(folder / "nova" / "computes" / b.host / "nova-compute.log"),
            "agent": (agents or {}).get(b.host),
        }
        for b in bmcs
    ]
    plan = {"password_file": str(folder / "bmc-password"), "status_file": str(own / "status.json"),
            "computes": computes}  # fmt: skip
    path = own / "plan.json"
    path.write_text(json.dumps(plan, indent=2) + "\n")
    return path


def compute_pids(folder: Path, part: str = "computes") -> dict[str, int | None]:
    """Each host's nova-compute pid (``part="agents"``: haven agent pid) as the power wiring last wrote it.

    None: not running (powered off, or held down).
    """
    try:
        pids: dict[str, int | None] = json.loads((folder / "hardware" / "status.json").read_text())[part]
        return pids
    except (OSError, ValueError, KeyError):
        return {}


def write_clouds_yaml(folder: Path, admin: Account) -> Path:
    # JSON is YAML: no YAML library needed to write it.
    cloud = {
        "auth": {
            "auth_url": admin.auth_url, "username": admin.username, "password": admin.password,
            "project_name": admin.project_name,
            "user_domain_name": "Default", "project_domain_name": "Default",
        },
        "region_name": REGION,
        "identity_api_version": 3,
        "interface": "public",
    }  # fmt: skip
    return private(folder / "clouds.yaml", json.dumps({"clouds": {"lab": cloud}}, indent=2))


def write_haven_toml(
    folder: Path, bmcs: Sequence[BmcInfo], password: str, urls: Mapping[str, str], token_file: Path
) -> Path:
    """haven's config for the lab: its database, API bind and token, its etcd, fencing per host."""
    lines = [
        "# haven's config for the lab (written by `haven lab up`).",
        "# The OpenStack cloud is `lab` in clouds.yaml next to this file (OS_CLIENT_CONFIG_FILE).",
        "[database]",
        f'url = "sqlite:///{folder / "haven.db"}"',
        "[api]  # the lab's haven agents report to this address, with this token",
        f'bind = "{urls["haven"].removeprefix("http://")}"',
        f'token_file = "{token_file}"',
        "[coordination]  # the lab's etcd: the agents' heartbeats (and leader election)",
        f'url = "{urls["etcd"]}"',
        "[detection]",
        "nova_report_interval_s = 2.0  # the lab's nova-computes report every 2 s",
        "heartbeat_interval_s = 0.5  # the lab's agents refresh their 2 s leases every 0.5 s",
        "grace_s = 1.5  # dead as the lease vanishes (its last beat then 1.5 s old) and the BMC says off",
        "[recovery]  # the lab's tests see hosts back in service without an operator",
        'return_to_service = "automatic"',
        "[liveness]",
        "process_grace_s = 30.0  # a lab nova-compute reports within about 10 s of its start",
        "[segments]  # the lab's drills and tests find a segment per zone at the first start",
        'bootstrap = "per-zone"',
        "[fencing]",
        'default_driver = "none"',
    ]
    for info in bmcs:
        lines += [
            "[[fencing.hosts]]",
            f'name = "{info.host}"',
            'driver = "redfish"',
            f'address = "{info.url}"',
            f'username = "{info.username}"',
            f'password = "{password}"',
            f'system_id = "{info.system_id}"',
        ]
    return private(folder / "haven.toml", "\n".join(lines))


class NovaAdmin:
    """The few admin calls ``up`` makes to Nova while it waits for the computes."""

    def __init__(self, admin: Account, url: str) -> None:
        self._session = admin.session(timeout_s=30)
        self._url = url
        self._headers = {"OpenStack-API-Version": f"compute {COMPUTE_MICROVERSION}"}

    def get(self, path: str) -> dict[str, Any]:
        answer = self._session.get(self._url + path, headers=self._headers, raise_exc=False)
        if answer.status_code != 200:
            raise LabServiceError(f"Nova GET {path}: {answer.status_code} {answer.text[:300]}")
        result: dict[str, Any] = answer.json()
        return result

    def wait_computes_up(self, hosts: Sequence[str], timeout_s: float) -> None:
        self._wait(lambda: {s["host"] for s in self.get("/os-services?binary=nova-compute")["services"]
                            if s["state"] == "up"}, hosts, timeout_s, "nova-compute services up")  # fmt: skip

    def wait_service_up(self, binary: str, timeout_s: float) -> None:
        """Until some ``binary`` service (nova-scheduler, nova-conductor) reports up to Nova."""
        self._wait(lambda: {s["binary"] for s in self.get(f"/os-services?binary={binary}")["services"]
                            if s["state"] == "up"}, [binary], timeout_s, f"{binary} up")  # fmt: skip

    def wait_hypervisors(self, hosts: Sequence[str], timeout_s: float) -> None:
        self._wait(lambda: {h["hypervisor_hostname"] for h in self.get("/os-hypervisors")["hypervisors"]},
                   hosts, timeout_s, "hypervisors")  # fmt: skip

    def ensure_flavor(self, name: str) -> str:
        flavors = self.get("/flavors")["flavors"]
        if any(f["name"] == name for f in flavors):
            return name
        body = {"flavor": {"name": name, "ram": 64, "vcpus": 1, "disk": 1}}
        answer = self._session.post(self._url + "/flavors", json=body, headers=self._headers, raise_exc=False)
        if answer.status_code != 200:
            raise LabServiceError(f"Nova: creating flavor {name}: {answer.status_code} {answer.text[:300]}")
        return name

    def _wait(self, seen: Any, hosts: Sequence[str], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        found: set[str] = set()
        unanswered = ""
        while time.monotonic() < deadline:
            try:
                found = seen()
            except ks_exceptions.RetriableConnectionFailure as error:
                # Keystone or nova-api not answering yet (a connect timeout on a loaded machine): not up
                # yet, the same as a service not listed yet; the deadline still bounds the wait.
                unanswered = f"; the last call got no answer: {type(error).__name__}: {error}"
                time.sleep(0.5)
                continue
            unanswered = ""
            if set(hosts) <= found:
                return
            time.sleep(0.5)
        raise LabServiceError(
            f"Nova: waited {timeout_s} s for {what} of {sorted(hosts)}; saw {sorted(found)}{unanswered}"
        )
