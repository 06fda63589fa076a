"""The service-protocol probes against the real servers: an SQL query on MariaDB, an AMQP round trip on
RabbitMQ; a SIGSTOPped database (hung, port open) fails by timeout and passes again once continued.
Nova's service-list probe (with Keystone's failures told from the replica's) is tested against stand-ins
in test_deep_probe.py. Not tested here yet (see docs/controlplane.md): the Keystone and Nova RPC-ping
probes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from haven.controlplane.config import parse_controlplane
from haven.controlplane.drivers.probes import NetworkProber
from haven.domain.controlplane import ProbeKind, ProbeSpec
from haven.domain.errors import ConfigError
from haven.lab.mariadb import MARIADBD, USER, MariaDB, start_mariadb
from servers.process import free_port, require
from servers.rabbitmq import RabbitMQ, rabbitmq_fixture  # noqa: F401 (the session's broker)

ENV = {"DB_PW": "", "MQ_PW": "guest", "BAD_PW": "not-the-password", "KS_PW": "", "NOVA_MQ": ""}


@pytest.fixture
async def prober() -> AsyncIterator[NetworkProber]:
    p = NetworkProber(environ=ENV)
    yield p
    await p.close()


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    require(MARIADBD, "mariadb-server")
    db = start_mariadb(tmp_path_factory.mktemp("mariadb"), free_port(), ["probe"])
    ENV["DB_PW"] = db.password
    yield db
    db.stop()


def _stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_sql_runs_its_query_and_a_hung_database_fails_by_timeout(
    prober: NetworkProber, mariadb: MariaDB
) -> None:
    spec = ProbeSpec(
        ProbeKind.SQL, mariadb.port, user=USER, password_env="DB_PW", project="probe", timeout_s=1.0,
        query="SELECT table_name FROM information_schema.tables WHERE table_schema = 'mysql' LIMIT 3",
    )  # fmt: skip
    ok = await prober.probe("127.0.0.1", spec)
    assert ok.ok and ok.detail.endswith(": 3 row(s)"), ok.detail
    wrong = await prober.probe(
        "127.0.0.1", ProbeSpec(ProbeKind.SQL, mariadb.port, user=USER, password_env="BAD_PW")
    )
    assert not wrong.ok and "Access denied" in wrong.detail
    assert mariadb.process.pid is not None
    for _ in _stopped(mariadb.process.pid):
        started = time.monotonic()
        hung = await prober.probe("127.0.0.1", spec)
        assert not hung.ok and "1 s" in hung.detail and time.monotonic() - started < 2.0
    assert (await prober.probe("127.0.0.1", spec)).ok


@pytest.mark.rabbitmq
async def test_amqp_round_trip_through_the_broker(prober: NetworkProber, rabbitmq: RabbitMQ) -> None:
    spec = ProbeSpec(ProbeKind.AMQP, rabbitmq.port, user="guest", password_env="MQ_PW", timeout_s=2.0)
    ok = await prober.probe("127.0.0.1", spec)
    assert ok.ok and ok.detail == "published and got back", ok.detail
    wrong = await prober.probe(
        "127.0.0.1", ProbeSpec(ProbeKind.AMQP, rabbitmq.port, user="guest", password_env="BAD_PW")
    )
    assert not wrong.ok and "ACCESS_REFUSED" in wrong.detail.upper().replace(" ", "_")


def test_a_probe_missing_what_its_kind_needs_is_named() -> None:
    def probe(body: dict[str, object]) -> None:
        parse_controlplane({"services": {"nova-conductor": {"probe": body}}}, "haven.toml")

    with pytest.raises(ConfigError, match="a nova_rpc probe needs transport_url_env"):
        probe({"kind": "nova_rpc", "topic": "conductor"})
    with pytest.raises(ConfigError, match="topic must be Nova's RPC topic"):
        probe({"kind": "nova_rpc", "topic": "conduct", "transport_url_env": "X"})
    with pytest.raises(ConfigError, match="a sql probe needs user, password_env"):
        probe({"kind": "sql", "port": 3306})
    probe({"kind": "nova_rpc", "topic": "conductor", "transport_url_env": "X", "timeout_s": 5.0})
