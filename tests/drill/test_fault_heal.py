"""database-slow's heal must leave the lab whole (issue 13): pooled database connections that went through
the delaying proxy were left ESTABLISHED on nova-conductor's and nova-scheduler's side with no socket at
the other end, their threads blocked in recvfrom for ever and both services down in Nova's list after
the heal. Its heal now closes every established connection to the port again, after the rule is gone and
the proxy stopped (so the pools connect again, straight). No lab: the rules and ``ss -K`` recorded."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from haven.drill import faults_network
from haven.drill.fault_proxy import FaultProxy
from haven.drill.faults_network import proxied


class _Lab:
    def port(self, service: str) -> int:
        return 3306


def test_a_pooled_protocols_heal_closes_its_connections_after_the_proxy_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done: list[str] = []
    made: list[FaultProxy] = []

    def iptables(argv: Sequence[str]) -> None:
        done.append(f"iptables {argv[5]}")

    def close_established(port: int) -> None:
        done.append(f"ss -K {port} (proxy {'stopped' if made[0]._loop is None else 'running'})")

    def proxy(upstream: int) -> FaultProxy:
        made.append(FaultProxy(upstream, delay_s=0.5))
        return made[-1]

    monkeypatch.setattr(faults_network, "close_established", close_established)
    heal = proxied("database", proxy, reconnect=True, run=iptables)(_Lab())  # type: ignore[arg-type]
    assert done == ["iptables -I", "ss -K 3306 (proxy running)"]  # the pools connect again, through it
    heal()
    assert done[2:] == ["iptables -D", "ss -K 3306 (proxy stopped)"]  # and again, straight


def test_an_http_proxys_heal_closes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[int] = []
    monkeypatch.setattr(faults_network, "close_established", closed.append)
    heal = proxied("image", lambda port: FaultProxy(port, http=True), run=lambda argv: None)(_Lab())  # type: ignore[arg-type]
    heal()
    assert closed == []
