"""How a lab service was started, read back from /proc, so a killed one can be started again as it was.

Called by haven.drill.faults (the ``killed`` faults) just before the SIGKILL; ``keep_started`` then
holds what they (and haven.drill.faults_resources) start again, until its exit status is read.
Servers that retitle themselves are read back: oslo.service's ``nova-conductor: master process
[ARGV]`` holds its argv; gunicorn's ``gunicorn: master [gunicorn]`` was started as the gunicorn of the
venv its Python modules are loaded from (haven.lab.wsgi starts it with no arguments), with the config
folder it serves.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import threading
from pathlib import Path

from haven.domain.errors import PermanentError

# The services a fault or its heal started again: referenced while they run, so no Popen object is
# collected with its process running; the lab's record of each (FaultLab.restarted) is what `haven lab
# down` stops. Each one that has ended is reaped (its exit status read) at the next start and at this
# process's exit, so none stays a zombie, nor makes Popen warn "subprocess N is still running" when
# collected: a test session's exit did, once for each service restarted and killed since (CI's log).
_STARTED: list[subprocess.Popen[bytes]] = []
_STARTED_LOCK = threading.Lock()  # a crash loop's thread, the drill and atexit all keep and reap


def keep_started(started: subprocess.Popen[bytes]) -> None:
    with _STARTED_LOCK:
        _STARTED[:] = [p for p in _STARTED if p.poll() is None]
        _STARTED.append(started)


@atexit.register
def reap_ended() -> None:
    """Read the exit status of every started service that has ended, and forget it."""
    with _STARTED_LOCK:
        _STARTED[:] = [p for p in _STARTED if p.poll() is None]


def process_image(pid: int) -> tuple[list[str], dict[str, str], str]:
    """The command line, environment and folder ``pid`` was started with, to start it again."""
    proc = Path(f"/proc/{pid}")
    argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
    env = dict(
        item.decode().split("=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item
    )
    title = argv[0] if len(argv) == 1 else ""
    if ": master process [" in title:
        argv = title.split("[", 1)[1].rstrip("]").split()
    elif title.startswith("gunicorn: master"):
        maps = (proc / "maps").read_text()
        venvs = {line.split()[-1].split("/lib/python")[0] for line in maps.splitlines()
                 if "/site-packages/" in line}  # fmt: skip
        gunicorns = sorted(v + "/bin/gunicorn" for v in venvs if Path(v, "bin", "gunicorn").exists())
        if len(gunicorns) != 1:
            raise PermanentError(f"cannot tell which gunicorn runs {pid}: {gunicorns}")
        argv = gunicorns
    cwd = os.readlink(proc / "cwd")
    if not env:  # retitled over its environment too: the lab gave it only its config dir (wsgi.serve)
        served = Path(cwd, "gunicorn.conf.py").exists()
        env = {**os.environ, **(_config_dir(Path(cwd)) if served else {})}
    if not Path(argv[0]).exists():
        raise PermanentError(f"cannot start {pid} again: {argv[0]!r} is no file")
    return argv, env, cwd


def _config_dir(serving: Path) -> dict[str, str]:
    """The OS_<PROJECT>_CONFIG_DIR a WSGI app served from ``serving`` reads (haven.lab.wsgi.serve)."""
    conf = (serving / "gunicorn.conf.py").read_text()
    project = conf.split('wsgi_app = "', 1)[1].split(".", 1)[0]  # "glance.wsgi.api:application"
    folder = next(f for f in (serving, serving.parent) if list(f.glob(f"{project}*.conf")))
    return {f"OS_{project.upper()}_CONFIG_DIR": str(folder)}
