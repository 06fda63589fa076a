"""The lab's haven agents: one ``haven agent`` per compute host, heartbeating into the lab's etcd.

Who calls it: haven.lab.lab (``haven lab up``) writes each agent's config here and hands the
agents' command lines to the power wiring (haven.lab.hardware), which runs each host's agent
next to its nova-compute while the host's BMC says On, and kills both when it says Off.

Each agent (host ``compute-N``) heartbeats on the ``management`` channel of the lab's etcd,
watches only its own nova-compute (several run on this one machine: ``process_cmdline`` picks
the one started with this lab's compute.conf of that host), has no libvirt watch (the lab's computes use
Nova's fake driver) and reports to the engine a ``haven serve --config LAB/haven.toml`` runs:
``engine_url`` and the API's ``[api] bind`` in haven.toml are the same free port chosen at
``up``, and both sides use the token file ``LAB/token``. While no engine listens, the agents
keep their notifications in their spools and retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from haven.lab.labfiles import haven_python, private
from haven.service.token import ensure_token

CHANNEL = "management"
TOKEN_FILE = "token"


def token_file(folder: Path) -> Path:
    """The lab engine's API token (created once, owner-only), which every agent sends."""
    path = folder / TOKEN_FILE
    ensure_token(folder, path)
    return path


def agent_config(folder: Path, host: str, etcd_http_url: str, engine_url: str) -> Path:
    """Write ``host``'s agent config under ``folder/agents/host``; its path."""
    own = folder / "agents" / host
    lines = [
        "# haven agent of the lab's compute host (written by `haven lab up`).",
        "[agent]",
        f'host = "{host}"',
        f'engine_url = "{engine_url}"',
        f'token_file = "{token_file(folder)}"',
        f'state_dir = "{own / "spool"}"',
        'libvirt_uri = ""',
        'processes = ["nova-compute"]',
        # The full path: other labs on this machine run a nova-compute for a host of the same name.
        f'process_cmdline = {{ "nova-compute" = "{folder / "nova" / "computes" / host / "compute.conf"}" }}',
        "process_interval_s = 2.0",
        # etcd's shortest lease (2 s), refreshed every 0.5 s: the engine hears a dead host about 2.3 s
        # after its power went (issue 15); the engine's [detection] says the same (haven.toml).
        "heartbeat_ttl_s = 2",
        "heartbeat_interval_s = 0.5",
        "[[agent.channels]]",
        f'name = "{CHANNEL}"',
        f'etcd = "{etcd_http_url}"',
    ]
    return private(own / "agent.toml", "\n".join(lines))


def agent_plans(
    folder: Path, hosts: Sequence[str], etcd_http_url: str, engine_url: str
) -> dict[str, dict[str, object]]:
    """host -> how the power wiring runs its agent (argv, log), each config written."""
    plans: dict[str, dict[str, object]] = {}
    for host in hosts:
        config = agent_config(folder, host, etcd_http_url, engine_url)
        argv = [*haven_python("haven.cli.agent"), "--config", str(config)]  # the agent alone: 33 MiB
        plans[host] = {"argv": argv, "log": str(folder / "agents" / host / "agent.log")}
    return plans
