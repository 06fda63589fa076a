"""A real Redfish BMC for tests: sushy-tools' emulator on loopback, from its pinned tool venv.

``start_sushy`` runs ``sushy-emulator`` with a config file in a temporary folder, basic
auth from an htpasswd file, and one of two backends:

- libvirt's ``test:///default`` (the fast one: a power change applies at once), with one
  domain per emulated host, defined by tests/servers/bmc_main.py on a connection it holds
  for the emulator's lifetime;
- the fake driver (``fake=True``): each power change applies after a random 1-11 s, as
  measured, so a test can show that fencing confirms by polling; its SQLite state lives in
  the fixture's own folder, so no test sees another's systems.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from servers.process import ServerProcess, free_port, require
from servers.tls import certificate

USER = "admin"
BMC_MAIN = Path(__file__).with_name("bmc_main.py")


@dataclass
class RedfishBmc:
    url: str
    username: str
    password: str
    systems: dict[str, str]  # host name -> system id
    process: ServerProcess


def tool_python() -> Path:
    from haven.lab.toolenv import ToolInstallError, ensure_tool_env

    try:
        venv = ensure_tool_env("sushy-tools")
    except ToolInstallError as exc:  # no index and no cache: like a missing binary
        require(f"/nonexistent/sushy-tools ({exc})", "a package index or cache for sushy-tools")
        raise
    return require(venv / "bin" / "python", "python3-venv")


def start_sushy(
    folder: Path, hosts: Sequence[str], password: str, fake: bool = False, tls: bool = False
) -> RedfishBmc:
    python = tool_python()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    htpasswd = folder / "htpasswd"
    # sushy-tools checks basic auth against an htpasswd file; bcrypt is in its venv.
    hashing = "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())"
    digest = subprocess.run(
        [str(python), "-c", hashing, password], check=True, capture_output=True, text=True
    ).stdout.strip()
    htpasswd.write_text(f"{USER}:{digest}\n")
    systems = {host: (str(uuid.uuid5(uuid.NAMESPACE_DNS, host)) if fake else host) for host in hosts}
    lines = [
        "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'",
        f"SUSHY_EMULATOR_LISTEN_PORT = {port}",
        f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}",
        f"SUSHY_EMULATOR_STATE_DIR = {str(folder / 'state')!r}",
    ]
    if tls:
        cert, key = self_signed(folder)
        lines += [f"SUSHY_EMULATOR_SSL_CERT = {str(cert)!r}", f"SUSHY_EMULATOR_SSL_KEY = {str(key)!r}"]
    if fake:
        fake_systems = [
            {"uuid": sid, "name": host, "power_state": "On", "nics": []} for host, sid in systems.items()
        ]
        lines += ["SUSHY_EMULATOR_FAKE_DRIVER = True", f"SUSHY_EMULATOR_FAKE_SYSTEMS = {fake_systems!r}"]
        domains = ""
    else:
        lines.append("SUSHY_EMULATOR_LIBVIRT_URI = 'test:///default'")
        domains = ",".join(hosts)
    (folder / "emulator.conf").write_text("\n".join(lines) + "\n")
    target = "sushy_tools.emulator.main:main"
    argv = [str(python), str(BMC_MAIN), domains, target, "--config", str(folder / "emulator.conf")]
    server = ServerProcess("sushy-emulator", argv, folder / "emulator.log").start()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/redfish/v1/", timeout=0.5, verify=False).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        server.wait_until(ready, 60.0, "an answer at /redfish/v1/")
    except BaseException:
        server.stop()
        raise
    return RedfishBmc(url, USER, password, systems, server)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 that no client trusts (a lab BMC's usual state)."""
    return certificate(folder, "haven-test-bmc", ["127.0.0.1"])
