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

The string match runs only on a connection's first ``HANDSHAKE_BYTES`` (``-m connbytes``, both
directions, counted by conntrack: TCP's own handshake, ~180 bytes on loopback, then ``send_name``), not
on every packet of a long-lived link or AMQP stream to the same port. connbytes needs conntrack's byte
accounting: the kernel turns ``net.netfilter.nf_conntrack_acct`` on when such a rule is added, and
counts only the connections made after that (the links up before are closed anyway, above). Where
iptables refuses the match (no xt_connbytes) or accounting stays off, the cut falls back to the string
match on every packet and says so (``Cut.method``).

``heal`` removes the jump, the rules and the chain (the link is mended: the nodes reconnect and, under
``cluster_partition_handling = ignore``, Mnesia reports the partition), then reads iptables back: a chain
or a jump to it still there is a CutError naming it and the commands that remove it. It turns conntrack
accounting off again if the cut turned it on and no other cut remains. ``Cut`` is a context manager
whose exit heals, on a failure too. ``sweep`` removes the chains a dead process left (its pid no longer
runs). Root only (iptables).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from haven.domain.errors import HavenError

IPTABLES = "iptables"
PREFIX = "HAVEN-CUT-"
# A connection's bytes (IP lengths, both directions) within which its packets are matched: the TCP
# handshake and the distribution handshake's first message (send_name: ~15 bytes and the name) fit in a
# few hundred; nothing later in the connection is searched.
HANDSHAKE_BYTES = 1024
ACCT = Path("/proc/sys/net/netfilter/nf_conntrack_acct")


class CutError(HavenError):
    """The cut could not be made or removed (iptables refused); the message has its words."""


@dataclass(frozen=True, slots=True)
class Peer:
    """A node as the cut sees it: its Erlang name and its distribution port on 127.0.0.1."""

    name: str
    dist_port: int


def rules(
    pairs: Iterable[tuple[Peer, Peer]], handshake_bytes: int | None = HANDSHAKE_BYTES
) -> list[list[str]]:
    """The chain's rules (iptables arguments after ``-A CHAIN``) cutting each pair both ways; the string
    searched only in a connection's first ``handshake_bytes`` (None: in every packet)."""
    limit = (
        ["-m", "connbytes", "--connbytes", f"0:{handshake_bytes}", "--connbytes-dir", "both",
         "--connbytes-mode", "bytes"]
        if handshake_bytes else []
    )  # fmt: skip
    out: list[list[str]] = []
    for a, b in pairs:
        for to, named in ((b, a), (a, b)):
            out.append([
                "-p", "tcp", "-d", "127.0.0.1", "--dport", str(to.dist_port), *limit, "-m", "string",
                "--algo", "bm", "--string", named.name, "-j", "REJECT", "--reject-with", "tcp-reset",
            ])  # fmt: skip
    return out


def _acct() -> str | None:
    try:
        return ACCT.read_text().strip()
    except OSError:
        return None


def _leftovers(chain: str) -> list[str]:
    """The lines of ``iptables -S`` that still name ``chain`` (its creation, its rules, jumps to it)."""
    return [
        line for line in _run("-S").stdout.splitlines() if re.search(rf"(^| ){re.escape(chain)}( |$)", line)
    ]


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
    handshake_bytes: int | None = HANDSHAKE_BYTES  # None: the string searched in every packet
    method: str = ""  # how the rules match, once made
    _acct_before: str | None = field(default=None, init=False, repr=False)

    def make(self) -> None:
        if not self.pairs:
            raise CutError("a cut of no pair of nodes")
        sweep()
        _remove(self.chain)  # a chain of this pid left by an earlier cut of this process
        self._acct_before = _acct()
        self.made = True  # from here on, heal removes whatever part was installed
        try:
            _run("-N", self.chain)
            self.method = self._install()
            _run("-I", "OUTPUT", "1", "-j", self.chain)
        except CutError:
            self.heal()
            raise

    def _install(self) -> str:
        """The rules, limited to each connection's handshake when connbytes works; how they match."""
        if self.handshake_bytes:
            try:
                for rule in rules(self.pairs, self.handshake_bytes):
                    _run("-A", self.chain, *rule)
            except CutError as exc:
                why = f"connbytes refused: {exc}"
            else:
                if _acct() == "1":  # the kernel turned conntrack's byte counters on for connbytes
                    return f"string match in each connection's first {self.handshake_bytes} bytes (connbytes)"
                why = f"conntrack accounting is off ({ACCT} reads {_acct()!r}): connbytes would never match"
            _run("-F", self.chain)
        else:
            why = "not asked"
        for rule in rules(self.pairs, None):
            _run("-A", self.chain, *rule)
        return f"string match in every packet ({why})"

    def heal(self) -> None:
        """Remove the jump, the rules and the chain, then read iptables back: a CutError naming what is
        left and how to remove it (never a silent leftover that keeps the nodes apart)."""
        if not self.made:
            return
        try:
            _remove(self.chain)
        except CutError as exc:
            failure = str(exc)
        else:
            failure = ""
        left = _leftovers(self.chain)
        if left or failure:
            raise CutError(
                f"the cut's chain {self.chain} is still in iptables after its heal ({failure or 'no error'}; "
                f"left: {'; '.join(left)[:400]}): remove it with `iptables -D OUTPUT -j {self.chain}; "
                f"iptables -F {self.chain}; iptables -X {self.chain}` (and any other rule jumping to it: "
                f"`iptables -S | grep {self.chain}`)"
            )
        self.made = False
        if self._acct_before == "0" and _acct() == "1" and not chains():
            # the cut's connbytes turned accounting on: off again, unless another cut needs it
            with contextlib.suppress(OSError):
                ACCT.write_text("0\n")

    def installed(self) -> bool:
        return self.chain in chains()

    def __enter__(self) -> Cut:
        self.make()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.heal()


__all__ = ["HANDSHAKE_BYTES", "Cut", "CutError", "Peer", "chains", "rules", "sweep"]
