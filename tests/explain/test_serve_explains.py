"""`haven serve` with ``[diagnosis]``: a failed boot Nova announces on a real RabbitMQ is explained and stored
while the engine runs, and `haven explain` reads it; serve still stops cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from oslo_config import cfg

from evidence.nova_samples import create_error
from haven.notify.oslo import oslo_messaging
from servers.process import free_port
from servers.rabbitmq import RabbitMQ, rabbitmq_fixture  # noqa: F401 (the session's broker)

HAVEN = str(Path(sys.executable).with_name("haven"))


def haven(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HAVEN_HOME": str(home)}
    return subprocess.run([HAVEN, *argv], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_serve_explains_a_failed_boot_from_nova_notifications(tmp_path: Path, rabbitmq: RabbitMQ) -> None:
    home = tmp_path / "home"
    home.mkdir()
    topic = f"versioned-{secrets.token_hex(4)}"
    (home / "haven.toml").write_text(f'[diagnosis]\ntransport_url = "{rabbitmq.url}"\ntopic = "{topic}"\n')
    env = {**os.environ, "HAVEN_HOME": str(home)}
    proc = subprocess.Popen(
        [HAVEN, "serve", "--bind", f"127.0.0.1:{free_port()}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    conf = cfg.ConfigOpts()
    conf([], project="nova-test", default_config_files=[], default_config_dirs=[])
    transport = oslo_messaging.get_notification_transport(conf, url=rabbitmq.url)
    nova = oslo_messaging.Notifier(
        transport, publisher_id="nova-compute:compute-7", driver="messagingv2", topics=[topic]
    )
    records: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not records:
            # Until haven's queue is bound, a notification has nowhere to go: send until one is explained.
            nova.error(
                {}, "instance.create.error", create_error("PortBindingFailed", "Binding failed for port")
            )
            time.sleep(1.0)
            if (home / "haven.db").exists():
                listed = haven(home, "explain", "--json")
                if listed.returncode == 0:
                    records = [r for r in json.loads(listed.stdout) if r["state"] == "done"]
        assert records, "no failed boot was explained within 60 s"
    finally:
        transport.cleanup()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"explaining failures (notifications on {topic}, no metrics)" in err
    assert "stopped cleanly" in err
    record = records[-1]
    assert record["source"] == "instance.create.error" and record["subject"] == (
        "178b0921-8f85-4257-88b6-2e743b5a975c"
    )
    symptom = record["symptom"]
    assert isinstance(symptom, dict) and symptom["phase"] == "port binding"
    assert symptom["what"] == "boot of some-server failed (PortBindingFailed)"
    shown = haven(home, "explain", str(record["id"]))
    assert shown.returncode == 0 and "boot of some-server failed (PortBindingFailed)" in shown.stdout
    assert "no evidence of a cause was found" in shown.stdout  # nothing else happened on this cloud
    # serve looked at the bus it listens on (haven.evidence.broker): it answered, and no more was kept
    with contextlib.closing(sqlite3.connect(home / "haven.db")) as db:
        reach = db.execute("SELECT kind, detail FROM evidence_events WHERE scope = 'broker:reach'").fetchall()
    assert reach == [("healthy", "RabbitMQ answers")]
