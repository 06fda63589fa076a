"""Entry point of a lab BMC: hold libvirt's test driver open with the host's domain, then run sushy-tools.

Run by haven.lab.bmc with the *sushy-tools tool venv's* Python (never imported by haven):

    python bmc_entry.py HOST POWER_FILE --config EMULATOR_CONF

libvirt's ``test:///default`` driver forgets every change when its last connection
closes, so one connection is held for the life of the process, with one running domain
named after the compute host: the emulator's only system, which powers off and on at
once (no random delay, unlike sushy-tools' fake driver).

The BMC's own record of its power (POWER_FILE, JSON): ``power`` ("On"/"Off", read from
the domain), ``since`` (epoch seconds of the last change) and the last ``changes``. It is
written once at start and after every reset, before the reset is answered; reading and
changing the power state share one lock with that write, so no Redfish answer can show a
state this file does not already hold. The drills' witness reads this file, the BMC's
own state, instead of asking through Redfish (haven.cli.lab_controls.LabBmcRecords).
"""

import json
import os
import sys
import threading
import time

import libvirt  # type: ignore[import-not-found, unused-ignore]
from sushy_tools.emulator import main as emulator  # type: ignore[import-not-found, unused-ignore]
from sushy_tools.emulator.resources.systems.libvirtdriver import (  # type: ignore[import-not-found, unused-ignore]
    LibvirtDriver,
)

_DOMAIN = """<domain type='test'>
  <name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>"""
_KEPT_CHANGES = 50


class _PowerRecord:
    """The domain's power, written to a file under the lock every power read and change takes."""

    def __init__(self, domain: object, path: str) -> None:
        self.lock = threading.Lock()
        self._domain, self._path = domain, path
        self._power = ""
        self._since = time.time()
        self._changes: list[dict[str, object]] = []

    def write(self, reset: str) -> None:
        """Record the domain's power now (the caller holds the lock); a change is kept with its time."""
        power = "On" if self._domain.isActive() else "Off"  # type: ignore[attr-defined]
        if power != self._power:
            self._power, self._since = power, time.time()
            self._changes = [*self._changes, {"power": power, "at": self._since, "reset": reset}]
            self._changes = self._changes[-_KEPT_CHANGES:]
        record = {"power": power, "since": self._since, "changes": self._changes, "pid": os.getpid()}
        tmp = f"{self._path}.tmp"
        with open(tmp, "w") as out:
            json.dump(record, out)
        os.replace(tmp, self._path)


def _recorded(record: _PowerRecord) -> None:
    """Make sushy-tools' libvirt driver read and change the power under the record's lock."""
    get_power, set_power = LibvirtDriver.get_power_state, LibvirtDriver.set_power_state

    def get_power_state(self: object, identity: str) -> object:
        with record.lock:
            return get_power(self, identity)

    def set_power_state(self: object, identity: str, state: str) -> object:
        with record.lock:
            try:
                return set_power(self, identity, state)
            finally:
                record.write(state)

    LibvirtDriver.get_power_state = get_power_state
    LibvirtDriver.set_power_state = set_power_state


def run() -> None:
    host, power_file, *args = sys.argv[1:]
    held = libvirt.open("test:///default")
    held.lookupByName("test").destroy()  # the driver's built-in domain: not one of ours
    domain = held.defineXML(_DOMAIN.format(name=host))
    domain.create()
    record = _PowerRecord(domain, power_file)
    with record.lock:
        record.write("start")
    _recorded(record)
    sys.argv = ["sushy-emulator", *args]
    try:
        sys.exit(emulator.main())
    finally:
        held.close()


if __name__ == "__main__":
    run()
