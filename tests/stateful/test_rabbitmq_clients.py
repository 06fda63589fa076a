"""How a RabbitMQ node is asked: erl_call first, rabbitmqctl when erl_call cannot use a node that listens.

No RabbitMQ server: the real ``/usr/bin/erl_call`` against loopback sockets of the tests' own (a port
nothing listens on stands for a node that is down; a listener that accepts and closes, for a node that
refuses erl_call's handshake, as a wrong cookie does; one that accepts and never answers, for a hung
node), and a stand-in rabbitmqctl (a script that records its arguments and prints what the real
rabbitmqctl printed here, recorded in tests/stateful/recorded/). erl_call's words below are recorded
from the real binary on this machine (OTP 25.2.3, 2026-12-07), against a plain Erlang node and a real
RabbitMQ 3.10.8 node of the HA lab.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.domain.errors import TemporaryError
from haven.stateful.rabbitmq_node import (
    APP_STOPPED,
    ERL_CALL,
    ErlCallUnusable,
    LocalRabbitNode,
    RabbitLayout,
    client_name,
    connect_failed,
)

RECORDED = Path(__file__).parent / "recorded"
NAME = "rabbit-1@localhost"
# erl_call's stderr (exit 1), recorded: nothing on the port, a wrong cookie (plain Erlang node and
# RabbitMQ 3.10.8: the same line), epmd's port, a listener closing at once; and HOME without a cookie.
REFUSED = 'erl_call: failed to connect to node with address "127.0.0.1:43799"'
NO_COOKIE = "<ERROR> get_cookie: can't open cookie fileerl_call: can't create C node c17@vm; 0"

needs_erl_call = pytest.mark.skipif(not ERL_CALL.exists(), reason="needs /usr/bin/erl_call (erlang-base)")


def test_erl_calls_connect_failures_are_told_from_other_failures() -> None:
    assert connect_failed(REFUSED) and connect_failed(NO_COOKIE)
    assert not connect_failed("no answer in 2 s (signal 14)")  # its -timeout: SIGALRM, nothing printed
    assert not connect_failed(f"Error: this command {APP_STOPPED}")  # rabbitmqctl's words
    assert not connect_failed("")


def test_each_erl_call_at_once_to_one_node_has_its_own_name_and_names_are_reused() -> None:
    """erl_call's default name is fixed (c17): a second call to a node while one runs was refused with
    "failed to connect" (recorded on a plain Erlang node here; with -h names both answered)."""
    with client_name(4000) as first, client_name(4000) as second, client_name(4001) as other:
        assert len({first, second}) == 2 and other == first  # another node: its own pool
        assert first.startswith("haven") and "@" not in first
    with client_name(4000) as again:
        assert again == first  # freed slots are reused: the node's atoms grow with processes only


@pytest.fixture
def ctl(tmp_path: Path) -> Path:
    """A stand-in rabbitmqctl: appends its arguments to ``ctl.log``, prints the recorded outputs."""
    script = tmp_path / "rabbitmqctl"
    script.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$*\" >> {tmp_path}/ctl.log\n"
        'case "$3" in\n'
        f"  cluster_status) cat {RECORDED / 'rabbitmqctl_cluster_status.json'} ;;\n"
        '  eval) case "$4" in\n'
        f"    *rabbit_amqqueue*) cat {RECORDED / 'queues_rabbitmqctl_eval.txt'} ;;\n"
        "    *) echo \"['rabbit-3@localhost']\" ;;\n"
        "  esac ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    return script


def _node(
    tmp_path: Path, port: int, ctl: Path, erl_call: Path = ERL_CALL, timeout_s: float = 5.0
) -> LocalRabbitNode:
    cookie = tmp_path / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text("HAVENTESTCOOKIE")
        cookie.chmod(0o400)
    layout = RabbitLayout(NAME, tmp_path / "n1", tmp_path, 4369, 5672, port)
    return LocalRabbitNode(layout, timeout_s, erl_call=erl_call, rabbitmqctl=ctl)


def _ctl_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "ctl.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


@pytest.fixture
def refusing() -> Iterator[int]:
    """A listener that accepts and closes each connection at once: a node refusing the handshake."""
    yield from _listener(hold=False)


@pytest.fixture
def silent() -> Iterator[int]:
    """A listener that accepts and never answers: a hung node."""
    yield from _listener(hold=True)


def _listener(hold: bool) -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if hold:
                held.append(conn)
            else:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()
        for conn in held:
            conn.close()
        thread.join(5)


@needs_erl_call
def test_a_node_that_does_not_listen_reads_as_down_without_rabbitmqctl(
    tmp_path: Path, ctl: Path, closed_port: int
) -> None:
    node = _node(tmp_path, closed_port, ctl)
    with pytest.raises(TemporaryError, match=r"nothing listens on 127\.0\.0\.1:") as caught:
        asyncio.run(node.status())
    assert not isinstance(caught.value, ErlCallUnusable) and "failed to connect" in str(caught.value)
    with pytest.raises(TemporaryError, match="nothing listens"):
        asyncio.run(node.restart_app())
    assert _ctl_calls(tmp_path) == []  # no rabbitmqctl VM started for a node that is down


@needs_erl_call
def test_a_node_that_refuses_erl_call_is_asked_through_rabbitmqctl(
    tmp_path: Path, ctl: Path, refusing: int
) -> None:
    node = _node(tmp_path, refusing, ctl)
    status = asyncio.run(node.status())
    assert status.running_nodes == ("rabbit-3@localhost", "rabbit-1@localhost")  # the recorded answer
    assert status.partitions == {} and status.alarms == ()
    asyncio.run(node.restart_app())
    assert asyncio.run(node.reachable(["rabbit-2@localhost", "rabbit-3@localhost"])) == (
        "rabbit-3@localhost",
    )
    calls = _ctl_calls(tmp_path)
    assert calls[:3] == [
        f"-n {NAME} cluster_status --formatter json",
        f"-n {NAME} stop_app",
        f"-n {NAME} start_app",
    ]
    assert calls[3].startswith(f"-n {NAME} eval [N || N <- ['rabbit-2@localhost','rabbit-3@localhost']")


@needs_erl_call
def test_a_node_that_accepts_and_never_answers_is_not_asked_again_through_rabbitmqctl(
    tmp_path: Path, ctl: Path, silent: int
) -> None:
    node = _node(tmp_path, silent, ctl, timeout_s=1.0)
    with pytest.raises(TemporaryError, match=r"no answer in 1 s") as caught:
        asyncio.run(node.status())
    assert not isinstance(caught.value, ErlCallUnusable)
    assert _ctl_calls(tmp_path) == []


def test_without_erl_call_rabbitmqctl_is_asked(tmp_path: Path, ctl: Path, closed_port: int) -> None:
    node = _node(tmp_path, closed_port, ctl, erl_call=tmp_path / "no-erl_call")
    assert asyncio.run(node.status()).running_nodes == ("rabbit-3@localhost", "rabbit-1@localhost")
    assert _ctl_calls(tmp_path) == [f"-n {NAME} cluster_status --formatter json"]


def test_rabbitmqctls_failure_is_named_with_its_words(tmp_path: Path, closed_port: int) -> None:
    failing = tmp_path / "rabbitmqctl"
    failing.write_text(f"#!/bin/sh\nprintf '%s\\n' \"Error: this command {APP_STOPPED}.\" >&2\nexit 69\n")
    failing.chmod(0o755)
    node = _node(tmp_path, closed_port, failing, erl_call=tmp_path / "no-erl_call")
    with pytest.raises(TemporaryError, match=f"rabbitmqctl cluster_status on {NAME}: Error: .*{APP_STOPPED}"):
        asyncio.run(node.status())


@needs_erl_call
def test_erl_call_once_refused_is_not_tried_again_for_a_while_and_the_queues_cli_read_is_spaced(
    tmp_path: Path, ctl: Path, refusing: int
) -> None:
    """Each erl_call to a node that refuses it is a handshake the node refuses (and logs), then the
    same rabbitmqctl VM; the queues through rabbitmqctl are one more VM: read once a minute."""
    runs = tmp_path / "erl_call.log"
    wrapper = tmp_path / "erl_call"
    wrapper.write_text(f'#!/bin/sh\necho run >> {runs}\nexec {ERL_CALL} "$@"\n')
    wrapper.chmod(0o755)
    node = _node(tmp_path, refusing, ctl, erl_call=wrapper)
    asyncio.run(node.status())
    asyncio.run(node.status())
    assert asyncio.run(node.queues()).queues == 5002  # the recorded answer, through rabbitmqctl eval
    with pytest.raises(TemporaryError, match="through rabbitmqctl they are read once every 60 s"):
        asyncio.run(node.queues())
    assert runs.read_text().split() == ["run"]  # tried once, then remembered as refused
    assert [c.split()[2] for c in _ctl_calls(tmp_path)] == ["cluster_status", "cluster_status", "eval"]
    node.erl_call_retry_s = node.queues_cli_every_s = 0.0  # both spans over
    asyncio.run(node.queues())
    assert runs.read_text().split() == ["run", "run"] and len(_ctl_calls(tmp_path)) == 4


@needs_erl_call
def test_a_node_remembered_as_refusing_erl_call_that_stops_listening_reads_as_down_at_once(
    tmp_path: Path, ctl: Path, refusing: int, closed_port: int
) -> None:
    node = _node(tmp_path, refusing, ctl)
    asyncio.run(node.status())  # refused: rabbitmqctl asked, the refusal remembered
    node.layout = dataclasses.replace(node.layout, dist_port=closed_port)  # the node goes down
    with pytest.raises(TemporaryError, match="nothing listens") as caught:
        asyncio.run(node.status())
    assert not isinstance(caught.value, ErlCallUnusable)
    assert len(_ctl_calls(tmp_path)) == 1  # no rabbitmqctl VM for a node that is down
