"""``haven agent [--config FILE]``: run the host agent until SIGTERM or SIGINT.

Who calls it: haven.cli.main's ``agent`` subcommand (systemd's haven-agent.service, the agent's
container). The config file comes from ``--config`` (after the subcommand or before it), else
$HAVEN_AGENT_CONFIG, else /etc/haven/agent.toml. Logs go to stderr (the journal under systemd).
libvirt-python is imported only when the agent starts watching libvirt.

``python -m haven.cli.agent [--config FILE]`` runs the same agent without loading the rest of
haven's CLI (the API, the store, openstacksdk): about 33 MiB resident instead of 120 (measured),
which is how ``haven lab`` runs one agent per compute on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from haven.agent.config import load_agent_config
from haven.agent.runner import Agent
from haven.domain.errors import ConfigError, UserError

DEFAULT_CONFIG = Path("/etc/haven/agent.toml")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = sub.add_parser(
        "agent", help="run the host agent on a compute host (heartbeats, libvirt, processes)"
    )
    _add_options(agent)


def _add_options(agent: argparse.ArgumentParser) -> None:
    agent.add_argument(
        "--config", dest="agent_config", type=Path, metavar="FILE",
        help=f"the agent's TOML config (default: $HAVEN_AGENT_CONFIG, else {DEFAULT_CONFIG})",
    )  # fmt: skip
    agent.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    agent.set_defaults(handler=run_agent)


def _config_path(args: argparse.Namespace) -> Path:
    chosen: Path | None = args.agent_config or args.config
    if chosen is not None:
        return chosen
    env = os.environ.get("HAVEN_AGENT_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def run_agent(args: argparse.Namespace, out: Console, err: Console) -> int:
    config = load_agent_config(_config_path(args))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per heartbeat otherwise
    if config.token_file is not None and not config.token_file.is_file():
        raise ConfigError(f"agent.token_file {config.token_file} does not exist",
                          "write the engine's token there (`haven token` on the engine's host)")  # fmt: skip
    agent = Agent(config)
    asyncio.run(_until_signalled(agent))
    err.print("haven agent stopped cleanly")
    return 0


async def _until_signalled(agent: Agent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await agent.run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    """``python -m haven.cli.agent``: ``haven agent`` alone (exit 2 with a message on a config mistake)."""
    parser = argparse.ArgumentParser(prog="haven agent", description="haven's host agent")
    _add_options(parser)
    args = parser.parse_args(argv)
    args.config = None
    err = Console(stderr=True, soft_wrap=True)
    try:
        return run_agent(args, err, err)
    except UserError as exc:
        err.print(f"[bold red]haven agent: error:[/] {escape(exc.message)}", highlight=False)
        if exc.hint:
            err.print(f"  hint: {escape(exc.hint)}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
