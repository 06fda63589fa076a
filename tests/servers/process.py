"""Running a real server for a test: free loopback ports, start, wait until ready, stop exactly it.

Fixtures that start etcd, RabbitMQ, the BMC emulators, Keystone, ... build on this, so
each one only says how to launch its server and how to tell that it is ready.

``ServerProcess`` (haven.lab.process.LabProcess, shared with ``haven lab``) starts its
command in a new session (its own process group), writes its output to a log file in the
fixture's folder, and on ``stop`` sends SIGTERM to that group, then SIGKILL after a grace
period: whatever the server spawned goes too, and nothing else does. ``require`` turns a
missing binary into a skip on a developer's machine and a failure in CI (where
``make system-deps`` must have installed it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from haven.lab.process import LabProcess as ServerProcess
from haven.lab.process import free_port, port_open

__all__ = ["ServerProcess", "free_port", "port_open", "require"]


def require(path: str | Path, package: str) -> Path:
    """``path`` if it exists; else skip (or fail under CI) naming the Debian package."""
    found = Path(path)
    if found.exists():
        return found
    message = f"{found} not found (install it: apt-get install {package}, or make system-deps)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so this real-server test must run: {message}", pytrace=False)
    pytest.skip(message)
