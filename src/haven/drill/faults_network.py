"""The catalogue's network faults: a service slowed, lossy or answering 500 on one route; its data gone.

Called by haven.drill.faults (its CATALOG names these injections). ``tc netem`` has no kernel module on
these machines, so a delay or a failing route is a userspace proxy (haven.drill.fault_proxy) that one
lab service's traffic is sent through by an iptables rule in the nat table's OUTPUT chain:

    -p tcp -d 127.0.0.1 --dport SERVICE -m mark ! --mark 0x68617665 -j REDIRECT --to-ports PROXY

The proxy's own upstream connections carry that socket mark (SO_MARK), which the rule excludes; they
still come from 127.0.0.1, the host MariaDB's grants name (a proxy connecting from 127.0.0.2 was refused
by MariaDB: "Host '127.0.0.2' is not allowed to connect"). Loss is a filter rule dropping a
share of the packets to that one port (``-m statistic --mode random``). Each rule carries the comment
``haven-drill-fault`` and this lab's port, is inserted first in its chain, and is removed by its heal with
``-D`` and the very same specification (never a flush: other rules stay as they were).

Which connections a fault reaches: a REDIRECT is a NAT rule, applied by conntrack to *new* connections
only; a connection already open keeps going straight to the service. The lab's WSGI servers (Keystone,
Nova's API, Placement, Glance) close each connection after one answer, so every request after the rule
is a new connection through the proxy. The database's clients keep pooled connections: the slow
database also closes every established connection to MariaDB's port (``ss -K``), so the pools connect
again, through the proxy. A DROP rule is a filter rule: it reaches every packet, open connections too.
The heal removes the rule before it stops the proxy; stopping it closes what it carried, and clients
connect again, straight; for the database the heal also closes every established connection to its
port again (``ss -K``): pooled connections that went through the proxy were found ESTABLISHED on the
client's side with no socket at the other end after it stopped, their threads blocked for ever.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from haven.domain.errors import PermanentError
from haven.drill.fault_proxy import FaultProxy, Route

if TYPE_CHECKING:  # haven.drill.faults imports this module for its CATALOG
    from haven.drill.faults import FaultLab, Heal

COMMENT = "haven-drill-fault"
PROXY_MARK = 0x68617665  # "have"
Runner = Callable[[Sequence[str]], None]


def run_iptables(argv: Sequence[str]) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise PermanentError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


@dataclass(frozen=True)
class Rule:
    """One iptables rule: its table, chain and match-and-target specification."""

    table: str
    chain: str
    spec: tuple[str, ...]

    def argv(self, action: str) -> list[str]:
        """``-I`` (insert first), ``-D`` (delete exactly this rule) or ``-C`` (check it is there)."""
        return ["iptables", "-w", "5", "-t", self.table, action, self.chain, *self.spec]


def _port(port: int) -> str:
    if not 0 < port < 65536:
        raise PermanentError(f"no such port: {port}")
    return str(port)


def redirect_rule(port: int, to_port: int, mark: int = PROXY_MARK) -> Rule:
    """New loopback connections to ``port`` sent to ``to_port``, except those whose socket has ``mark``."""
    return Rule("nat", "OUTPUT", (
        "-p", "tcp", "-d", "127.0.0.1", "--dport", _port(port), "-m", "mark", "!", "--mark", hex(mark),
        "-m", "comment", "--comment", f"{COMMENT}:{port}", "-j", "REDIRECT", "--to-ports", _port(to_port),
    ))  # fmt: skip


def loss_rule(port: int, probability: float) -> Rule:
    """That share of the loopback packets to ``port`` dropped (every connection, open ones too)."""
    if not 0.0 < probability < 1.0:
        raise PermanentError(f"a loss probability is between 0 and 1, not {probability}")
    return Rule("filter", "OUTPUT", (
        "-p", "tcp", "-d", "127.0.0.1", "--dport", _port(port),
        "-m", "statistic", "--mode", "random", "--probability", f"{probability:g}",
        "-m", "comment", "--comment", f"{COMMENT}:{port}", "-j", "DROP",
    ))  # fmt: skip


def rules_left(ports: Sequence[int], read: Callable[[str], str] | None = None) -> list[str]:
    """A drill's rules still in place on any of ``ports`` (a drill SIGKILLed mid-injection leaves its
    rule), each as what is wrong and the command that removes it; [] when none. ``read`` gives
    ``iptables -S OUTPUT`` of a table (the real one by default); a host without iptables has none, and
    a listing that fails is said (the lab is not proven whole on a guess)."""
    if read is None and os.geteuid() != 0:  # only root reads (or adds) the rules: none of a drill's here
        return []
    wanted = {f"{COMMENT}:{port}" for port in ports}
    found: list[str] = []
    for table in ("filter", "nat"):
        try:
            listing = (read or _list_rules)(table)
        except FileNotFoundError:  # no iptables on this host: no drill's rule either
            continue
        except (OSError, subprocess.SubprocessError) as exc:  # unread is not "none left"
            said = (getattr(exc, "stderr", None) or "").strip() or str(exc)
            found.append(f"could not read iptables -t {table} -S OUTPUT for a drill's rules left: {said}")
            continue
        for line in listing.splitlines():
            words = line.replace('"', "").split()
            if words[:2] != ["-A", "OUTPUT"] or "--comment" not in words:
                continue
            comment = words[words.index("--comment") + 1]
            if comment in wanted:
                spec = line.split(None, 2)[2]
                found.append(f"a drill's iptables rule is still in place on port {comment.rsplit(':', 1)[1]} "
                             f"(remove it: iptables -t {table} -D OUTPUT {spec})")  # fmt: skip
    return found


def _list_rules(table: str) -> str:
    done = subprocess.run(["iptables", "-w", "5", "-t", table, "-S", "OUTPUT"], capture_output=True,
                          text=True, timeout=30, check=True)  # fmt: skip
    return done.stdout


class Rules:
    """The rules one fault added, each removed exactly by ``remove`` (in reverse), even after an error."""

    def __init__(self, run: Runner = run_iptables) -> None:
        self._run = run
        self.added: list[Rule] = []

    def add(self, rule: Rule) -> None:
        self._run(rule.argv("-I"))
        self.added.append(rule)

    def remove(self) -> None:
        """Each rule added deleted by its own specification; the first error raised after trying all."""
        errors: list[Exception] = []
        while self.added:
            rule = self.added.pop()
            try:
                self._run(rule.argv("-D"))
            except Exception as exc:  # the others are still removed
                errors.append(exc)
        if errors:
            raise errors[0]


def proxied(
    service: str, proxy: Callable[[int], FaultProxy], reconnect: bool = False, run: Runner = run_iptables
) -> Callable[[FaultLab], Heal]:
    """The lab's ``service`` (FaultLab.port) reached through ``proxy(port)`` while the fault lasts."""

    def inject(lab: FaultLab) -> Heal:
        port = lab.port(service)
        through = proxy(port)
        rules = Rules(run)
        through.start()
        try:
            rules.add(redirect_rule(port, through.port, through.mark))
            if reconnect:
                close_established(port)
        except BaseException:
            _heal(rules, through, port if reconnect else None)
            raise
        return lambda: _heal(rules, through, port if reconnect else None)

    return inject


def _heal(rules: Rules, through: FaultProxy, reconnect: int | None = None) -> None:
    """The rule removed, the proxy stopped, and with ``reconnect`` (a pooled protocol's port) every
    established connection to that port closed again: database-slow's heal left nova-conductor's and
    nova-scheduler's pooled connections that went through the proxy ESTABLISHED on their side with no
    socket at the other end (the proxy's close never reached them), their threads blocked in recvfrom
    with no read timeout, their services reporting nothing (down in Nova's list 10 minutes later);
    ``ss -K`` on that port brought both back within 10 s (measured). Pools then connect again, straight."""
    try:
        rules.remove()
    finally:
        through.stop()
        if reconnect is not None:
            close_established(reconnect)


def lossy(service: str, probability: float, run: Runner = run_iptables) -> Callable[[FaultLab], Heal]:
    """A share of the packets to the lab's ``service`` dropped (TCP retransmits: slow, sometimes failing)."""

    def inject(lab: FaultLab) -> Heal:
        rules = Rules(run)
        rules.add(loss_rule(lab.port(service), probability))
        return rules.remove

    return inject


def close_established(port: int) -> None:
    """Every established loopback connection to ``port`` closed (``ss -K``): its clients connect again."""
    ss = shutil.which("ss") or "ss"
    argv = [ss, "-K", "-t", "state", "established", "dst", "127.0.0.1", "dport", "=", f":{port}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise PermanentError(f"ss -K: {done.stderr.strip() or done.returncode}")


def slow_http(service: str, delay_s: float) -> Callable[[FaultLab], Heal]:
    """Every request to the lab's ``service`` delayed ``delay_s`` on its way in."""
    return proxied(service, lambda port: FaultProxy(port, delay_s=delay_s, http=True))


def slow_link(client: str, service: str, delay_s: float) -> Callable[[FaultLab], Heal]:
    """Every request from the lab's process ``client`` (its process group) to its ``service`` delayed
    ``delay_s``; every other client of ``service`` served as before (a slow link between two services)."""

    def inject(lab: FaultLab) -> Heal:
        group = lab.process(client).pid
        proxy = lambda port: FaultProxy(  # noqa: E731
            port, delay_s=delay_s, http=True, clients=lambda peer: owned_by_group(peer, group)
        )
        return proxied(service, proxy)(lab)

    return inject


def owned_by_group(client_port: int, group: int, proc: Path = Path("/proc")) -> bool:
    """Whether the loopback TCP socket on ``client_port`` belongs to a process of process group ``group``."""
    local = f"0100007F:{client_port:04X}"
    inodes = set()
    for line in (proc / "net" / "tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local:
            inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) != group:
                continue
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return True
        except (OSError, IndexError, ValueError):  # gone meanwhile, or not ours to read
            continue
    return False


def slow_tcp(service: str, delay_s: float) -> Callable[[FaultLab], Heal]:
    """Everything the lab's ``service``'s clients send delayed ``delay_s`` (each query of a database),
    its pooled connections closed first so they connect again through the delay."""
    return proxied(service, lambda port: FaultProxy(port, delay_s=delay_s), reconnect=True)


def failing_route(service: str, method: str, path: str) -> Callable[[FaultLab], Heal]:
    """The lab's ``service`` answering 500 to ``method`` on paths matching ``path``; the rest as it was."""
    return proxied(service, lambda port: FaultProxy(port, http=True, fail=Route(method, path)))


def image_data_gone(lab: FaultLab) -> Heal:
    """The canary image's data moved out of Glance's file store (its record stays active); heal: back."""
    data = lab.image_data()
    if not data.is_file():
        raise PermanentError(f"the canary image has no data file at {data}")
    aside = data.with_name(f".{data.name}.{COMMENT}")
    data.rename(aside)

    def heal() -> None:
        if not Path(data).exists():
            aside.rename(data)

    return heal
