"""`haven lab up` waiting for Nova: a call with no answer (a connect timeout under load) is "not up yet"."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from keystoneauth1 import exceptions as ks_exceptions

from haven.lab.labfiles import NovaAdmin
from haven.lab.process import LabServiceError


def waiting() -> NovaAdmin:
    return object.__new__(NovaAdmin)  # _wait uses no session: the calls are the ``seen`` given


def answers(*replies: set[str] | Exception) -> Callable[[], set[str]]:
    left = list(replies)

    def seen() -> set[str]:
        reply = left.pop(0) if len(left) > 1 else left[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    return seen


def test_no_answer_for_a_while_is_waited_out() -> None:
    seen = answers(ks_exceptions.ConnectTimeout("t"), ks_exceptions.ConnectFailure("f"), {"c1"}, {"c1", "c2"})
    waiting()._wait(seen, ["c1", "c2"], 10.0, "nova-compute services up")


def test_no_answer_until_the_deadline_is_an_error_that_says_so() -> None:
    with pytest.raises(LabServiceError, match=r"waited 1.0 s for hypervisors .* no answer: ConnectTimeout"):
        waiting()._wait(answers(ks_exceptions.ConnectTimeout("t")), ["c1"], 1.0, "hypervisors")


def test_an_error_answer_is_not_waited_out() -> None:
    with pytest.raises(LabServiceError, match="500"):
        refused = answers(LabServiceError("Nova GET /os-hypervisors: 500"))
        waiting()._wait(refused, ["c1"], 10.0, "hypervisors")
