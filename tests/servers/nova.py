"""A real minimal Nova for the tests: ``haven lab`` started once per session (2 compute hosts).

``nova_lab`` (session-scoped) runs haven.lab.lab.up in a temporary folder: MariaDB,
RabbitMQ, Keystone, Placement, Glance with a tiny image, Nova's API, conductor and
scheduler, two nova-computes (fake driver, hosts ``compute-1`` and ``compute-2``), an
etcd, one ``haven agent`` per compute and one Redfish BMC per compute, wired so that
powering a BMC off SIGKILLs that host's nova-compute and agent and powering it on starts
them again (haven.lab.hardware; ``hold_compute_down`` / ``hold_agent_down`` there crash
one of them and keep it down while the BMC stays On). The first run installs the tool venvs
(minutes, then cached); a cold start takes a few minutes on 2 cores. At the end of the
session exactly the lab's processes are stopped. A missing Debian package or package
index skips locally and fails under CI.

It yields a ``NovaLab``:
- ``clouds_yaml`` (cloud ``lab``, admin credentials) and ``connect(microversion)``: a new
  ``openstack.connection.Connection`` as the lab's admin;
- ``bmcs``: host -> ``haven.lab.bmc.BmcInfo`` (url, username, system_id), with
  ``bmc_password`` (one for all BMCs) and ``haven_toml`` (a [fencing] entry per host);
- ``power_off(host)`` / ``power_on(host)``: through the host's BMC (Redfish ForceOff /
  On), returning once the host's nova-compute is dead / running again;
- ``compute_pid(host)``, ``image_id``, ``flavor``, ``folder`` (logs of every service).
Tests that change a host's state must power it back on (and unset forced-down) before
they end, so the next test finds two healthy computes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openstack
import pytest

from haven.lab import lab
from haven.lab.bmc import BmcInfo, power_state, set_power
from haven.lab.etcd import ETCD
from haven.lab.hardware import (
    AGENT,
    HANG,
    NOVA_COMPUTE,
    hang_host,
    hold_agent_down,
    hold_compute_down,
    read_holds,
)
from haven.lab.labfiles import compute_pids
from haven.lab.mariadb import MARIADBD
from haven.lab.process import LabServiceError
from haven.lab.rabbitmq import missing_binaries
from haven.lab.state import LabState
from haven.lab.toolenv import ToolInstallError

from .process import require

COMPUTES = 2


@dataclass
class NovaLab:
    folder: Path
    state: LabState
    bmc_password: str

    @property
    def clouds_yaml(self) -> Path:
        return Path(self.state.files["clouds.yaml"])

    @property
    def haven_toml(self) -> Path:
        return Path(self.state.files["haven.toml"])

    @property
    def hosts(self) -> list[str]:
        return list(self.state.computes)

    @property
    def bmcs(self) -> dict[str, BmcInfo]:
        return {host: BmcInfo(**fields) for host, fields in self.state.bmcs.items()}

    @property
    def image_id(self) -> str:
        return self.state.image_id

    @property
    def flavor(self) -> str:
        return self.state.flavor

    def connect(self, microversion: str = "2.53") -> openstack.connection.Connection:
        cloud = json.loads(self.clouds_yaml.read_text())["clouds"]["lab"]
        return openstack.connection.Connection(
            auth=cloud["auth"], region_name=cloud["region_name"], identity_api_version="3",
            compute_api_version=microversion,
        )  # fmt: skip

    def compute_pid(self, host: str) -> int | None:
        return compute_pids(self.folder).get(host)

    def power_off(self, host: str, timeout_s: float = 10.0) -> None:
        set_power(self.bmcs[host], self.bmc_password, "ForceOff")
        self._wait(lambda: self.compute_pid(host) is None, timeout_s, f"{host}'s nova-compute to die")

    def power_on(self, host: str, timeout_s: float = 10.0) -> None:
        set_power(self.bmcs[host], self.bmc_password, "On")
        self._wait(lambda: self.compute_pid(host) is not None, timeout_s, f"{host}'s nova-compute to start")

    def unwhole(self) -> list[str]:
        """What keeps the lab from being whole: a compute not up, enabled and not forced down in Nova,
        a BMC not On, a part held down. Empty when the next test finds two healthy computes."""
        found = [f"{host}: held down ({', '.join(parts)})" for host, parts in read_holds(self.folder).items()]
        for host, bmc in self.bmcs.items():
            if (power := power_state(bmc, self.bmc_password)) != "On":
                found.append(f"{host}: BMC power {power}")
        try:
            services = {s.host: s for s in self.connect().compute.services() if s.binary == "nova-compute"}
        except Exception as exc:  # Nova's API itself not answering is worth naming too
            return [*found, f"Nova's services not listed: {exc}"]
        for host in self.hosts:
            service = services.get(host)
            seen = None if service is None else (service.state, service.status, service.is_forced_down)
            if seen != ("up", "enabled", False):
                found.append(f"{host}: Nova lists (state, status, forced_down) {seen}")
        return found

    def wait_whole(self, timeout_s: float = 90.0) -> list[str]:
        """Wait for the lab to be whole again; what still is not after ``timeout_s`` (empty: whole).

        A disruption a test made on purpose may outlive it for a while: a nova-compute whose report
        went to a conductor a drill froze waits for oslo.messaging's reply timeout (60 s) before it
        reports again, so Nova lists it down meanwhile.
        """
        deadline = time.monotonic() + timeout_s
        while (found := self.unwhole()) and time.monotonic() < deadline:
            time.sleep(1.0)
        return found

    def repair(self) -> list[str]:
        """Put the lab back as the next test expects it (holds released, BMCs On, every compute
        enabled and not forced down), then wait for it to be whole; what still is not (empty: whole).

        Only after a test failed to leave it whole: that test fails, the ones after it run on a whole
        lab instead of failing in a row for a reason not theirs (CI's run of stop 27 did that).
        """
        release = {NOVA_COMPUTE: hold_compute_down, AGENT: hold_agent_down, HANG: hang_host}
        for host, parts in read_holds(self.folder).items():
            for part in parts:
                release[part](self.folder, host, False)
        for bmc in self.bmcs.values():
            if power_state(bmc, self.bmc_password) != "On":
                set_power(bmc, self.bmc_password, "On")
        try:
            conn = self.connect()
            for service in conn.compute.services():
                if service.binary != "nova-compute" or service.host not in self.hosts:
                    continue
                if service.is_forced_down:
                    conn.compute.update_service_forced_down(service, service.host, "nova-compute", False)
                if service.status != "enabled":
                    conn.compute.enable_service(service, service.host, "nova-compute")
        except Exception:  # Nova not answering: wait_whole names it
            pass
        return self.wait_whole()

    def compute_log_tail(self, host: str, lines: int = 15) -> str:
        path = self.folder / "nova" / "computes" / host / "nova-compute.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"({path}: {exc})"

    @staticmethod
    def _wait(done: object, timeout_s: float, what: str) -> None:
        assert callable(done)
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout_s} s for {what}")
            time.sleep(0.1)


_SESSION_LAB: list[NovaLab] = []  # the session's lab once started (for the check after each test)


@pytest.fixture(autouse=True)
def _nova_lab_left_whole(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test on the shared lab: wait for it to be whole, else fail that test's teardown.

    A test that leaves a compute down (powered off, held, forced down, or not reporting) would make
    the next tests fail for a reason not theirs; this names the test that did it, with what and the
    compute's log, and is the first place to look when lab tests fail in a row.
    """
    yield
    # Read after the test: a fixture may have asked for the lab by request.getfixturevalue (the contract
    # suite's ``cut``), which adds it to the names only then.
    if "nova_lab" not in request.fixturenames or not _SESSION_LAB:
        return
    lab_ = _SESSION_LAB[0]
    found = lab_.wait_whole()
    if found:
        hosts = sorted({line.split(":")[0] for line in found if line.startswith("compute-")})
        tails = "\n".join(f"--- {h}'s nova-compute.log:\n{lab_.compute_log_tail(h)}" for h in hosts)
        still = lab_.repair()
        repaired = "repaired for the next tests" if not still else "NOT repaired: " + "; ".join(still)
        pytest.fail(
            "this test left the lab not whole after 90 s:\n" + "\n".join(found) + f"\n({repaired})\n" + tails
        )


@pytest.fixture(scope="session")
def nova_lab(request: pytest.FixtureRequest) -> Iterator[NovaLab]:
    for path, package in [*missing_binaries(), (MARIADBD, "mariadb-server"), (ETCD, "etcd-server")]:
        require(path, package)
    capture = request.config.pluginmanager.getplugin("capturemanager")

    started = time.monotonic()

    def say(message: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\n[nova lab {time.monotonic() - started:5.1f}s] {message}", flush=True)

    # Its own folder, not pytest's numbered temp folders: other pytest runs on the machine rotate
    # those away, and the lab's logs must outlive a failed start (the folder is named in the error).
    folder = Path(tempfile.mkdtemp(prefix="haven-nova-lab-"))
    try:
        state = lab.up(folder, COMPUTES, progress=say)
    except ToolInstallError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the lab's tools must install: {exc}", pytrace=False)
        pytest.skip(f"the lab's tools could not be installed: {exc}")
    except LabServiceError as exc:
        pytest.fail(f"the lab did not start (logs kept in {folder}): {exc}", pytrace=False)
    started_lab = NovaLab(folder, state, (folder / "bmc-password").read_text().strip())
    _SESSION_LAB.append(started_lab)
    try:
        yield started_lab
    finally:
        _SESSION_LAB.clear()
        lab.down(folder)
    shutil.rmtree(folder, ignore_errors=True)
