"""masakari-monitors' real process monitor (PyPI masakari-monitors 22.0.0) reports to haven.

The monitor logs in to the test Keystone, finds haven as ``instance-ha`` in the catalog,
watches a dummy process the test starts, fails to restart it once it is killed (its
restart command is ``false``, with no retries) and posts a ``PROCESS`` notification.
The monitor names the host by ``socket.gethostname()`` (not its ``hostname`` option), so
it runs in its own UTS namespace whose host name is one of the simulated cloud's hosts,
as it would run on that compute node. haven must answer the notification by disabling
that host's compute service and finishing the notification.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from clients.conftest import HavenServer
from haven.lab.toolenv import ToolInstallError, ensure_tool_env
from servers.keystone import KeystoneLab
from servers.process import ServerProcess, require

pytestmark = [pytest.mark.keystone, pytest.mark.slow]

DEADLINE_S = 60.0

MONITOR_CONF = """\
[DEFAULT]
debug = true
[api]
region = {region}
api_interface = public
auth_type = password
auth_url = {auth_url}
username = {username}
password = {password}
project_name = {project}
user_domain_name = Default
project_domain_name = Default
[process]
check_interval = 1
restart_retries = 0
restart_interval = 1
api_retry_max = 3
api_retry_interval = 1
process_list_path = {process_list}
"""

PROCESS_LIST = """\
- process_name: {name}
  start_command: "true"
  pre_start_command: ""
  post_start_command: ""
  restart_command: "false"
  pre_restart_command: ""
  post_restart_command: ""
  run_as_root: false
"""


def monitor_venv() -> Path:
    try:
        return ensure_tool_env("masakari-monitors")
    except ToolInstallError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so masakari-monitors must install: {exc}", pytrace=False)
        pytest.skip(f"masakari-monitors could not be installed: {exc}")


def a_compute_host(api: httpx.Client) -> str:
    segment = api.get("/v1/segments").json()["segments"][0]
    hosts = api.get(f"/v1/segments/{segment['uuid']}/hosts").json()["hosts"]
    return str(next(h["name"] for h in hosts if not h["reserved"]))


def test_the_process_monitor_reports_a_dead_process_that_haven_handles(
    keystone: KeystoneLab, haven_keystone: HavenServer, tmp_path: Path
) -> None:
    unshare = require(shutil.which("unshare") or "/usr/bin/unshare", "util-linux")
    venv = monitor_venv()
    started = time.monotonic()
    operator = keystone.provisioner.account("masakari-monitor", "service", ("admin",))
    api = httpx.Client(
        base_url=haven_keystone.url, headers={"X-Auth-Token": keystone.admin.token()}, timeout=30
    )
    host = a_compute_host(api)
    name = f"haven-dummy-{uuid.uuid4().hex[:10]}"  # in no path or command line but the dummy's
    (tmp_path / "process_list.yaml").write_text(PROCESS_LIST.format(name=name))
    conf = tmp_path / "processmonitor.conf"
    conf.write_text(
        MONITOR_CONF.format(
            region=keystone.server.region,
            auth_url=keystone.url,
            username=operator.username,
            password=operator.password,
            project=operator.project_name,
            process_list=tmp_path / "process_list.yaml",
        )
    )
    dummy = ServerProcess(
        "dummy", [sys.executable, "-c", "import time; time.sleep(600)", name], tmp_path / "d.log"
    )
    monitor = ServerProcess(
        "masakari-processmonitor",
        [str(unshare), "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host,
         str(venv / "bin" / "masakari-processmonitor"), "--config-file", str(conf)],
        tmp_path / "monitor.log",
    )  # fmt: skip
    dummy.start()
    monitor.start()
    try:
        # The monitor has run its start commands and checks the process list every second.
        monitor.wait_until(
            lambda: f"Process '{name}' is found" in monitor.log.read_text(), 30, "a first check"
        )
        dummy.signal(signal.SIGKILL)
        assert dummy.process is not None
        dummy.process.wait(5)
        killed = time.monotonic()
        notification = wait_for_process_notification(api, monitor, host, name)
        after_kill = time.monotonic() - killed
        shown = api.get(
            f"/v1/notifications/{notification['notification_uuid']}",
            headers={"OpenStack-API-Version": "instance-ha 1.1"},
        ).json()["notification"]
    finally:
        monitor.stop()
        dummy.stop()
        api.close()
    elapsed = time.monotonic() - started
    print(f"monitor test: notification handled {after_kill:.1f} s after the kill; {elapsed:.1f} s in all")
    assert notification["type"] == "PROCESS"
    assert notification["payload"] == {"event": "STOPPED", "process_name": name}
    assert notification["status"] == "finished", notification
    tasks = [(task["name"], task["state"]) for task in shown["recovery_workflow_details"]]
    assert tasks == [("DisableComputeNodeTask", "SUCCESS")]  # the host's service was disabled
    assert elapsed < DEADLINE_S


def wait_for_process_notification(
    api: httpx.Client, monitor: ServerProcess, host: str, name: str
) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for found in api.get("/v1/notifications").json()["notifications"]:
            ours = found["hostname"] == host and found["payload"].get("process_name") == name
            if ours and found["status"] in ("finished", "failed", "ignored"):
                return dict(found)
        time.sleep(0.2)
    raise AssertionError(
        f"no handled PROCESS notification for {name} on {host}; monitor log:\n{monitor.log_tail()}"
    )
