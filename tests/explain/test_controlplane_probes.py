"""The control plane's probes as the explainer's evidence, end to end against a real MariaDB: the reconciler
runs its SQL probe (PyMySQL) on a SIGSTOPped database, the failure is kept in the store, and the explainer
ranks the database above nova-api for a server list that failed meanwhile; the probe passing again ends
it. Judged from the store's ranking (what haven explains) after the real server stopped answering."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.config import ControlPlaneConfig
from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.reconciler import Reconciler
from haven.diagnosis import EvidenceKind, NodeEvent, Symptom
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import RealClock
from haven.domain.controlplane import (
    Controller,
    ControlPlaneSettings,
    DomainName,
    ProbeKind,
    ProbeSpec,
    ServiceName,
    ServiceSpec,
    UnitActive,
    UnitStatus,
)
from haven.domain.ids import HostName
from haven.explain.explainer import Explainer
from haven.lab.mariadb import MARIADBD, USER, MariaDB, start_mariadb
from haven.store import Store
from haven.topology import openstack_topology
from servers.process import free_port, require

ENV: dict[str, str] = {}


class Running:
    """A controller whose every unit is running (the database's process is the test's, not systemd's)."""

    def __init__(self) -> None:
        self.restarts = 0

    async def status(self, unit: str) -> UnitStatus:
        return UnitStatus(UnitActive.ACTIVE, "running", invocation_id="one", active_since=time.time() - 3600)

    async def start(self, unit: str) -> None:
        pass

    async def stop(self, unit: str) -> None:
        pass

    async def restart(self, unit: str) -> None:
        self.restarts += 1


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    require(MARIADBD, "mariadb-server")
    db = start_mariadb(tmp_path_factory.mktemp("mariadb"), free_port(), ["probe"])
    ENV["DB_PW"] = db.password
    yield db
    db.stop()


async def test_a_hung_database_seen_by_the_sql_probe_explains_a_failed_server_list(mariadb: MariaDB) -> None:
    probe = ProbeSpec(
        ProbeKind.SQL, mariadb.port, user=USER, password_env="DB_PW", project="probe",
        timeout_s=1.0, period_s=0.5, failure_threshold=50,
    )  # fmt: skip
    spec = ServiceSpec(ServiceName("mariadb"), "mariadb.service", 1, probe=probe, stateful=True)
    host = HostName("ctl-1")
    config = ControlPlaneConfig(
        ControlPlaneSettings(pass_interval_s=0.2), (Controller(host, DomainName("r1"), "127.0.0.1"),), (spec,)
    )
    clock = RealClock()
    prober = NetworkProber(environ=ENV)
    units = Running()
    with Store.open("sqlite://") as store:
        reconciler = Reconciler(config, {host: units}, None, prober, store, clock)
        explainer = Explainer(store, openstack_topology(CATALOGUE.values()), clock)
        try:
            await reconciler.run_pass()  # passes: only "seen working" kept (its first sight)
            first = store.evidence_between(0, time.time() + 1)
            assert {(e.kind, e.scope) for e in first} == {
                (EvidenceKind.HEALTHY, "cp:sql:ctl-1"), (EvidenceKind.HEALTHY, "cp:unit:ctl-1")
            }  # fmt: skip
            assert mariadb.process.pid is not None
            os.kill(mariadb.process.pid, signal.SIGSTOP)
            try:
                symptom_at = time.time()  # nova-api's server list begins, and hangs on the database
                deadline = time.monotonic() + 10
                while len(store.evidence_between(0, time.time() + 1)) == 2 and time.monotonic() < deadline:
                    await reconciler.run_pass()
                kept = [e for e in store.evidence_between(0, time.time() + 1) if e not in first]
                store.keep_evidence(
                    {"probe:server-list": NodeEvent("nova-api", EvidenceKind.ERROR, symptom_at,
                                                    "server-list failed: timed out", "probe:server-list")},
                    time.time(),
                )  # fmt: skip
                record = await explainer.open_and_explain(
                    ExplanationRecord(
                        "probe:server-list:1", "probe:server-list", "nova-api",
                        Symptom("nova-api", symptom_at, "server list failed", "api"), time.time(),
                    )
                )  # fmt: skip
            finally:
                os.kill(mariadb.process.pid, signal.SIGCONT)
            (failed,) = kept
            assert failed.node == "mariadb" and failed.kind is EvidenceKind.ERROR
            assert failed.at <= symptom_at and "no answer within 1 s" in failed.detail
            assert record.diagnosis is not None
            assert [e.node for e in record.diagnosis.explanations][:2] == ["mariadb", "nova-api"]
            assert "the database (MariaDB) reported an error" in record.diagnosis.summary

            # Continued: the probe passes again, which ends the failure for a later symptom.
            deadline = time.monotonic() + 10
            while len(store.evidence_between(0, time.time() + 1)) < 5 and time.monotonic() < deadline:
                await reconciler.run_pass()
            now_kept = store.evidence_between(0, time.time() + 1)
            healthy = [e for e in now_kept if e.kind is EvidenceKind.HEALTHY and e not in first]
            assert [(e.node, e.scope) for e in healthy] == [("mariadb", "cp:sql:ctl-1")]
            assert healthy[0].at > failed.at
            later = await explainer.open_and_explain(
                ExplanationRecord(
                    "canary:later", "canary", "az1",
                    Symptom("server-boot", time.time(), "boot failed", "api"), time.time(),
                )
            )  # fmt: skip
            assert later.diagnosis is not None
            assert "mariadb" not in [e.node for e in later.diagnosis.explanations]
            assert units.restarts == 0
        finally:
            await prober.close()
