"""Entry point of a lab BMC: hold libvirt's test driver open with the host's domain, then run sushy-tools.

Run by haven.lab.bmc with the *sushy-tools tool venv's* Python (never imported by haven):

    python bmc_entry.py HOST --config EMULATOR_CONF

libvirt's ``test:///default`` driver forgets every change when its last connection
closes, so one connection is held for the life of the process, with one running domain
named after the compute host: the emulator's only system, which powers off and on at
once (no random delay, unlike sushy-tools' fake driver).
"""

import sys

import libvirt  # type: ignore[import-not-found, unused-ignore]
from sushy_tools.emulator import main as emulator  # type: ignore[import-not-found, unused-ignore]

_DOMAIN = """<domain type='test'>
  <name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>"""


def run() -> None:
    host, *args = sys.argv[1:]
    held = libvirt.open("test:///default")
    held.lookupByName("test").destroy()  # the driver's built-in domain: not one of ours
    held.defineXML(_DOMAIN.format(name=host)).create()
    sys.argv = ["sushy-emulator", *args]
    try:
        sys.exit(emulator.main())
    finally:
        held.close()


if __name__ == "__main__":
    run()
