"""`haven lab up|status|down`: a real minimal OpenStack on loopback for trying haven and for its tests.

Called by haven.cli.main, which registers the sub-commands with ``add_lab_commands``.
The work is haven.lab.lab's; this module parses options, prints progress and turns a
service that would not start into one message (exit 1) naming the log to read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from haven.domain.errors import HavenError
from haven.lab import ha_openstack, lab
from haven.lab.process import LabServiceError
from haven.lab.toolenv import ToolInstallError

EXIT_FAILED = 1
EXIT_USAGE = 2  # options that do not fit (a usage mistake, as argparse's own errors)


def add_lab_commands(sub: Any) -> None:
    """Register ``haven lab`` and its sub-commands on the top-level sub-parser set."""
    parser = sub.add_parser("lab", help="a real minimal OpenStack (Keystone, Nova, ...) on loopback")
    lab_sub = parser.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    folder_help = f"the lab's folder (default: {lab.default_folder()})"
    up = lab_sub.add_parser(
        "up", help="install (first time) and start the lab; writes clouds.yaml and haven.toml"
    )
    up.add_argument(
        "--computes", type=int, default=2, help="compute hosts, each with its own BMC (default 2)"
    )
    up.add_argument("--folder", type=Path, default=None, help=folder_help)
    up.add_argument(
        "--ha",
        action="store_true",
        help="also run Keystone, nova-api, Placement and Glance as systemd units on 2 controllers behind "
        "HAProxy, with 3-node Galera and RabbitMQ clusters that OpenStack then uses (needs root)",
    )
    up.add_argument(
        "--controllers",
        type=int,
        default=2,
        help="with --ha: 3 adds a spare controller, its replicas' units installed and stopped (default 2)",
    )
    up.add_argument(
        "--plain-backends",
        action="store_true",
        help="with --ha: leave OpenStack on the lab's single MariaDB and RabbitMQ (the clusters still run, "
        "unused by OpenStack; 1.5 to 3.5 minutes quicker)",
    )
    up.add_argument(
        "--on-clusters",
        action="store_true",
        help="with --ha: OpenStack on the Galera and RabbitMQ clusters (the default; kept for scripts)",
    )
    up.add_argument(
        "--cinder",
        action="store_true",
        help="also run Cinder (NFS-driver volumes as files on a bind mount, posix backups; needs root)",
    )
    up.set_defaults(handler=_up)
    status = lab_sub.add_parser("status", help="what the lab runs, its URLs and files")
    status.add_argument("--folder", type=Path, default=None, help=folder_help)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)
    down = lab_sub.add_parser("down", help="stop exactly what `haven lab up` started")
    down.add_argument("--folder", type=Path, default=None, help=folder_help)
    down.set_defaults(handler=_down)


def _folder(args: argparse.Namespace) -> Path:
    folder: Path = (args.folder or lab.default_folder()).expanduser().absolute()
    return folder


def _up(args: argparse.Namespace, out: Console, err: Console) -> int:
    started = time.monotonic()

    def say(message: str) -> None:
        err.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {escape(message)}", highlight=False)

    folder = _folder(args)
    for given, name in ((args.on_clusters, "--on-clusters"), (args.plain_backends, "--plain-backends")):
        if given and not args.ha:
            err.print(f"[bold red]haven lab up: {name} is for the HA lab:[/] add --ha", highlight=False)
            return EXIT_USAGE
    if args.on_clusters and args.plain_backends:
        err.print(
            "[bold red]haven lab up: --on-clusters and --plain-backends contradict each other:[/] give one "
            "(OpenStack on the clusters is the default with --ha)",
            highlight=False,
        )
        return EXIT_USAGE
    try:
        state = lab.up(
            folder, args.computes, progress=say, ha=args.ha, cinder=args.cinder, controllers=args.controllers
        )
    except (LabServiceError, ToolInstallError) as exc:
        err.print(f"[bold red]haven lab up: failed:[/] {escape(str(exc))}", highlight=False)
        err.print(f"  hint: each service's log is in {folder}", highlight=False)
        return EXIT_FAILED
    moved = ""
    if args.ha and not args.plain_backends:
        moving = time.monotonic()
        try:
            backends = ha_openstack.use_clusters(folder, say)
        except (LabServiceError, HavenError, OSError, subprocess.SubprocessError) as exc:  # a step's failure
            err.print(f"[bold red]haven lab up: the move onto the clusters failed:[/] {escape(str(exc))}")
            where = (
                "its services' configuration already names the clusters (the plain files are kept as *.plain)"
                if ha_openstack.on_clusters(folder)
                else "it is up on its plain MariaDB and RabbitMQ"
            )
            err.print(
                f"  the lab is left running: {where}; logs in {folder}; "
                f"`haven lab down --folder {folder}` stops it",
                highlight=False,
            )
            return EXIT_FAILED
        say(f"OpenStack on Galera (HAProxy 127.0.0.1:{backends.haproxy_port}) and the RabbitMQ cluster")
        moved = f"; OpenStack moved onto the clusters in {time.monotonic() - moving:.1f} s"
    out.print(f"lab up in {state.up_in_s} s with {len(state.computes)} compute host(s){moved}")
    out.print(f"  export OS_CLIENT_CONFIG_FILE={state.files['clouds.yaml']} OS_CLOUD=lab")
    out.print(f"  haven config: {state.files['haven.toml']}")
    if state.ha:
        _print_ha(out, state.ha)
        _print_clusters(out, folder)
    return 0


def _print_clusters(out: Console, folder: Path) -> None:
    moved = ha_openstack.on_clusters(folder)
    where = "the Galera and RabbitMQ clusters" if moved else "the plain MariaDB and RabbitMQ"
    out.print(f"  HA: OpenStack's databases and message bus: {where}")


def _print_ha(out: Console, ha: dict[str, Any]) -> None:
    spare = ", spare: its units stopped"
    hosts = ", ".join(
        f"{c['host']} ({c['address']}, systemd pid {c['pid1']}{spare if c.get('spare') else ''})"
        for c in ha["controllers"]
    )
    out.print(f"  HA: controllers {hosts}; HAProxy socket {ha['haproxy_socket']}")
    for service, port in ha["frontends"].items():
        out.print(f"  HA: {service:<10} frontend 127.0.0.1:{port}, replicas on port {ha['ports'][service]}")


def _status(args: argparse.Namespace, out: Console, err: Console) -> int:
    report = lab.status(_folder(args))
    if report.get("ha"):
        report["ha"]["openstack_on_clusters"] = ha_openstack.on_clusters(_folder(args))
    if args.json:
        out.print_json(json.dumps(report))
        return 0 if report["running"] else 3
    if not report["processes"]:
        out.print(f"no lab in {report['folder']} (start one with `haven lab up`)")
        return 3
    out.print(f"lab in {report['folder']}: {'running' if report['running'] else 'stopped'}")
    for process in report["processes"]:
        mark = "[green]up[/]" if process["alive"] else "[red]down[/]"
        out.print(f"  {process['name']:<18} {mark}  pid {process['pid']}  log {process['log']}")
    for host, compute in report["computes"].items():
        pid = compute["nova_compute_pid"]
        state = f"nova-compute pid {pid}" if pid else "nova-compute not running (BMC off?)"
        if compute.get("agent_pid"):
            state += f", haven agent pid {compute['agent_pid']}"
        if compute.get("held_down"):
            state += f", held down: {', '.join(compute['held_down'])}"
        out.print(f"  {host:<18} {state}  BMC {compute['bmc']}")
    if report.get("ha"):
        _print_ha(out, report["ha"])
        _print_clusters(out, _folder(args))
    for name, url in report["urls"].items():
        out.print(f"  {name:<18} {url}")
    for name, path in report["files"].items():
        out.print(f"  {name:<18} {path}")
    return 0 if report["running"] else 3


def _down(args: argparse.Namespace, out: Console, err: Console) -> int:
    stopped = lab.down(_folder(args))
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0
