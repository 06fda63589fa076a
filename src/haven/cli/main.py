"""`haven`: the command line. The one place that reads argv and the environment.

User mistakes end here as one message naming what is wrong and how to fix it,
with exit status 2 and no stack trace.

Start-up is lazy: every haven process (and the test suite starts many) pays for what it imports.
`main` first finds the command with a parser that knows only the commands' names and one-line
help (`COMMANDS`), then builds that one command's arguments: only then are its modules imported
(openstacksdk, SQLAlchemy, FastAPI, the drills...), inside the functions that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import getpass
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from haven import __version__
from haven.domain.errors import Conflict, NotFound, UserError

if TYPE_CHECKING:
    from typing import TypeAlias

    from haven.domain.incidents import Notification
    from haven.service.config import CoreConfig, HavenConfig
    from haven.store import Store

    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_USER_ERROR = 2

# Every command with its one-line help, in `haven --help`'s order. The commands another module
# registers (lab, explore, ...) repeat that module's help here, so that listing them imports
# nothing; tests/cli/test_lazy_start.py holds the two equal.
COMMANDS: dict[str, str] = {
    "demo": "watch haven recover a host power loss on the simulated cloud, live",
    "drill": "run a named failure on the simulated cloud in virtual time, or on a real cloud",
    "serve": "run the engine as a long-lived service (Ctrl-C stops it)",
    "token": "print the local API token (created by the first `haven serve`)",
    "status": "segments, hosts by condition, notifications by status, alerts",
    "hosts": "every host haven watches, with its condition",
    "release": "release a segment held by the observer gate or its fence budget (its silent hosts did fail)",
    "lab": "a real minimal OpenStack (Keystone, Nova, ...) on loopback",
    "explore": "run random fault schedules on small simulated clouds and check haven's safety invariants",
    "import": "import segments and hosts from another system",
    "explain": "why things failed: ranked causes of failed boots and failed recoveries, with evidence",
    "backups": "scheduled instance backups: list, take one now, restore",
    "canary": "synthetic checks: timed test boots per zone and API probes",
    "controlplane": "the control plane: replicas, their health, alerts, actions",
    "impact": "what stops, degrades and keeps working if a service, controller or failure domain is down",
    "audit": "failure domains: bunched replicas, quorum one rack would break, N+1 capacity, Ceph racks",
    "notifications": "notifications, or one notification with its steps",
    "agent": "run the host agent on a compute host (heartbeats, libvirt, processes)",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Top-level --help, --version and a missing or unknown command end here, as the whole parser would.
    command: str = _parser(None).parse_known_args(argv)[0].command
    args = _parser(command).parse_args(argv)
    # Piped output keeps whole lines (ids, reasons) rather than folding them at 80 columns.
    out = Console() if sys.stdout.isatty() else Console(width=200)
    err = Console(stderr=True, soft_wrap=True)  # messages stay whole lines, for people and for grep
    try:
        code: int = args.handler(args, out, err)
        return code
    except UserError as exc:
        # Escaped: messages name config sections like [database] that rich would take for markup.
        err.print(f"[bold red]haven: error:[/] {escape(exc.message)}", highlight=False)
        if exc.hint:
            err.print(f"  hint: {escape(exc.hint)}", highlight=False)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


def _parser(command: str | None) -> argparse.ArgumentParser:
    """The parser with every command listed and only ``command``'s own arguments (None: none)."""
    parser = argparse.ArgumentParser(
        prog="haven", description="High availability and self-healing for OpenStack."
    )
    parser.add_argument("--version", action="version", version=f"haven {__version__}")
    parser.add_argument(
        "--home", type=Path, help="state folder (default: $HAVEN_HOME, else a per-user data folder)"
    )
    parser.add_argument("--config", type=Path, help="TOML config file (default: HOME/haven.toml if present)")
    parser.add_argument(
        "--db", help="database URL, overriding the config (sqlite:///FILE or postgresql+psycopg://...)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_ in COMMANDS.items():
        if name == command:
            _REGISTER[name](sub)
        else:  # listed only; its arguments, --help included, are parsed once it is the command
            sub.add_parser(name, help=help_, add_help=False)
    return parser


def _own(sub: Subcommands, name: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=COMMANDS[name])
    return parser


def _add_demo(sub: Subcommands) -> None:
    demo = _own(sub, "demo")
    _cloud_size(demo)
    demo.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)"
    )
    demo.set_defaults(handler=_demo)


def _add_drill(sub: Subcommands) -> None:
    from haven.cli import drill_args  # names and options only: the drill chosen is imported by _drill

    drill = _own(sub, "drill")
    drill.add_argument("scenario", help=f"one of: {', '.join(drill_args.NAMES)}")
    _cloud_size(
        drill, vms_help="VMs in the simulated cloud (default 300); with --cloud: HA servers booted (3)"
    )
    drill.add_argument(
        "--ha-fraction", type=float, default=1 / 3, help="share of VMs with HA_Enabled (default 1/3)"
    )
    drill.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    _cloud_choice(drill)
    drill_args.add_options(drill)
    drill.set_defaults(handler=_drill)


def _add_serve(sub: Subcommands) -> None:
    from haven.cli.serve import DEFAULT_BIND

    serve_cmd = _own(sub, "serve")
    serve_cmd.add_argument(
        "--inject", metavar="SCENARIO", help="inject this drill's failure into the simulated cloud"
    )
    serve_cmd.add_argument("--inject-after", type=float, default=10.0, metavar="SECONDS")
    _cloud_choice(serve_cmd)
    serve_cmd.add_argument(
        "--bind",
        metavar="HOST:PORT",
        help=f"where the REST API listens (default: [api] bind, else {DEFAULT_BIND[0]}:{DEFAULT_BIND[1]}, "
        "Masakari's port)",
    )
    serve_cmd.add_argument(
        "--coordination",
        metavar="URL",
        help="etcd://HOST:PORT: run as one of several engines, only the elected leader acts "
        "(share a PostgreSQL store with --db); default: [coordination] url, else one engine alone",
    )
    serve_cmd.set_defaults(handler=_serve)


def _add_token(sub: Subcommands) -> None:
    _own(sub, "token").set_defaults(handler=_token)


def _add_status(sub: Subcommands) -> None:
    status = _own(sub, "status")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)


def _add_hosts(sub: Subcommands) -> None:
    hosts = _own(sub, "hosts")
    hosts.add_argument("--json", action="store_true")
    hosts.set_defaults(handler=_hosts)


def _add_release(sub: Subcommands) -> None:
    release = _own(sub, "release")
    release.add_argument("segment", help="the segment's name or id")
    release.add_argument("--reason", default="", help="why (kept in the audit record)")
    release.add_argument("--json", action="store_true")
    release.set_defaults(handler=_release)


def _add_notifications(sub: Subcommands) -> None:
    from haven.domain.incidents import NotificationStatus

    notes = _own(sub, "notifications")
    notes.add_argument("id", nargs="?", help="a notification id")
    notes.add_argument("--status", choices=[s.value for s in NotificationStatus])
    notes.add_argument("--json", action="store_true")
    notes.set_defaults(handler=_notifications)


def _add_lab(sub: Subcommands) -> None:
    from haven.cli.lab import add_lab_commands

    add_lab_commands(sub)


def _add_explore(sub: Subcommands) -> None:
    from haven.cli.explore import add_explore_command

    add_explore_command(sub)


def _add_import(sub: Subcommands) -> None:
    from haven.cli.masakari_import import add_import_command

    add_import_command(sub, _config, _store_to_write)


def _add_explain(sub: Subcommands) -> None:
    from haven.cli.explain import add_explain_command

    add_explain_command(sub, _config, _existing_store)


def _add_backups(sub: Subcommands) -> None:
    from haven.cli.backups import add_backups_command

    add_backups_command(sub, _config, _existing_store)


def _add_canary(sub: Subcommands) -> None:
    from haven.cli.canary import add_canary_command
    from haven.store import Store

    add_canary_command(sub, _config, _existing_store, lambda config: Store.open(config.database_url))


def _add_controlplane(sub: Subcommands) -> None:
    from haven.cli.controlplane import add_controlplane_command

    add_controlplane_command(sub, _config, _existing_store)


def _add_impact(sub: Subcommands) -> None:
    from haven.cli.impact import add_impact_command

    add_impact_command(sub, _config, _existing_store)


def _add_audit(sub: Subcommands) -> None:
    from haven.cli.audit import add_audit_command

    add_audit_command(sub, _config, _existing_store)


def _add_agent(sub: Subcommands) -> None:
    from haven.cli import agent

    agent.add_parser(sub)


_REGISTER: dict[str, Callable[[Subcommands], None]] = {
    "demo": _add_demo,
    "drill": _add_drill,
    "serve": _add_serve,
    "token": _add_token,
    "status": _add_status,
    "hosts": _add_hosts,
    "release": _add_release,
    "lab": _add_lab,
    "explore": _add_explore,
    "import": _add_import,
    "explain": _add_explain,
    "backups": _add_backups,
    "canary": _add_canary,
    "controlplane": _add_controlplane,
    "impact": _add_impact,
    "audit": _add_audit,
    "notifications": _add_notifications,
    "agent": _add_agent,
}


def _cloud_choice(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cloud",
        metavar="NAME",
        help="a real OpenStack cloud from clouds.yaml instead of the simulated one (like OS_CLOUD)",
    )


def _cloud_size(p: argparse.ArgumentParser, vms_help: str = "") -> None:
    p.add_argument("--hosts", type=int, default=30, help="hypervisors in the simulated cloud (default 30)")
    p.add_argument(
        "--vms",
        type=int,
        default=None if vms_help else 300,
        help=vms_help or "VMs in the simulated cloud (default 300)",
    )
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same cloud")


# ---- configuration -------------------------------------------------------------------------


def _home(args: argparse.Namespace) -> Path:
    if args.home is not None:
        return Path(args.home)
    env = os.environ.get("HAVEN_HOME")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("haven", appauthor=False))


def _config(args: argparse.Namespace) -> HavenConfig:
    from haven.service.config import HavenConfig, load_config

    config = load_config(_home(args), args.config, cloud_name=getattr(args, "cloud", None))
    if args.db:
        config = HavenConfig(
            **{**{f: getattr(config, f) for f in config.__dataclass_fields__}, "database_url": args.db}
        )
    return config


def _core_config(args: argparse.Namespace) -> CoreConfig:
    """``_config``'s database URL and token file, for the commands that need only those: a file without
    the sections parsed elsewhere is checked without importing their modules (0.7 s of `haven token`)."""
    from haven.service.config import load_core_config

    config = load_core_config(_home(args), args.config, cloud_name=getattr(args, "cloud", None))
    return dataclasses.replace(config, database_url=args.db) if args.db else config


def _existing_store(config: HavenConfig | CoreConfig) -> Store:
    """Open the state for reading: a missing or foreign SQLite file is an error, never migrated."""
    from haven.store import Store

    prefix = "sqlite:///"
    if config.database_url.startswith(prefix):
        path = Path(config.database_url[len(prefix) :])
        if not path.exists():
            raise UserError(
                f"no haven state at {path}",
                "start `haven serve` first, or point --home / --db at an existing state",
            )
        if not _is_haven_database(path):
            raise UserError(f"{path} is not a haven database", "point --home / --db at haven's own state")
    return Store.open(config.database_url)


def _store_to_write(config: HavenConfig, create: bool) -> Store | None:
    """The state to import into, as `_existing_store` opens it, except for a missing SQLite file:

    that one is created if ``create`` (as `haven serve` would), else the answer is None.
    """
    from haven.store import Store

    prefix = "sqlite:///"
    if config.database_url.startswith(prefix):
        path = Path(config.database_url[len(prefix) :])
        if not path.exists():
            return Store.open(config.database_url) if create else None
    return _existing_store(config)


def _is_haven_database(path: Path) -> bool:
    # The standard library's sqlite3, read-only: looking must not change a stranger's file.
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return (
                db.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone()
                is not None
            )
    except sqlite3.DatabaseError:
        return False


# ---- commands ------------------------------------------------------------------------------


def _drill(args: argparse.Namespace, out: Console, err: Console) -> int:
    # Each branch imports only its own drill's modules (haven.cli.drill_args names them all).
    from haven.cli.drill_args import BACKUP_DRILLS, FAULT, GALERA, IMPACT, LEADER_LOSS, RABBITMQ, SIMULATED
    from haven.drill.limits import check_drill_size

    if args.scenario == FAULT and args.list:  # the catalogue alone: neither the lab nor the store
        from haven.cli.fault_catalogue import print_catalogue

        return print_catalogue(args.json, out)
    if args.scenario == FAULT or args.fault_name:  # the fault catalogue, on the lab
        from haven.cli import fault_drill

        return fault_drill.run(args, out, err)
    if args.scenario == IMPACT:  # the impact matrix, measured on the lab
        from haven.cli import impact_drill

        return impact_drill.run(args, out, err)
    if args.scenario in GALERA:  # on a temporary real Galera cluster
        from haven.cli import galera

        return galera.run(args, out, err)
    if args.scenario in RABBITMQ:  # on a temporary real RabbitMQ cluster
        from haven.cli import rabbitmq

        return rabbitmq.run(args, out, err)
    if args.scenario in BACKUP_DRILLS:  # backups, rotation and restores on the simulated cloud
        from haven.cli.backups import run_drill as backup_drill

        return backup_drill(args, out, err)
    if args.cloud is not None:
        from haven.cli import cloud_drill

        return cloud_drill.run(args, _home(args), out, err)
    if args.vms is None:
        args.vms = 300
    if args.scenario != LEADER_LOSS and args.scenario not in SIMULATED:
        raise UserError(f"unknown scenario {args.scenario!r}", f"choose one of: {', '.join(SIMULATED)}")
    check_drill_size(args.hosts, args.vms)  # before anything is built: the cloud lives in memory
    if args.scenario == LEADER_LOSS:
        return _leader_loss(args, out, err)
    # The engine runs with the config's [detection] and [recovery] (--config FILE, else
    # HOME/haven.toml when present, as for `haven serve`); a bad file is a UserError here.
    import asyncio

    from haven.cli import render
    from haven.drill.run import DrillOptions, run_drill
    from haven.service.config import for_drills

    settings = for_drills(_config(args).engine)  # a drill judges the host's return too
    # The report says what the engine held, refused or alerted; its log lines would only repeat it.
    logging.getLogger("haven").setLevel(logging.ERROR)
    options = DrillOptions(
        args.scenario,
        hosts=args.hosts,
        vms=args.vms,
        seed=args.seed,
        ha_fraction=args.ha_fraction,
        settings=settings,
    )
    if args.json:
        report = asyncio.run(run_drill(options))
        print(json.dumps(report.to_dict(), indent=2))
    else:
        with err.status(f"running drill {args.scenario} on {args.hosts} hosts / {args.vms} VMs..."):
            report = asyncio.run(run_drill(options))
        out.print(render.drill_report(report))
    return 0 if report.verdict in ("recovered", "held", "nothing_at_stake") else 1


def _leader_loss(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Three engines on real etcd and PostgreSQL (started here); the leader dies mid-evacuation."""
    from haven.cli import render
    from haven.cli.leader_loss import run_with_own_servers

    if args.json:
        report = run_with_own_servers(args.hosts, args.vms, args.seed, args.ha_fraction)
        print(json.dumps(report.to_dict(), indent=2))
    else:
        with err.status("running drill leader-loss: starting etcd and PostgreSQL, then three engines..."):
            report = run_with_own_servers(args.hosts, args.vms, args.seed, args.ha_fraction)
        out.print(render.drill_report(report.drill))
        out.print(
            f"engines {report.engines}, killed {report.killed}; takeover {report.takeover_s} s "
            f"(lease TTL {report.ttl_s} s), resumed {report.resumed_s} s after the kill; "
            f"double actions {report.double_actions}",
            highlight=False,
        )
    return 0 if report.drill.verdict == "recovered" else 1


def _demo(args: argparse.Namespace, out: Console, err: Console) -> int:
    import asyncio

    from rich.live import Live

    from haven.cli import render
    from haven.cli.live import LiveView
    from haven.domain.clock import PacedClock
    from haven.domain.events import EngineEvent, EventKind
    from haven.drill.run import DrillOptions, run_drill

    if args.speed <= 0:
        raise UserError(f"--speed must be positive, got {args.speed}")
    clock = PacedClock(args.speed, paced=False)  # the warm-up runs at once; the incident at watching speed
    view = LiveView()
    out.print(
        f"Simulated cloud: {args.hosts} hosts in 3 zones, {args.vms} VMs (about a third HA_Enabled). "
        "Injecting a host power loss after a 5 s warm-up..."
    )

    with Live(view.render(), console=out, refresh_per_second=8) as live:

        def on_event(event: EngineEvent) -> None:
            if event.kind is EventKind.FAULT_INJECTED:
                clock.paced = True
            view(event)
            live.update(view.render())

        report = asyncio.run(
            run_drill(
                DrillOptions("host-power-loss", hosts=args.hosts, vms=args.vms, seed=args.seed),
                on_event,
                clock,
            )
        )
    out.print(render.drill_report(report))
    return 0 if report.verdict == "recovered" else 1


def _serve(args: argparse.Namespace, out: Console, err: Console) -> int:
    import asyncio

    from haven.cli.serve import DEFAULT_BIND, serve
    from haven.drill.scenarios import SCENARIOS

    config = _config(args)
    if args.inject is not None and args.inject not in SCENARIOS:
        raise UserError(f"unknown scenario {args.inject!r}", f"choose one of: {', '.join(SCENARIOS)}")
    bind = _bind(args.bind or config.api.bind or f"{DEFAULT_BIND[0]}:{DEFAULT_BIND[1]}")
    if args.coordination is not None:
        config = dataclasses.replace(
            config, coordination=dataclasses.replace(config.coordination, url=args.coordination)
        )
    return asyncio.run(serve(config, err, args.inject, args.inject_after, bind, environ=os.environ))


def _bind(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IPv6 host in brackets: ``[::1]:15868``) as a (host, port) pair."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address without brackets is ambiguous
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(
            f"--bind {value!r} is not HOST:PORT",
            "e.g. --bind 127.0.0.1:15868, --bind 0.0.0.0:15868 or --bind [::1]:15868 (port 0 to 65535)",
        )
    return host, int(port)


def _token(args: argparse.Namespace, out: Console, err: Console) -> int:
    from haven.service.token import read_token

    # print(), not rich: the token must come out exactly, with no markup or wrapping.
    print(read_token(_home(args), _core_config(args).api.token_path))
    return 0


def _status(args: argparse.Namespace, out: Console, err: Console) -> int:
    from haven.cli import render
    from haven.service.status import status_summary

    with _existing_store(_core_config(args)) as store:
        summary = status_summary(store)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        out.print(render.status(summary))
    return 0


def _release(args: argparse.Namespace, out: Console, err: Console) -> int:
    from haven.service.release import release_segment

    who = f"{getpass.getuser()} (haven release)"
    with _existing_store(_core_config(args)) as store:
        try:
            done = release_segment(store, args.segment, who, args.reason, time.time())
        except NotFound as exc:
            raise UserError(str(exc), "`haven status` lists the segments and their holds") from None
        except Conflict as exc:
            raise UserError(str(exc), "a segment is released only while it is held") from None
    if args.json:
        print(json.dumps(done.to_dict(), indent=2))
    else:
        hosts = ", ".join(done.hosts) or "none silent now"
        out.print(f"released segment {done.segment}: {hosts}; the engine acts on them at its next pass")
    return 0


def _hosts(args: argparse.Namespace, out: Console, err: Console) -> int:
    from haven.cli import render

    with _existing_store(_core_config(args)) as store:
        hosts, segments = store.list_hosts(), store.list_segments()
    if args.json:
        names = {s.id: s.name for s in segments}
        print(
            json.dumps(
                [
                    {
                        "name": h.name,
                        "segment": names.get(h.segment_id),
                        "condition": h.condition,
                        "reserved": h.reserved,
                        "on_maintenance": h.on_maintenance,
                        "disabled_by_haven": h.disabled_by_haven,
                    }
                    for h in hosts
                ],
                indent=2,
            )
        )
    else:
        out.print(render.hosts_table(hosts, segments))
    return 0


def _notifications(args: argparse.Namespace, out: Console, err: Console) -> int:
    from haven.cli import render
    from haven.domain.ids import NotificationId
    from haven.domain.incidents import NotificationStatus

    with _existing_store(_core_config(args)) as store:
        if args.id:
            try:
                notification = store.get_notification(NotificationId(args.id))
            except NotFound:
                raise UserError(
                    f"no notification with id {args.id}", "list them with `haven notifications`"
                ) from None
            steps = store.list_steps(notification.id)
            if args.json:
                print(
                    json.dumps(
                        {
                            **_notification_dict(notification),
                            "steps": [
                                {
                                    "seq": s.seq,
                                    "kind": s.kind,
                                    "subject": s.subject,
                                    "state": s.state.value,
                                    "detail": dict(s.detail),
                                    "started_at": s.started_at,
                                    "finished_at": s.finished_at,
                                }
                                for s in steps
                            ],
                        },
                        indent=2,
                        default=str,
                    )
                )
            else:
                out.print(render.notification_detail(notification, steps))
            return 0
        statuses = [NotificationStatus(args.status)] if args.status else None
        notifications = store.list_notifications(statuses=statuses)
    if args.json:
        print(json.dumps([_notification_dict(n) for n in notifications], indent=2, default=str))
    else:
        out.print(render.notifications_table(notifications))
    return 0


def _notification_dict(n: Notification) -> dict[str, object]:
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in dataclasses.asdict(n).items()}


if __name__ == "__main__":
    sys.exit(main())
