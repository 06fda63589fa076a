"""The local driver's "is it running": a server haven did not start (another pid file, no
``--defaults-file`` of its my.cnf) is still running when its unix socket is served (review G5).

The "server" is a real listening unix socket at the node's socket path (what mariadbd holds while it
runs); no mariadbd is needed. A running node is never ``--wsrep-recover``ed nor started a second time.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.domain.errors import PermanentError
from haven.stateful.galera import Position
from haven.stateful.galera_node import LocalGaleraNode, NodeLayout

UUID = "6b4e2a38-0000-0000-0000-000000000001"


@pytest.fixture
def node(tmp_path: Path) -> LocalGaleraNode:
    (tmp_path / "my.cnf").write_text("[mariadbd]\n")  # no pid file: nothing haven started runs
    return LocalGaleraNode(NodeLayout("g1", tmp_path), sql_timeout_s=0.5)


@pytest.fixture
def served(node: LocalGaleraNode) -> Iterator[socket.socket]:
    """A server started otherwise (systemd, by hand): it listens on the node's socket."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(node.layout.socket))
    listener.listen(8)
    try:
        yield listener
    finally:
        listener.close()


def test_a_server_listening_on_the_nodes_socket_runs(node: LocalGaleraNode, served: socket.socket) -> None:
    assert node.pid() is None  # neither its pid file nor a process of its my.cnf
    assert asyncio.run(node.running())
    with pytest.raises(PermanentError, match="runs"):
        asyncio.run(node.recover_position())  # never --wsrep-recover on a live data folder
    asyncio.run(node.start(Position(UUID, 5)))
    assert node.started == []  # no second mariadbd on its data folder


def test_a_socket_file_left_by_a_killed_server_is_not_running(node: LocalGaleraNode) -> None:
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(node.layout.socket))  # bound, never listening again: the file a kill -9 leaves behind
    left.close()
    assert node.layout.socket.exists()
    assert not asyncio.run(node.running())


def test_no_socket_file_is_not_running(node: LocalGaleraNode) -> None:
    assert not asyncio.run(node.running())


def test_grastate_is_read_with_its_modification_time(node: LocalGaleraNode) -> None:
    """What keys a --wsrep-recover's result: the same file unchanged reads equal; rewritten, it does not."""
    node.layout.data.mkdir()
    path = node.layout.data / "grastate.dat"
    path.write_text(f"# GALERA saved state\nversion: 2.1\nuuid: {UUID}\nseqno: -1\nsafe_to_bootstrap: 0\n")
    first, again = asyncio.run(node.grastate()), asyncio.run(node.grastate())
    assert (first.uuid, first.seqno, first.safe_to_bootstrap) == (UUID, -1, False)
    assert first == again and first.mtime_ns is not None
    os.utime(path, ns=(first.mtime_ns + 1_000_000, first.mtime_ns + 1_000_000))  # rewritten, same text
    assert asyncio.run(node.grastate()) != first
