"""The partition cut (iptables rules of its own) and erl_call's status reader: no RabbitMQ server.

The cut's tests run real iptables (root) on loopback sockets of their own and read iptables back: a
handshake naming a cut node is reset, a CLI's is not, and the chain is gone afterwards, on a failure
too.
"""

from __future__ import annotations

import ast
import os
import shutil
import socket
import subprocess
import time

import pytest

from haven.domain.errors import TemporaryError
from haven.stateful.rabbitmq_cut import (
    ACCT,
    HANDSHAKE_BYTES,
    PREFIX,
    Cut,
    CutError,
    Peer,
    chains,
    rules,
    sweep,
)
from haven.stateful.rabbitmq_node import APP_STOPPED, erl_atom, parse_call_status

needs_iptables = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables") is None, reason="iptables as root"
)


def _listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def _sends(port: int, server: socket.socket, payload: bytes, after: int = 0) -> bool:
    """Whether ``payload`` sent to ``port`` reaches the listener (False: the sender was reset);
    ``after``: bytes of filler sent (and read) first on the same connection."""
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    peer, _ = server.accept()
    peer.settimeout(0.5)
    try:
        if after:
            client.sendall(b"x" * after)
            got = 0
            while got < after:
                got += len(peer.recv(65536))
        client.sendall(payload)
        try:
            return peer.recv(100) == payload
        except TimeoutError:
            time.sleep(0.1)
            with pytest.raises(OSError):  # the reset reached the sender: its next send fails
                client.sendall(b"again")
                time.sleep(0.2)
                client.sendall(b"again")
            return False
    finally:
        client.close()
        peer.close()


def _iptables() -> str:
    return subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout


def test_rules_cut_each_pair_both_ways_by_port_and_name() -> None:
    a, b, c = (
        Peer("rabbit-1@localhost", 101),
        Peer("rabbit-2@localhost", 102),
        Peer("rabbit-3@localhost", 103),
    )
    made = [" ".join(r) for r in rules([(c, a), (c, b)])]
    assert len(made) == 4
    assert any("--dport 101 " in r and "--string rabbit-3@localhost " in r for r in made)
    assert any("--dport 103 " in r and "--string rabbit-1@localhost " in r for r in made)
    assert any("--dport 102 " in r and "--string rabbit-3@localhost " in r for r in made)
    assert any("--dport 103 " in r and "--string rabbit-2@localhost " in r for r in made)
    assert not any("--dport 101 " in r and "rabbit-2" in r for r in made)  # a and b not cut
    assert all(r.endswith("-j REJECT --reject-with tcp-reset") for r in made)
    limit = (
        f"-m connbytes --connbytes 0:{HANDSHAKE_BYTES} --connbytes-dir both --connbytes-mode bytes -m string "
    )
    assert all(limit in r for r in made)  # the string searched in each connection's handshake only
    assert not any("connbytes" in " ".join(r) for r in rules([(c, a)], None))  # or in every packet


def test_erl_atom_does_not_spell_the_name() -> None:
    expr = erl_atom("rabbit-1@localhost")
    assert "rabbit" not in expr and " " not in expr
    codes = ast.literal_eval(expr.removeprefix("list_to_atom(").removesuffix(")"))
    assert bytes(codes).decode() == "rabbit-1@localhost"


def test_call_status_reads_the_node_and_its_stopped_app() -> None:
    running = (
        '{"alarms":[{"resource":"memory","node":"rabbit-2@localhost"}],"partitions":{"rabbit-1@localhost":'
        '["rabbit-3@localhost"]},"running":true,"running_nodes":["rabbit-1@localhost","rabbit-2@localhost"]}'
    )
    status = parse_call_status(running, "rabbit-1@localhost")
    assert status.running_nodes == ("rabbit-1@localhost", "rabbit-2@localhost")
    assert status.partitions == {"rabbit-1@localhost": ("rabbit-3@localhost",)}
    assert status.alarms == ("memory@rabbit-2@localhost",)
    with pytest.raises(TemporaryError, match=APP_STOPPED):  # what the loop reads as "app stopped"
        parse_call_status('{"running":false,"running_nodes":[],"partitions":{},"alarms":[]}', "r1")
    with pytest.raises(TemporaryError, match="unreadable"):
        parse_call_status("", "r1")


@needs_iptables
def test_cut_resets_the_named_handshake_only_and_heals_to_nothing() -> None:
    first, second = _listener(), _listener()
    a = Peer("rabbit-a@localhost", first.getsockname()[1])
    b = Peer("rabbit-b@localhost", second.getsockname()[1])
    try:
        with Cut([(a, b)]) as cut:
            assert cut.chain in chains()
            assert "connbytes" in _iptables() and cut.method.startswith(
                "string match in each connection's first"
            )
            assert f"-A OUTPUT -j {cut.chain}" in _iptables()
            assert not _sends(a.dist_port, first, b"\x00\x15N" + b.name.encode())  # b's handshake to a
            assert not _sends(b.dist_port, second, b"\x00\x15N" + a.name.encode())  # a's to b
            assert _sends(a.dist_port, first, b"\x00\x15N" + b"rabbitmqcli-1-x@localhost")  # a CLI's
            assert _sends(a.dist_port, first, b"\x00\x15N" + a.name.encode())  # its own name: not cut
            # past the handshake's bytes the name is not searched: a long link's later packets pass
            assert _sends(a.dist_port, first, b.name.encode(), after=2 * HANDSHAKE_BYTES)
        assert PREFIX not in _iptables()
        assert _sends(a.dist_port, first, b"\x00\x15N" + b.name.encode())  # mended
    finally:
        first.close()
        second.close()


@needs_iptables
def test_a_failed_cut_leaves_nothing_and_a_dead_process_chain_is_swept() -> None:
    bad = Cut([(Peer("rabbit-a@localhost", 70000), Peer("rabbit-b@localhost", 1))])  # no such port
    with pytest.raises(CutError, match="iptables"):
        bad.make()
    assert PREFIX not in _iptables()
    dead = subprocess.Popen(["true"])
    dead.wait()
    chain = f"{PREFIX}{dead.pid}"
    subprocess.run(["iptables", "-N", chain], check=True)
    subprocess.run(["iptables", "-I", "OUTPUT", "-j", chain], check=True)
    try:
        assert sweep() == [chain]
        assert PREFIX not in _iptables()
    finally:
        subprocess.run(["iptables", "-D", "OUTPUT", "-j", chain], capture_output=True, check=False)
        subprocess.run(["iptables", "-X", chain], capture_output=True, check=False)


@needs_iptables
def test_a_heal_that_leaves_the_chain_says_so_and_how_to_remove_it() -> None:
    """A rule of someone else's jumping to the cut's chain: iptables cannot delete the chain; the heal
    reads iptables back and names the chain and the commands, never a silent leftover."""
    server = _listener()
    a = Peer("rabbit-a@localhost", server.getsockname()[1])
    b = Peer("rabbit-b@localhost", 1)
    acct = ACCT.read_text()
    cut = Cut([(a, b)])
    cut.make()
    subprocess.run(["iptables", "-A", "INPUT", "-j", cut.chain], check=True)
    try:
        with pytest.raises(
            CutError, match=rf"{cut.chain} is still in iptables after its heal .*iptables -X {cut.chain}"
        ):
            cut.heal()
        assert cut.chain in chains()
    finally:
        subprocess.run(["iptables", "-D", "INPUT", "-j", cut.chain], capture_output=True, check=False)
        cut.heal()
        server.close()
    assert PREFIX not in _iptables()
    assert ACCT.read_text() == acct  # conntrack accounting as it was before the cut
