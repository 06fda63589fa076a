"""A drill's iptables rule left in place (its drill SIGKILLed mid-injection) is named with the command
that removes it, so the lab is reported not whole for that reason rather than for the canary timeouts
it causes. Real iptables, in a network namespace of its own (the host's rules are never touched)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from haven.drill.faults_network import rules_left

_IN_NAMESPACE = textwrap.dedent(
    """
    import shlex, subprocess
    from haven.drill.faults_network import Rules, loss_rule, redirect_rule, rules_left
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    assert rules_left([39337, 5432]) == []
    rules = Rules()
    rules.add(loss_rule(39337, 0.8))
    rules.add(redirect_rule(5432, 40000))
    rules.add(loss_rule(6000, 0.5))  # another lab's port: not this lab's business
    left = rules_left([39337, 5432])
    assert len(left) == 2, left
    for words in left:
        assert "still in place on port" in words, words
        subprocess.run(shlex.split(words.split("remove it: ", 1)[1].rstrip(")")), check=True)
    assert rules_left([39337, 5432]) == [], rules_left([39337, 5432])
    assert len(rules_left([6000])) == 1
    print("ok")
    """
)


@pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("iptables") and shutil.which("ip")),
    reason="needs root, unshare, ip and iptables",
)
def test_a_rule_left_on_the_lab_s_port_is_named_with_the_command_that_removes_it() -> None:
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", _IN_NAMESPACE],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_without_iptables_there_is_nothing_left() -> None:
    def missing(table: str) -> str:
        raise FileNotFoundError("iptables")

    assert rules_left([39337], read=missing) == []


def test_a_listing_that_fails_is_said_not_taken_for_no_rule() -> None:
    def locked(table: str) -> str:
        argv = ["iptables", "-t", table, "-S", "OUTPUT"]
        said = "Another app is currently holding the xtables lock.\n"
        raise subprocess.CalledProcessError(4, argv, stderr=said)

    wrong = rules_left([39337], read=locked)
    assert len(wrong) == 2 and all(w.startswith("could not read iptables -t ") for w in wrong), wrong
    assert all(w.endswith(": Another app is currently holding the xtables lock.") for w in wrong), wrong
