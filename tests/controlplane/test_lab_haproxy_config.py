"""The HA lab's HAProxy configuration (haven.lab.ha.haproxy_config): a queue timeout on haven's backends
for each member's ``maxconn`` (half its threads, so HAProxy's check finds a free one), a
spare's members written in maintenance (a restarted HAProxy keeps them), and Debian's HAProxy accepts
the file and starts on it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from haven.controlplane.config import parse_controlplane
from haven.controlplane.drivers.haproxy import HAProxyRuntime
from haven.domain.controlplane import MemberAdmin, ProbeKind, ServiceName
from haven.lab import ha
from haven.lab.process import free_port


def _lab(folder: Path) -> ha.HaLab:
    controllers = [ha.Controller(f"ctl-{n}", f"127.0.1.{n}", folder / f"ctl-{n}", 0) for n in (1, 2)]
    ports = {api.service: 20000 + n for n, api in enumerate(ha.APIS)}
    frontends = {api.service: 21000 + n for n, api in enumerate(ha.APIS)}
    kolla = {"nova-api": 22000}
    return ha.HaLab(folder, controllers, ha.APIS, ports, frontends, kolla)


def _backends(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if not line.startswith(" "):
            current = line.split()[1] if line.startswith("backend ") else ""
            if current:
                out[current] = []
        elif current:
            out[current].append(line.strip())
    return out


def test_maxconn_is_half_the_replicas_gunicorn_threads() -> None:
    workers = int(re.search(r"^workers = (\d+)$", ha._GUNICORN, re.M).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"^threads = (\d+)$", ha._GUNICORN, re.M).group(1))  # type: ignore[union-attr]
    assert workers * threads // 2 == ha.SERVER_MAXCONN  # the other half free for checks and probes


def test_every_haven_backend_has_a_queue_timeout_and_a_server_cap(tmp_path: Path) -> None:
    backends = _backends(ha.haproxy_config(_lab(tmp_path)))
    for api in ha.APIS:
        lines = backends[api.backend]
        servers = [line for line in lines if line.startswith("server ")]
        assert len(servers) == 2
        assert all(line.endswith(f" maxconn {ha.SERVER_MAXCONN}") for line in servers), servers
        assert f"timeout queue {ha.TIMEOUT_QUEUE}" in lines
    # The Kolla anchor stays as Kolla renders it: no per-server cap.
    assert not any("maxconn" in line for line in backends["nova_api_kolla"])


@pytest.mark.skipif(not Path(ha.HAPROXY).exists(), reason="Debian's haproxy is not installed")
def test_debians_haproxy_accepts_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(ha.haproxy_config(_lab(tmp_path)))
    checked = subprocess.run(
        [ha.HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_spares_members_are_checked_as_the_others(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    spare = ha.Controller("ctl-3", "127.0.1.3", tmp_path / "ctl-3", 0, spare=True)
    added = dict(ha._spare_servers(lab, spare))
    assert all(added[api.backend].endswith(ha.SERVER_OPTIONS) for api in ha.APIS)


def _with_spare(folder: Path) -> ha.HaLab:
    lab = _lab(folder)
    lab.controllers.append(ha.Controller("ctl-3", "127.0.1.3", folder / "ctl-3", 0, spare=True))
    return lab


def test_a_spares_members_are_written_disabled_in_every_backend(tmp_path: Path) -> None:
    lab = _with_spare(tmp_path)
    backends = _backends(ha.haproxy_config(lab))
    for name, lines in backends.items():
        servers = {line.split()[1]: line for line in lines if line.startswith("server ")}
        assert set(servers) == {"ctl-1", "ctl-2", "ctl-3"}, name
        assert servers["ctl-3"].endswith(" disabled"), servers["ctl-3"]
        assert not any("disabled" in servers[h] for h in ("ctl-1", "ctl-2"))
        # The same check as the runtime ``add server`` of ``add_spare`` (``_spare_servers``).
        added = dict(ha._spare_servers(lab, lab.controllers[2]))[name]
        assert servers["ctl-3"] == f"server ctl-3 {added} disabled"
    # Without a spare, as before: no disabled member.
    assert "disabled" not in ha.haproxy_config(_lab(tmp_path))
    assert ha.write_config(lab).read_text() == ha.haproxy_config(lab)


@pytest.mark.skipif(not Path(ha.HAPROXY).exists(), reason="Debian's haproxy is not installed")
def test_a_restarted_haproxy_keeps_the_spare_in_maintenance(tmp_path: Path) -> None:
    """Debian's HAProxy started on the file (as after a restart of the lab's): ctl-3 is in every backend,
    in maintenance, the active members are not; put in as haven's driver does, it is read back ready and
    a client through the frontend gets its answer (only ctl-3 listens here)."""
    folder = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))  # a short path: the socket's is limited
    processes: list[subprocess.Popen[bytes]] = []
    try:
        lab = _with_spare(folder)
        lab.ports = {service: free_port() for service in lab.ports}
        lab.frontends = {service: free_port() for service in lab.frontends}
        lab.kolla_frontends = {"nova-api": free_port()}
        web = [sys.executable, "-m", "http.server", str(lab.ports["nova-api"]), "--bind", "127.0.1.3"]
        processes.append(subprocess.Popen([*web, "--directory", str(folder)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))  # fmt: skip
        config = ha.write_config(lab)
        processes.append(subprocess.Popen([ha.HAPROXY, "-db", "-f", str(config)], stdout=subprocess.DEVNULL))
        _until(lambda: Path(lab.haproxy_socket).exists(), "HAProxy's admin socket")
        state = ha.servers_state(lab)
        backends = {b for b, _h in state}
        assert backends == {api.backend for api in ha.APIS} | {"nova_api_kolla"}
        spare = {b for (b, h), (admin, _op) in state.items() if h == "ctl-3" and admin == "maint"}
        assert spare == backends
        assert not [k for k, (admin, _op) in state.items() if k[1] != "ctl-3" and admin == "maint"]
        url = lab.frontend_url("nova-api") + "/"
        assert httpx.get(url, timeout=5).status_code == 503  # nothing in: ctl-1 and ctl-2 do not listen
        member = asyncio.run(
            HAProxyRuntime(lab.haproxy_socket).set_member("nova_api", "ctl-3", MemberAdmin.READY)
        )
        assert member.admin is MemberAdmin.READY  # before: read as maint (the config's CMAINT bit stays)
        _until(lambda: httpx.get(url, timeout=5).status_code == 200, "an answer from ctl-3 through HAProxy")
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _until(done: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.1)


def test_haven_probes_nova_api_deep_with_the_admins_token_from_keystones_frontend(tmp_path: Path) -> None:
    cluster = _lab(tmp_path / "ha")
    section = tomllib.loads(ha.controlplane_toml(cluster))["controlplane"]
    specs = {s.name: s for s in parse_controlplane(section, "the HA lab").services}
    deep = specs[ServiceName("nova-api")].probe
    assert deep is not None and deep.kind is ProbeKind.NOVA_SERVICES
    assert deep.auth_url == f"{cluster.frontend_url('keystone')}/v3"
    assert deep.password_env == ha.PROBE_PASSWORD_ENV and deep.user == "admin"
    # HAProxy's check of nova-api stays its version document: the deep probe is haven's
    assert backends_check(cluster, "nova_api") == "option httpchk GET /"
    others = [s.probe for name, s in specs.items() if name != "nova-api" and s.probe is not None]
    assert others and all(p.kind is ProbeKind.HTTP for p in others)
    (tmp_path / "keystone").mkdir()
    (tmp_path / "keystone" / "admin-password").write_text("s3cret'x\n")
    (tmp_path / "ha").mkdir(exist_ok=True)
    (tmp_path / "ha" / "serve.env").write_text(ha.serve_env(tmp_path, workers=False))
    env = subprocess.run(
        ["sh", "-c", f'set -a; . {tmp_path / "ha" / "serve.env"}; printf %s "${ha.PROBE_PASSWORD_ENV}"'],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert env.stdout == "s3cret'x"  # serve.env is sourced by a shell: quoted


def backends_check(cluster: ha.HaLab, backend: str) -> str:
    lines = _backends(ha.haproxy_config(cluster))[backend]
    return next(line for line in lines if line.startswith("option httpchk"))
