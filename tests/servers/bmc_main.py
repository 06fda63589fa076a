"""Entry point for the BMC emulators in tests: hold libvirt open, then run the emulator's main.

Run by tests/servers/redfish.py and tests/servers/ipmi.py with the *tool venv's* Python
(sushy-tools or virtualbmc), never imported by haven's tests:

    python bmc_main.py DOMAIN[,DOMAIN...] MODULE:FUNCTION [ARGS...]

libvirt's ``test:///default`` driver forgets every change when its last connection
closes. virtualbmc opens one connection per request, so without a held connection a
power-off does not stick (measured; sushy-tools keeps its own connection open, where it
sticks either way). Holding one connection for the life of the process (and of the
processes it forks) keeps the state, including the named domains, defined and started on
it, one per emulated host.

For virtualbmc it also makes pyghmi's BMC server refuse, as the IPMI spec says a
suite-3-only BMC must, an RMCP+ open-session request that proposes an authentication
algorithm other than HMAC-SHA1; unpatched, it accepts the client's suite 17 proposal
and then answers in suite 3, which no client can follow. Refused, pyghmi's client
retries with suite 3 by itself, as it does against real suite-3-only BMCs.
"""

from __future__ import annotations

import importlib
import sys

import libvirt

_DOMAIN = """<domain type='test'>
  <name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>"""
_HMAC_SHA1 = 1
_INVALID_AUTH_ALGORITHM = 0x11  # RMCP+ status code, IPMI 2.0 table 13-15


def _refuse_unsupported_suites() -> None:
    try:
        from pyghmi.ipmi.private import serversession
    except ImportError:
        return  # not the virtualbmc venv
    original = serversession.ServerSession.create_open_session_response

    def create_open_session_response(self: object, request: bytearray) -> bytearray:
        # Request: tag, role, 2 reserved, console session id (4), then the auth payload whose
        # algorithm is its 5th byte.
        if len(request) > 12 and request[12] != _HMAC_SHA1:
            return bytearray([request[0], _INVALID_AUTH_ALGORITHM, 0, 0]) + request[4:8]
        return original(self, request)

    serversession.ServerSession.create_open_session_response = create_open_session_response


def main() -> None:
    domains, target, *args = sys.argv[1:]
    held = libvirt.open("test:///default")
    for name in filter(None, domains.split(",")):
        held.defineXML(_DOMAIN.format(name=name)).create()
    _refuse_unsupported_suites()
    module, function = target.split(":")
    sys.argv = [target, *args]
    try:
        sys.exit(getattr(importlib.import_module(module), function)())
    finally:
        held.close()


if __name__ == "__main__":
    main()
