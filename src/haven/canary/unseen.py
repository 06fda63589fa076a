"""What is left to blame when an API operation fails while every service it needs that haven can check works.

Called by haven.canary.runner at the end of a round's look (``observe``), before the round's failed probes
are explained. A canary talks to the cloud's APIs only, so some of what an operation needs it never
sees: Nova's server list reads Nova's database (MariaDB), which no API of the cloud answers for. When
that list fails while, in the same round, Keystone issued a token and Nova's API and the other services
the list needs answered their endpoints, the time went to what no check covers: the operation's needs
(haven.topology's ``needs``, the same model as impact analysis) minus what was seen working. That node
is kept as an ERROR dated at the failed call's start (scope ``unseen:<probe>``), with what was seen in
words; the same probe passing later is HEALTHY in that scope for each of its needs.

The rule fires only when every need the canary can check was seen working in the round (a hung Nova
API, whose endpoint does not answer, blames nothing here: its own evidence says it), only for a call
that got **no answer in time** (``no_answer``: the API took the request and its time went somewhere it
waits on), and never for an error that already names its dependency (``named_causes``: Nova's 500 with
``DBConnectionError``). An answered error (a 500 that names nothing, a 401) or a connection refused or
reset is the API's own failure, or the path's, not evidence about what it waits on: it blames nothing
unseen (a review found the first cut blaming MariaDB for nova-api's own "Unexpected API Error"). Pure:
no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from haven.diagnosis import EvidenceKind, NodeEvent
from haven.topology import Topology
from haven.topology.openstack import HYPERVISOR_LIST, SERVER_LIST

SCOPE = "unseen:"
# How the cloud drivers word a call that got no answer in time (keystoneauth's "Request to URL timed
# out", haven's own "did not answer within" / "no answer within").
_NO_ANSWER = re.compile(r"timed out|(?:did not answer|no answer) within", re.IGNORECASE)
# The canary's probes that are a user operation of the topology, and which: the zone list reads Nova's
# service list, served like the hypervisor list (nova-api and its database, a token checked).
PROBE_OPERATIONS: Mapping[str, str] = MappingProxyType({"server-list": SERVER_LIST, "zones": HYPERVISOR_LIST})
# The load balancer in front of the catalog's endpoints, where there is one: an endpoint that answered
# came through it.
BALANCER = "haproxy"


def probe_needs(topology: Topology) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Each operation probe's needs in ``topology``: (what it cannot do without, the caches it uses)."""
    return {probe: topology.needs(op) for probe, op in PROBE_OPERATIONS.items() if op in topology.paths}


def no_answer(error: str) -> bool:
    """Whether a failed call's ``error`` says it got no answer in time (not an answered error)."""
    return bool(_NO_ANSWER.search(error))


def left_to_blame(
    needs: tuple[frozenset[str], frozenset[str]], seen: Mapping[str, str], checkable: frozenset[str]
) -> tuple[str, ...]:
    """The hard needs no check saw, when every need the canary can check (``checkable``) was ``seen``
    working; () when one of those was not (its own evidence, or none, says more than a guess)."""
    hard, soft = needs
    if any(node in checkable and node not in seen for node in hard | soft):
        return ()
    return tuple(sorted(node for node in hard if node not in seen and node not in checkable))


def unseen_events(
    probe: str,
    at: float,
    error: str,
    blamed: tuple[str, ...],
    seen: Mapping[str, str],
    labels: Mapping[str, str],
) -> dict[str, NodeEvent]:
    """An ERROR of each blamed node, dated at the failed call's start ``at``, with what was seen."""
    if not blamed:
        return {}
    works = "; ".join(f"{labels.get(node, node)} {how}" for node, how in sorted(seen.items()))
    detail = f"{probe} failed ({error}) while every other service it needs answered haven: {works}"
    return {
        f"{SCOPE}{probe}:{node}:{at:.3f}": NodeEvent(node, EvidenceKind.ERROR, at, detail, SCOPE + probe)
        for node in blamed
    }


def passed_events(
    probe: str, at: float, needs: tuple[frozenset[str], frozenset[str]]
) -> dict[str, NodeEvent]:
    """``probe`` passed at ``at``: what it needs works for it again (HEALTHY in its scope only)."""
    return {
        f"{SCOPE}{probe}:{node}:{at:.3f}": NodeEvent(
            node, EvidenceKind.HEALTHY, at, f"{probe} passed through it", SCOPE + probe
        )
        for node in sorted(needs[0])
    }
