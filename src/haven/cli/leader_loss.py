"""`haven drill leader-loss`: start a throw-away etcd and PostgreSQL, run the drill on them, stop them.

Called by haven.cli.main for that one scenario: unlike the other drills it needs real servers
(haven.drill.leader_loss says what is real and what is modelled). Both run from Debian's
binaries on free loopback ports in temporary folders, and are stopped and removed afterwards.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from pathlib import Path

from haven.domain.errors import UserError
from haven.drill.leader_loss import LeaderLossOptions, LeaderLossReport, run_leader_loss
from haven.lab.etcd import ETCD, EtcdServer
from haven.lab.postgres import POSTGRES_ROOT, PostgresServer, find_bindir
from haven.lab.process import LabServiceError

_INSTALL_HINT = "install them: apt-get install etcd-server postgresql (or make system-deps)"


def run_with_own_servers(
    hosts: int, vms: int, seed: int, ha_fraction: float, engines: int = 3, ttl_s: int = 3
) -> LeaderLossReport:
    etcd_binary, bindir = Path(ETCD), find_bindir()
    if not etcd_binary.exists():
        raise UserError(f"the leader-loss drill needs etcd: {ETCD} not found", _INSTALL_HINT)
    if bindir is None:
        raise UserError(
            f"the leader-loss drill needs PostgreSQL: no server under {POSTGRES_ROOT}", _INSTALL_HINT
        )
    folder = Path(tempfile.mkdtemp(prefix="haven-leader-loss-"))
    etcd = EtcdServer(etcd_binary, folder)
    postgres = PostgresServer(bindir)
    try:
        etcd.start()
        postgres.start()
        store_url = postgres.url_for(postgres.create_database("haven"))
        options = LeaderLossOptions(
            etcd.url, store_url, engines=engines, hosts=hosts, vms=vms, seed=seed,
            ha_fraction=ha_fraction, ttl_s=ttl_s, cluster=f"drill-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        return asyncio.run(run_leader_loss(options))
    except LabServiceError as exc:
        raise UserError(f"the leader-loss drill could not start its servers: {exc}", _INSTALL_HINT) from None
    finally:
        postgres.stop()
        etcd.stop()
        shutil.rmtree(folder, ignore_errors=True)
