"""A network partition between RabbitMQ nodes that share one address: their links blocked with iptables.

Who calls it: haven.stateful.unit_clusters (``haven drill rabbitmq-partition --cloud lab``: the HA lab's
nodes all listen on 127.0.0.1, each on its own distribution port, in one network namespace).

A node's traffic cannot be told apart by address or by port alone (every Erlang connection leaves from
an ephemeral port of 127.0.0.1, the CLI's too), so a cut pair (A, B) is two rules, in a chain of the
cut's own (``HAVEN-CUT-<pid>``) that OUTPUT jumps to (loopback packets cross OUTPUT once):
- a TCP packet to B's distribution port that carries A's node name is answered with a TCP reset, and
  the same for A's port and B's name. The first packet of an Erlang distribution handshake
  (``send_name``) carries the connecting node's name: A can no longer connect to B, nor B to A, while
  a CLI (rabbitmqctl, erl_call: their own names) still reaches both;
- the links already up are then closed from the cut nodes (``erlang:disconnect_node/1``, its node
  names spelled as character codes: an expression naming a node is itself refused by the rules). They
  cannot come back while the rules stand: RabbitMQ's reconnects (its node monitor pings the nodes it
  sees down every second) are reset at the handshake.

``heal`` removes the jump, the rules and the chain (the link is mended: the nodes reconnect and, under
``cluster_partition_handling = ignore``, Mnesia reports the partition); ``Cut`` is a context manager
whose exit heals, on a failure too. ``sweep`` removes the chains a dead process left (its pid no longer
runs). Root only (iptables).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from haven.domain.errors import HavenError

IPTABLES = "iptables"
PREFIX = "HAVEN-CUT-"


class CutError(HavenError):
    """The cut could not be made or removed (iptables refused); the message has its words."""


@dataclass(frozen=True, slots=True)
class Peer:
    """A node as the cut sees it: its Erlang name and its distribution port on 127.0.0.1."""

    name: str
    dist_port: int


def rules(pairs: Iterable[tuple[Peer, Peer]]) -> list[list[str]]:
    """The chain's rules (iptables arguments after ``-A CHAIN``) cutting each pair both ways."""
    out: list[list[str]] = []
    for a, b in pairs:
        for to, named in ((b, a), (a, b)):
            out.append([
                "-p", "tcp", "-d", "127.0.0.1", "--dport", str(to.dist_port), "-m", "string", "--algo",
                "bm", "--string", named.name, "-j", "REJECT", "--reject-with", "tcp-reset",
            ])  # fmt: skip
    return out


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            [IPTABLES, "-w", "10", *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CutError(f"iptables {' '.join(args)}: {exc}") from exc
    if check and result.returncode != 0:
        raise CutError(f"iptables {' '.join(args)}: {(result.stderr or result.stdout).strip()[:300]}")
    return result


def _remove(chain: str) -> None:
    """The jump to ``chain`` (every copy), its rules and the chain; what is already gone is fine."""
    while _run("-D", "OUTPUT", "-j", chain, check=False).returncode == 0:
        pass
    if _run("-F", chain, check=False).returncode == 0:
        _run("-X", chain)


def chains() -> list[str]:
    """The cut chains iptables holds now (this process's and any other's)."""
    listed = _run("-S").stdout
    return re.findall(rf"^-N ({re.escape(PREFIX)}\d+)$", listed, flags=re.M)


def sweep() -> list[str]:
    """Remove the cut chains whose process no longer runs (a drill killed mid-cut); their names."""
    removed = []
    for chain in chains():
        pid = int(chain[len(PREFIX) :])
        if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            _remove(chain)
            removed.append(chain)
    return removed


@dataclass
class Cut:
    """The cut of ``pairs``; ``make`` installs the rules, ``heal`` removes exactly them."""

    pairs: Sequence[tuple[Peer, Peer]]
    chain: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    made: bool = False

    def make(self) -> None:
        if not self.pairs:
            raise CutError("a cut of no pair of nodes")
        sweep()
        _remove(self.chain)  # a chain of this pid left by an earlier cut of this process
        self.made = True  # from here on, heal removes whatever part was installed
        try:
            _run("-N", self.chain)
            for rule in rules(self.pairs):
                _run("-A", self.chain, *rule)
            _run("-I", "OUTPUT", "1", "-j", self.chain)
        except CutError:
            self.heal()
            raise

    def heal(self) -> None:
        if self.made:
            _remove(self.chain)
            self.made = False

    def installed(self) -> bool:
        return self.chain in chains()

    def __enter__(self) -> Cut:
        self.make()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.heal()


__all__ = ["Cut", "CutError", "Peer", "chains", "rules", "sweep"]
