"""`haven`: the command line. The one place that reads argv and the environment.

User mistakes end here as one message naming what is wrong and how to fix it,
with exit status 2 and no stack trace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

from platformdirs import user_data_dir
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from haven import __version__
from haven.cli import agent, cloud_drill, fault_drill, galera, impact_drill, rabbitmq, render
from haven.cli.audit import add_audit_command
from haven.cli.backups import DRILLS as BACKUP_DRILLS
from haven.cli.backups import add_backups_command
from haven.cli.backups import run_drill as backup_drill
from haven.cli.canary import add_canary_command
from haven.cli.controlplane import add_controlplane_command
from haven.cli.explain import add_explain_command
from haven.cli.explore import add_explore_command
from haven.cli.impact import add_impact_command
from haven.cli.lab import add_lab_commands
from haven.cli.leader_loss import run_with_own_servers
from haven.cli.live import LiveView
from haven.cli.masakari_import import add_import_command
from haven.cli.serve import DEFAULT_BIND, serve
from haven.domain.clock import PacedClock
from haven.domain.errors import Conflict, NotFound, UserError
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import NotificationId
from haven.domain.incidents import Notification, NotificationStatus
from haven.drill.leader_loss import NAME as LEADER_LOSS
from haven.drill.limits import check_drill_size
from haven.drill.run import DrillOptions, run_drill
from haven.drill.scenarios import SCENARIOS
from haven.service.config import HavenConfig, for_drills, load_config
from haven.service.release import release_segment
from haven.service.status import status_summary
from haven.service.token import read_token
from haven.store import Store

EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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


def _parser() -> argparse.ArgumentParser:
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

    demo = sub.add_parser("demo", help="watch haven recover a host power loss on the simulated cloud, live")
    _cloud_size(demo)
    demo.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)"
    )
    demo.set_defaults(handler=_demo)

    drill = sub.add_parser(
        "drill", help="run a named failure on the simulated cloud in virtual time, or on a real cloud"
    )
    names = [*SCENARIOS, LEADER_LOSS, *galera.SCENARIOS, *rabbitmq.SCENARIOS, *BACKUP_DRILLS]
    names.append(fault_drill.SCENARIO)
    names.append(impact_drill.SCENARIO)
    drill.add_argument("scenario", help=f"one of: {', '.join(names)}")
    _cloud_size(
        drill, vms_help="VMs in the simulated cloud (default 300); with --cloud: HA servers booted (3)"
    )
    drill.add_argument(
        "--ha-fraction", type=float, default=1 / 3, help="share of VMs with HA_Enabled (default 1/3)"
    )
    drill.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    _cloud_choice(drill)
    cloud_drill.add_options(drill)
    galera.add_options(drill)
    rabbitmq.add_options(drill)
    fault_drill.add_options(drill)
    impact_drill.add_options(drill)
    drill.set_defaults(handler=_drill)

    serve_cmd = sub.add_parser("serve", help="run the engine as a long-lived service (Ctrl-C stops it)")
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

    token = sub.add_parser("token", help="print the local API token (created by the first `haven serve`)")
    token.set_defaults(handler=_token)

    status = sub.add_parser("status", help="segments, hosts by condition, notifications by status, alerts")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    hosts = sub.add_parser("hosts", help="every host haven watches, with its condition")
    hosts.add_argument("--json", action="store_true")
    hosts.set_defaults(handler=_hosts)

    release = sub.add_parser(
        "release",
        help="release a segment held by the observer gate or its fence budget (its silent hosts did fail)",
    )
    release.add_argument("segment", help="the segment's name or id")
    release.add_argument("--reason", default="", help="why (kept in the audit record)")
    release.add_argument("--json", action="store_true")
    release.set_defaults(handler=_release)

    add_lab_commands(sub)
    add_explore_command(sub)
    add_import_command(sub, _config, _store_to_write)
    add_explain_command(sub, _config, _existing_store)
    add_backups_command(sub, _config, _existing_store)
    add_canary_command(sub, _config, _existing_store, lambda config: Store.open(config.database_url))
    add_controlplane_command(sub, _config, _existing_store)
    add_impact_command(sub, _config, _existing_store)
    add_audit_command(sub)

    notes = sub.add_parser("notifications", help="notifications, or one notification with its steps")
    notes.add_argument("id", nargs="?", help="a notification id")
    notes.add_argument("--status", choices=[s.value for s in NotificationStatus])
    notes.add_argument("--json", action="store_true")
    notes.set_defaults(handler=_notifications)

    agent.add_parser(sub)
    return parser


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
    return Path(env) if env else Path(user_data_dir("haven", appauthor=False))


def _config(args: argparse.Namespace) -> HavenConfig:
    config = load_config(_home(args), args.config, cloud_name=getattr(args, "cloud", None))
    if args.db:
        config = HavenConfig(
            **{**{f: getattr(config, f) for f in config.__dataclass_fields__}, "database_url": args.db}
        )
    return config


def _existing_store(config: HavenConfig) -> Store:
    """Open the state for reading: a missing or foreign SQLite file is an error, never migrated."""
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
    if args.scenario == fault_drill.SCENARIO or args.fault_name:  # the fault catalogue, on the lab
        return fault_drill.run(args, out, err)
    if args.scenario == impact_drill.SCENARIO:  # the impact matrix, measured on the lab
        return impact_drill.run(args, out, err)
    if args.scenario in galera.SCENARIOS:  # on a temporary real Galera cluster
        return galera.run(args, out, err)
    if args.scenario in rabbitmq.SCENARIOS:  # on a temporary real RabbitMQ cluster
        return rabbitmq.run(args, out, err)
    if args.scenario in BACKUP_DRILLS:  # backups, rotation and restores on the simulated cloud
        return backup_drill(args, out, err)
    if args.cloud is not None:
        return cloud_drill.run(args, _home(args), out, err)
    if args.vms is None:
        args.vms = 300
    if args.scenario != LEADER_LOSS and args.scenario not in SCENARIOS:
        raise UserError(f"unknown scenario {args.scenario!r}", f"choose one of: {', '.join(SCENARIOS)}")
    check_drill_size(args.hosts, args.vms)  # before anything is built: the cloud lives in memory
    if args.scenario == LEADER_LOSS:
        return _leader_loss(args, out, err)
    # The engine runs with the config's [detection] and [recovery] (--config FILE, else
    # HOME/haven.toml when present, as for `haven serve`); a bad file is a UserError here.
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
    # print(), not rich: the token must come out exactly, with no markup or wrapping.
    print(read_token(_home(args), _config(args).api.token_path))
    return 0


def _status(args: argparse.Namespace, out: Console, err: Console) -> int:
    with _existing_store(_config(args)) as store:
        summary = status_summary(store)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        out.print(render.status(summary))
    return 0


def _release(args: argparse.Namespace, out: Console, err: Console) -> int:
    who = f"{getpass.getuser()} (haven release)"
    with _existing_store(_config(args)) as store:
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
    with _existing_store(_config(args)) as store:
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
    with _existing_store(_config(args)) as store:
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
