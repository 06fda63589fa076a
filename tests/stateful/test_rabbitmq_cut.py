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
from haven.stateful.rabbitmq_cut import PREFIX, Cut, CutError, Peer, chains, rules, sweep
from haven.stateful.rabbitmq_node import APP_STOPPED, erl_atom, parse_call_status

needs_iptables = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables") is None, reason="iptables as root"
)


def _listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def _sends(port: int, server: socket.socket, payload: bytes) -> bool:
    """Whether ``payload`` sent to ``port`` reaches the listener (False: the sender was reset)."""
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    peer, _ = server.accept()
    peer.settimeout(0.5)
    try:
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
            assert f"-A OUTPUT -j {cut.chain}" in _iptables()
            assert not _sends(a.dist_port, first, b"\x00\x15N" + b.name.encode())  # b's handshake to a
            assert not _sends(b.dist_port, second, b"\x00\x15N" + a.name.encode())  # a's to b
            assert _sends(a.dist_port, first, b"\x00\x15N" + b"rabbitmqcli-1-x@localhost")  # a CLI's
            assert _sends(a.dist_port, first, b"\x00\x15N" + a.name.encode())  # its own name: not cut
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
