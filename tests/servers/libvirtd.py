"""A real libvirtd (Debian's libvirt-daemon) for tests, serving libvirt's test driver on a private socket.

``libvirtd_server`` (session): one ``libvirtd --timeout 0`` (0: never exit for idleness) run as an
unprivileged session daemon, with HOME and the XDG folders in a temporary folder, so its socket is
``<folder>/run/libvirt/libvirt-sock`` and it touches nothing of the machine's own libvirt. As root
it drops to nobody:nogroup with ``setpriv`` (a root libvirtd would use /run/libvirt and the system
drivers); root may still connect to the socket. Clients use ``uri``:
``test+unix:///default?socket=...``: the test driver's one shared "default" host, so a domain
destroyed by one connection (another process: ``virsh``) is an event on every other's.

The test driver resets its "default" host when the last connection to it closes, so the fixture
holds one connection open (``keeper``) while libvirtd runs: a domain defined by one ``virsh`` call
is still there for the next.

``libvirtd`` (function): the same server, running before and after the test; a test may ``kill()``
(SIGKILL) and ``start()`` it, or ``restart()``. The test driver keeps its state in memory: a
restarted libvirtd starts again from the default domain "test".

Import in a conftest.py: ``from servers.libvirtd import libvirtd, libvirtd_server  # noqa: F401``.
Without /usr/sbin/libvirtd the tests skip, unless CI is set (then they fail).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servers.process import ServerProcess, require

LIBVIRTD = "/usr/sbin/libvirtd"
VIRSH = "/usr/bin/virsh"
START_TIMEOUT_S = 20
UNPRIVILEGED = ("nobody", "nogroup")


def import_libvirt() -> Any:
    """The libvirt module; skip (module level too) without libvirt-python, fail if CI is set."""
    try:
        import libvirt
    except ImportError:
        message = "libvirt-python is not installed (make agent-deps builds it into .venv)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the libvirt tests must run: {message}", pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return libvirt


class LibvirtdServer:
    def __init__(self, binary: Path, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.socket = folder / "run" / "libvirt" / "libvirt-sock"
        self.uri = f"test+unix:///default?socket={self.socket}"
        self.process: ServerProcess | None = None
        self.keeper: Any = None  # a libvirt connection that keeps the test driver's state alive
        self.env = {
            "HOME": str(folder / "home"),
            "XDG_RUNTIME_DIR": str(folder / "run"),
            "XDG_CONFIG_HOME": str(folder / "config"),
            "XDG_CACHE_HOME": str(folder / "cache"),
            "XDG_DATA_HOME": str(folder / "data"),
        }
        for path in self.env.values():
            Path(path).mkdir(parents=True, exist_ok=True)
        self.argv = [str(binary), "--timeout", "0"]
        if os.geteuid() == 0:
            user, group = UNPRIVILEGED
            shutil.chown(folder, user, group)
            for path in self.env.values():
                shutil.chown(path, user, group)
            self.argv = ["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups", *self.argv]

    def ready(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(0.5)
                sock.connect(str(self.socket))
                return True
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self) -> None:
        if self.running:
            return
        self.socket.unlink(missing_ok=True)  # a killed libvirtd leaves its socket behind
        log = self.folder / "libvirtd.log"
        self.process = ServerProcess("libvirtd", self.argv, log, env=self.env, cwd=self.folder).start()
        self.process.wait_until(self.ready, START_TIMEOUT_S, "socket")
        # The agent's event loop must be registered before any connection opens in this process.
        from haven.agent.libvirt_watch import ensure_event_loop

        ensure_event_loop()
        self.keeper = import_libvirt().open(self.uri)

    def _drop_keeper(self) -> None:
        if self.keeper is not None:
            with contextlib.suppress(import_libvirt().libvirtError):
                self.keeper.close()
            self.keeper = None

    def kill(self) -> None:
        if self.process is not None and self.process.process is not None:
            self.process.signal(signal.SIGKILL)
            self.process.process.wait(10)
        self._drop_keeper()

    def stop(self) -> None:
        self._drop_keeper()
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        self.kill()
        self.start()

    def virsh(self, *argv: str) -> str:
        """Run virsh on this libvirtd from another process (as an operator or Nova would)."""
        done = subprocess.run(
            [VIRSH, "-c", self.uri, *argv], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, f"virsh {' '.join(argv)}: {done.stderr}"
        return done.stdout


@pytest.fixture(scope="session")
def libvirtd_server() -> Iterator[LibvirtdServer]:
    import_libvirt()
    binary = require(LIBVIRTD, "libvirt-daemon")
    require(VIRSH, "libvirt-clients")
    folder = Path(tempfile.mkdtemp(prefix="haven-libvirtd-"))
    server = LibvirtdServer(binary, folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def libvirtd(libvirtd_server: LibvirtdServer) -> Iterator[LibvirtdServer]:
    libvirtd_server.start()
    yield libvirtd_server
    libvirtd_server.start()
