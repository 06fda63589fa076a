"""``haven backups list|run|restore``: the backups of the cloud's servers, one taken now, a restore.

Registered by haven.cli.main. Works on the OpenStack cloud of the configuration (``[cloud] driver =
"openstack"`` or ``--cloud``); the simulated cloud lives only inside ``haven serve`` and drills.
``list`` reads the store (and, with a SERVER, nothing else); ``run`` and ``restore`` commit their
records before asking Nova and show progress until the backup (or restored server) is ready. While
haven serve leads on the same store, a record this command starts is held by it (``held_by``,
``held_until`` two minutes ahead, renewed each time round its wait): the leader's passes and drill
rounds never ask the cloud for it meanwhile (they would call createBackup or boot a second time); the
command lets go when it stops waiting, and the leader carries the record on; if the command dies, the
leader resumes it once the hold runs out. If the hold ran out while the command still waits (a cloud
call slower than two minutes), the command stops asking the cloud for it, says so and exits 1.
``--wait`` is a number of seconds from 0 to ``MAX_WAIT_S`` (anything else: exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from haven.backups.restores import Restorer
from haven.backups.runner import BackupRunner, HoldLost
from haven.cli.render import when
from haven.domain.backups import BackupRecord, RestoreRecord
from haven.domain.clock import RealClock
from haven.domain.errors import Conflict, UserError
from haven.domain.ids import ServerId
from haven.drill import backup_restore
from haven.service.config import HavenConfig
from haven.store import Store

DRILLS = (backup_restore.NAME,)  # `haven drill backup-restore`, dispatched here by haven.cli.main
HOLD_S = 120.0  # a run or restore holds its record this long ahead, renewed each time round its wait
MAX_WAIT_S = 86400.0  # --wait at most a day: a record is never held past what a person waits for
POLL_S = 2.0
ConfigOf = Callable[[argparse.Namespace], HavenConfig]
StoreOf = Callable[[HavenConfig], Store]


def add_backups_command(sub: Any, config_of: ConfigOf, store_of: StoreOf) -> None:
    parser = sub.add_parser("backups", help="scheduled instance backups: list, take one now, restore")
    actions = parser.add_subparsers(dest="backups_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="backups (all, or one server's) and the latest restore drills")
    listing.add_argument("server", nargs="?", help="a server id")
    listing.add_argument("--json", action="store_true")
    run = actions.add_parser("run", help="back a server up now (outside its schedule) and wait until ready")
    run.add_argument("server", help="a server id")
    run.add_argument("--json", action="store_true")
    run.add_argument(
        "--wait", type=_wait_seconds, default=600.0,
        help=f"seconds to wait for it to be ready, 0 to {MAX_WAIT_S:.0f} (0: don't)",
    )  # fmt: skip
    restore = actions.add_parser("restore", help="rebuild a server from a backup, or boot a new one from it")
    restore.add_argument("server", help="the id of the server the backup is of")
    restore.add_argument("--at", help="the newest backup taken at or before this time (ISO 8601, UTC)")
    restore.add_argument("--as-new", metavar="NAME", help="boot a new server NAME instead of rebuilding")
    nets = restore.add_mutually_exclusive_group()
    nets.add_argument(
        "--network", metavar="NAME_OR_ID", action="append", dest="networks",
        help="with --as-new: boot on this network (repeatable); default: the original server's networks",
    )  # fmt: skip
    nets.add_argument(
        "--no-network", action="store_const", const=[], dest="networks",
        help="with --as-new: boot with no network at all",
    )  # fmt: skip
    restore.add_argument("--json", action="store_true")
    restore.add_argument(
        "--wait", type=_wait_seconds, default=600.0,
        help=f"seconds to wait for the restored server to be ACTIVE, 0 to {MAX_WAIT_S:.0f}",
    )  # fmt: skip
    for p in (run, restore):
        p.add_argument("--cloud", metavar="NAME", help="the OpenStack cloud from clouds.yaml (like OS_CLOUD)")
    parser.set_defaults(handler=lambda args, out, err: _run(args, config_of, store_of))


def _wait_seconds(text: str) -> float:
    """``--wait``: a finite number of seconds from 0 to MAX_WAIT_S (argparse: exit 2 otherwise)."""
    try:
        wait = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(wait) and 0.0 <= wait <= MAX_WAIT_S):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds from 0 to {MAX_WAIT_S:.0f}")
    return wait


def _run(args: argparse.Namespace, config_of: ConfigOf, store_of: StoreOf) -> int:
    config = config_of(args)
    if args.backups_action == "list":
        with store_of(config) as store:
            return _list(args, store)
    # A mistyped --at is the user's to fix before the state is opened or the cloud asked.
    at = _parse_time(args.at) if args.backups_action == "restore" and args.at is not None else None
    with Store.open(config.database_url) as store:  # run and restore record before they act
        return asyncio.run(_act(args, config, store, at))


def _list(args: argparse.Namespace, store: Store) -> int:
    records = store.backups_of(args.server) if args.server else store.backups_relevant(time.time())
    drills = [d for d in store.list_restores() if not args.server or d.server_id == args.server]
    if args.json:
        print(
            json.dumps(
                {"backups": [record_json(r) for r in records], "restores": [record_json(d) for d in drills]}
            )
        )
        return 0
    table = Table(title="backups")
    for column in ("server", "backup", "kind", "state", "taken", "ready", "image / volume backups", "error"):
        table.add_column(column)
    for r in records:
        where = r.image_id or ", ".join(r.volume_backups.values())
        kind = f"{r.kind.value}{' +inc' if r.incremental else ''}"
        table.add_row(r.server_name, r.id[:8], kind, r.state.value, when(r.created_at), when(r.completed_at),
                      where, r.error)  # fmt: skip
    console = Console()
    console.print(table)
    if drills:
        drill_table = Table(title="restores and restore drills")
        for column in ("server", "purpose", "state", "recovery point", "started", "active at", "error"):
            drill_table.add_column(column)
        for d in drills[-50:]:
            drill_table.add_row(d.server_id, d.purpose.value, d.state.value, when(d.recovery_point),
                                when(d.created_at), when(d.active_at), d.error)  # fmt: skip
        console.print(drill_table)
    return 0


async def _act(args: argparse.Namespace, config: HavenConfig, store: Store, at: float | None) -> int:
    if config.cloud_driver != "openstack":
        raise UserError(
            "haven backups run/restore needs an OpenStack cloud",
            'pass --cloud NAME or set [cloud] driver = "openstack"',
        )
    from haven.cloud.openstack import cloud_name, open_cloud  # openstacksdk only when needed

    cloud = open_cloud(
        cloud_name(config.openstack.name or None, os.environ), max_workers=config.openstack.max_workers
    )
    # haven serve's leader may be running backups on the same store: what this process starts it holds
    # (the leader's passes leave it alone), renewed each time round the wait, until it lets go below, or
    # the hold runs out if it dies.
    holder = f"cli:{socket.gethostname()}:{os.getpid()}"
    try:
        port, clock = cloud.backups(), RealClock()
        if args.backups_action == "run":
            runner = BackupRunner(config.backups, port, store, clock, holder=holder, hold_s=HOLD_S)
            record = await runner.backup_now(ServerId(args.server))
            lost: HoldLost | None = None
            try:
                record = await _wait_backup(runner, store, record, args.wait, args.json)
            except HoldLost as exc:
                lost = exc
            finally:
                record = await runner.release(record.id)
            _show(
                args.json,
                record_json(record),
                f"backup {record.id} of {record.server_name}: {record.state.value}",
            )
            if lost is not None:
                return _hold_lost(lost)
            return 0 if record.state.value == "available" or args.wait == 0 else 1
        restorer = Restorer(port, store, clock, config.backups.drills, holder=holder, hold_s=HOLD_S)
        restore = await restorer.restore(args.server, at, args.as_new, args.networks)
        deadline = time.monotonic() + args.wait
        lost = None
        try:
            while restore.state.in_flight and time.monotonic() < deadline:
                if not args.json:
                    print(f"  restore {restore.id[:8]}: {restore.state.value}", flush=True)
                await asyncio.sleep(POLL_S)
                restore = await restorer.renew(restore)  # HoldLost: no more calls from here
                if not restore.state.in_flight:
                    break
                try:
                    restore = await restorer.advance(restore)
                except Conflict:  # it moved on meanwhile: read it again next time round
                    restore = await restorer.renew(restore)
        except HoldLost as exc:
            lost = exc
        finally:
            restore = await restorer.release(restore)
        line = f"restore {restore.id} ({restore.purpose.value}): {restore.state.value}"
        _show(args.json, record_json(restore), f"{line} {restore.error}; server {restore.target_id}")
        if lost is not None:
            return _hold_lost(lost)
        started = args.wait == 0 and restore.state.in_flight  # --wait 0: started is success, as for run
        return 0 if restore.state.value == "done" or started else 1
    finally:
        cloud.close()


def _hold_lost(exc: HoldLost) -> int:
    print(f"haven: error: {exc}", file=sys.stderr, flush=True)
    return 1


async def _wait_backup(
    runner: BackupRunner, store: Store, record: BackupRecord, wait: float, quiet: bool
) -> BackupRecord:
    deadline = time.monotonic() + wait
    while record.state.in_flight and time.monotonic() < deadline:
        if not quiet:
            print(f"  backup {record.id[:8]}: {record.state.value}", flush=True)
        await asyncio.sleep(POLL_S)
        record = await runner.renew(record.id)  # HoldLost: no more calls from here
        if not record.state.in_flight:
            break
        with contextlib.suppress(Conflict):  # it moved on meanwhile: read it again
            await runner.advance(record)
        record = store.get_backup(record.id)
    return record


def _show(as_json: bool, doc: dict[str, Any], line: str) -> None:
    print(json.dumps(doc) if as_json else line)


def _parse_time(text: str) -> float:
    """``--at``: ISO 8601 (a date, or a date and time; ``Z`` or an offset, none: UTC) as epoch seconds."""
    stripped = text.strip()
    if stripped.endswith(("z", "Z")):
        stripped = stripped[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        raise UserError(f"--at {text!r} is not a time", "use ISO 8601, e.g. 2027-01-15T08:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def record_json(record: BackupRecord | RestoreRecord) -> dict[str, Any]:
    """A backup or restore record as JSON (enums as their values)."""
    doc = dataclasses.asdict(record)
    return {k: (v.value if hasattr(v, "value") else v) for k, v in doc.items()}


def run_drill(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``haven drill backup-restore [--hosts N] [--vms N] [--seed N] [--json]`` on the simulated cloud."""
    if getattr(args, "cloud", None) is not None:
        raise UserError(
            "the backup-restore drill runs on the simulated cloud only",
            "drop --cloud (on a real cloud: haven backups run/restore, and haven serve's restore drills)",
        )
    servers = 20 if args.vms is None else args.vms
    if servers < 2 or args.hosts < 1:
        raise UserError(
            f"the backup-restore drill needs at least 2 servers and 1 host (got --vms {servers}, "
            f"--hosts {args.hosts})",
            "pass --vms 2 or more (default 20)",
        )
    if servers > 2000:
        raise UserError(
            f"--vms {servers} is too many for this drill", "at most 2000 (bench/backups.py goes further)"
        )
    logging.getLogger("haven").setLevel(logging.ERROR)  # the report says what happened
    run = backup_restore.run_backup_restore(servers, args.hosts, args.seed)
    if args.json:
        report = asyncio.run(run)
        print(json.dumps(report.to_dict(), indent=2))
    else:
        with err.status(
            f"running drill backup-restore: {servers} servers, one virtual day of hourly backups..."
        ):
            report = asyncio.run(run)
        out.print(_drill_table(report))
        out.print(f"verdict: [bold]{report.verdict}[/]")
    return 0 if report.verdict == "recovered" else 1


def _drill_table(report: backup_restore.BackupDrillReport) -> Table:
    table = Table(
        title=(
            f"backup-restore: {report.servers} servers, {report.virtual_hours:.0f} virtual hours, "
            f"{report.backups_taken} image and {report.volume_backups_taken} Cinder backups (at most "
            f"{report.peak_uploading} uploading, cap "
            f"{report.max_concurrent}), images kept per server {report.images_per_server}, drills "
            f"{report.drills_passed} passed / {report.drills_failed} failed, alerts {report.alerts}"
        )
    )
    for column in (
        "server",
        "restore",
        "state",
        "restored server",
        "vm state",
        "from the newest backup",
        "data",
    ):
        table.add_column(column)
    for r in report.restores:
        table.add_row(
            r.server_id[:8], f"{r.how} ({r.source})", r.state,
            r.restored_id[:8] if r.exists else "missing", r.vm_state,
            "yes" if r.image_id and r.image_id == r.expected_image_id else "no",
            "as backed up" if r.data_ok else "wrong",
        )  # fmt: skip
    return table
