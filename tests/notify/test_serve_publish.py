"""End to end: a host failure in a real `haven serve` reaches a webhook receiver and an oslo.messaging
listener on a real RabbitMQ; events the receiver missed while down are delivered after a restart."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from servers.process import free_port
from servers.rabbitmq import RabbitMQ

from .conftest import SECRET, Endpoint
from .receiver import WebhookReceiver

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]
HAVEN = str(Path(sys.executable).with_name("haven"))
LIFE = ["haven.notification.create", "haven.recovery.start", "haven.recovery.end"]


def start_serve(home: Path, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HAVEN_HOME": str(home), "HAVEN_TEST_HOOK_SECRET": SECRET.decode()}
    return subprocess.Popen(
        [HAVEN, "serve", "--bind", f"127.0.0.1:{free_port()}", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_serve(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


BusEvent = tuple[str, str, dict[str, Any], str]


def bus_events(endpoint: Endpoint, count: int, timeout_s: float) -> list[BusEvent]:
    """(publisher_id, event_type, payload, message_id) of the next ``count`` notifications on the bus."""
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        try:
            wait = max(0.1, deadline - time.monotonic())
            _, publisher, event_type, payload, meta = endpoint.got.get(timeout=wait)
        except queue.Empty:
            raise AssertionError(f"the bus brought {got}, not {count} events, in {timeout_s} s") from None
        got.append((publisher, event_type, payload, meta["message_id"]))
    return got


def pending_webhook_deliveries(home: Path) -> int:
    with sqlite3.connect(home / "haven.db") as db:
        row = db.execute(
            "SELECT count(*) FROM deliveries WHERE sink LIKE 'webhook:%' AND delivered_at IS NULL"
        ).fetchone()
        return int(row[0])


def test_a_host_failure_is_published_to_both_and_a_missed_webhook_arrives_after_restart(
    tmp_path: Path, rabbitmq: RabbitMQ, listener: tuple[str, Endpoint]
) -> None:
    topic, endpoint = listener
    home = tmp_path / "home"
    home.mkdir()
    receiver = WebhookReceiver(SECRET, free_port())  # not started: the receiver is down at first
    (home / "haven.toml").write_text(f"""
[publish]
webhooks = ["{receiver.url}"]
webhook_secret_env = "HAVEN_TEST_HOOK_SECRET"
transport_url = "{rabbitmq.url}"
topic = "{topic}"
publisher_host = "ha-test"
first_retry_s = 0.2
max_retry_s = 1.0
""")
    serve = start_serve(home, "--inject", "host-power-loss", "--inject-after", "1")
    try:
        on_bus = bus_events(endpoint, 3, timeout_s=60)
    finally:
        err = stop_serve(serve)
    assert [e[1] for e in on_bus] == LIFE, err
    assert {e[0] for e in on_bus} == {"haven.ha-test"}
    uuids = {e[2]["notification_uuid"] for e in on_bus}
    assert len(uuids) == 1
    assert on_bus[0][2]["type"] == "COMPUTE_HOST" and on_bus[2][2]["outcome"] == "finished"
    assert pending_webhook_deliveries(home) == 3  # kept for the receiver, which was down all along
    assert SECRET.decode() not in err and "guest:guest" not in err

    receiver.start()
    try:
        serve = start_serve(home)  # no new failure: only the outbox left from the first run
        try:
            got = receiver.wait_for(lambda r: len(r) >= 3, timeout_s=30)
        finally:
            stop_serve(serve)
    finally:
        receiver.stop()
    assert [r.event_type for r in got] == LIFE
    assert all(r.signature_ok for r in got)
    assert {r.body["payload"]["notification_uuid"] for r in got} == uuids
    assert pending_webhook_deliveries(home) == 0
    # At least once: a send cut short by the stop may come again, with the same id for consumers to drop.
    again = [endpoint.got.get_nowait()[4]["message_id"] for _ in range(endpoint.got.qsize())]
    assert set(again) <= {e[3] for e in on_bus}


def test_a_missing_secret_stops_serve_naming_it_with_nothing_touched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = '[publish]\nwebhooks = ["http://127.0.0.1:9/h"]\nwebhook_secret_env = "NOPE"\n'
    (home / "haven.toml").write_text(config)
    env = {**{k: v for k, v in os.environ.items() if k != "NOPE"}, "HAVEN_HOME": str(home)}
    argv = [HAVEN, "serve", "--bind", f"127.0.0.1:{free_port()}"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "webhook_secret_env names NOPE" in done.stderr and "export NOPE=" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in home.iterdir()) == ["haven.toml"]
