"""The API's status for haven's errors: leadership lost in the middle of a request is a 503 (ask the
leader, or again), never a 500 that reads as a bug; the other mappings are unchanged."""

from __future__ import annotations

from http import HTTPStatus

from haven.api.errors import status_of
from haven.domain.errors import Conflict, Deposed, HavenError, NotFound, NotLeading, UserError


def test_leadership_lost_during_a_request_is_503() -> None:
    deposed = Deposed("a newer leader owns it", epoch=5, owner_epoch=6)
    assert status_of(deposed) == HTTPStatus.SERVICE_UNAVAILABLE
    assert status_of(NotLeading("not leading any more")) == HTTPStatus.SERVICE_UNAVAILABLE


def test_the_other_errors_keep_their_status() -> None:
    assert status_of(NotFound("x")) == HTTPStatus.NOT_FOUND
    assert status_of(Conflict("x")) == HTTPStatus.CONFLICT
    assert status_of(UserError("x")) == HTTPStatus.BAD_REQUEST
    assert status_of(HavenError("x")) == HTTPStatus.INTERNAL_SERVER_ERROR
