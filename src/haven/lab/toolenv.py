"""Pinned virtualenvs for the external programs haven runs beside itself.

Who calls it: ``haven lab`` (Keystone, Nova, ...) and the test fixtures that start real
emulators and monitors (sushy-tools, virtualbmc, masakari-monitors). These programs are
servers we talk to over the network, not libraries haven imports, and their dependency
trees conflict with ours and with each other, so each gets its own virtualenv.

Each tool's pins live in ``locks/<name>.lock`` (hashed, generated from ``<name>.in`` by
``make lock-tools``). The venv folder is named after the lock's digest, so changing the
pins builds a fresh venv and an unchanged lock reuses the existing one. A venv counts as
built only once its ready marker is written, after pip succeeded, and builds run under a
file lock, so an interrupted or concurrent install never leaves a half-built venv that
looks finished.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from platformdirs import user_cache_dir

from haven.domain.errors import ConfigError, HavenError

TOOLS_DIR_ENV = "HAVEN_TOOLS_DIR"
_READY = ".ready"

Progress = Callable[[str], None]


class ToolInstallError(HavenError):
    """A tool's virtualenv could not be built (pip failed, no index, no disk)."""


def tools_root() -> Path:
    """Where tool venvs live: ``$HAVEN_TOOLS_DIR``, else the per-user cache folder."""
    configured = os.environ.get(TOOLS_DIR_ENV)
    return Path(configured) if configured else Path(user_cache_dir("haven")) / "tools"


def known_tools() -> list[str]:
    """The tools with a lock file shipped in the package."""
    folder = resources.files("haven.lab") / "locks"
    names = (entry.name for entry in folder.iterdir())
    return sorted(name.removesuffix(".lock") for name in names if name.endswith(".lock"))


def lock_text(tool: str) -> str:
    entry = resources.files("haven.lab") / "locks" / f"{tool}.lock"
    if not entry.is_file():
        raise ConfigError(f"unknown tool {tool!r}: known tools are {', '.join(known_tools()) or 'none'}")
    return entry.read_text()


def venv_path(tool: str, root: Path | None = None) -> Path:
    digest = hashlib.sha256(lock_text(tool).encode()).hexdigest()[:12]
    return (root or tools_root()) / f"{tool}-{digest}"


def ensure_tool_env(tool: str, root: Path | None = None, progress: Progress | None = None) -> Path:
    """The ready venv of ``tool`` (its ``bin/`` holds the tool's scripts), built if needed."""
    say = progress or (lambda _message: None)
    target = venv_path(tool, root)
    if (target / _READY).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{tool}.install-lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # a second installer waits, then finds it ready
        if not (target / _READY).exists():
            _build(tool, target, say)
    return target


def _build(tool: str, target: Path, say: Progress) -> None:
    # A venv's scripts name its own path, so it is built where it will live; a build that
    # stopped half way has no ready marker and is thrown away here.
    shutil.rmtree(target, ignore_errors=True)
    lock_file = target.parent / f"{target.name}.lock"
    lock_file.write_text(lock_text(tool))
    say(f"{tool}: creating a virtualenv in {target}")
    _run([sys.executable, "-m", "venv", str(target)], tool)
    say(f"{tool}: installing pinned packages (first time only; this can take a few minutes)")
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off", "--quiet"]
    try:
        _run([*pip, "--require-hashes", "-r", str(lock_file)], tool)
    except ToolInstallError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    (target / _READY).write_text(lock_file.name + "\n")
    say(f"{tool}: ready")


def _run(command: list[str], tool: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise ToolInstallError(f"installing {tool} failed ({' '.join(command[:4])} ...):\n{tail}")
