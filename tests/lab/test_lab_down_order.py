"""`haven lab down` stops the services before what they talk to (their database, RabbitMQ, etcd).

No OpenStack needed: a stand-in "nova-compute" that, on SIGTERM, looks whether the stand-in
"rabbitmq-server" still runs, writes what it saw and exits. Signalled together (as before), a real
nova-compute spent its graceful stop reconnecting to a RabbitMQ stopped at the same moment (10 s, then
the lab wiring's SIGKILL) at the end of every test session.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from haven.lab import lab
from haven.lab.process import LabProcess
from haven.lab.state import LabState, alive, record

SERVICE = """
import signal, sys, time
bus, seen = sys.argv[1], sys.argv[2]
def running():
    try:
        return open(f"/proc/{bus}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
def stop(_n, _f):
    time.sleep(0.5)  # a graceful stop takes a moment (its last calls to the bus)
    open(seen, "w").write("bus running" if running() else "bus gone")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(seen + ".ready", "w").close()
while True:
    time.sleep(0.05)
"""


def test_down_stops_the_services_before_the_message_bus(tmp_path: Path) -> None:
    bus = LabProcess(
        "rabbitmq-server", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "bus.log"
    ).start()
    assert bus.pid is not None
    seen = tmp_path / "seen"
    service = LabProcess(
        "nova-compute", [sys.executable, "-c", SERVICE, str(bus.pid), str(seen)], tmp_path / "svc.log"
    ).start()
    assert service.pid is not None
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "seen.ready").exists():
            assert time.monotonic() < deadline, "the stand-in service did not start"
            time.sleep(0.05)
        # Recorded in start order, bus first: the old down() signalled every group at once.
        entries = [
            record("rabbitmq-server", bus.pid, bus.log),
            record("nova-compute", service.pid, service.log),
        ]
        LabState(folder=str(tmp_path), computes=[], urls={}, processes=entries).save()
        assert sorted(lab.down(tmp_path)) == ["nova-compute", "rabbitmq-server"]
        assert seen.read_text() == "bus running"  # the service stopped while its bus still ran
        assert not any(alive(entry) for entry in entries)
    finally:
        for process in (service, bus):
            process.stop(grace_s=1)
