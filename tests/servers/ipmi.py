"""A real IPMI BMC for tests: virtualbmc's ``vbmcd`` on loopback, from its pinned tool venv.

``start_vbmc`` writes a virtualbmc config whose folders, pid file, log and control port
are the fixture's own, runs ``vbmcd --foreground`` through tests/servers/bmc_main.py
(which holds libvirt's ``test:///default`` open so power changes stick, defines one
domain per emulated host, and makes the emulator refuse cipher suites it cannot speak),
then adds and starts one BMC per host, each on its own UDP port of 127.0.0.1.
Stopping the vbmcd process group stops the BMC processes it forked, and nothing else.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from servers.process import ServerProcess, free_port, port_open, require
from servers.redfish import BMC_MAIN

USER = "admin"


@dataclass
class IpmiBmcs:
    username: str
    password: str
    ports: dict[str, int]  # host name -> UDP port on 127.0.0.1
    process: ServerProcess


def start_vbmc(folder: Path, hosts: Sequence[str], password: str) -> IpmiBmcs:
    from haven.lab.toolenv import ToolInstallError, ensure_tool_env

    try:
        venv = ensure_tool_env("virtualbmc")
    except ToolInstallError as exc:
        require(f"/nonexistent/virtualbmc ({exc})", "a package index or cache for virtualbmc")
        raise
    python = require(venv / "bin" / "python", "python3-venv")
    (folder / "bmcs").mkdir(parents=True, exist_ok=True)
    control = free_port()
    config = folder / "virtualbmc.conf"
    config.write_text(
        "[default]\n"
        f"config_dir = {folder / 'bmcs'}\n"
        f"pid_file = {folder / 'vbmcd.pid'}\n"
        f"server_port = {control}\n"
        "[log]\n"
        f"logfile = {folder / 'vbmcd-internal.log'}\n"
    )
    env = {"VIRTUALBMC_CONFIG": str(config), "HOME": str(folder)}
    argv = [str(python), str(BMC_MAIN), ",".join(hosts), "virtualbmc.cmd.vbmcd:main", "--foreground"]
    server = ServerProcess("vbmcd", argv, folder / "vbmcd.log", env=env).start()
    try:
        server.wait_until(lambda: port_open(control), 30.0, "its control port")
        ports = {host: free_udp_port() for host in hosts}
        for host, port in ports.items():
            _vbmc(venv, env, "add", host, "--libvirt-uri", "test:///default", "--address", "127.0.0.1",
                  "--port", str(port), "--username", USER, "--password", password)  # fmt: skip
            _vbmc(venv, env, "start", host)
    except BaseException:
        server.stop()
        raise
    return IpmiBmcs(USER, password, ports, server)


def _vbmc(venv: Path, env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [str(venv / "bin" / "vbmc"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        raise RuntimeError(f"vbmc {' '.join(args[:2])} failed: {result.stderr or result.stdout}")


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
