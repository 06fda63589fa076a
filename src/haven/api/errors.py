"""The one place that turns errors into Masakari fault responses.

Masakari answers every failure with ``{"<faultName>": {"code": N, "message": "..."}}``
(``badRequest``, ``itemNotFound``, ``conflictingRequest``...), and existing clients
parse that shape. ``install`` registers the handlers on the app built by
``haven.api.app.create_app``; the edge middlewares (auth, microversion), which run
outside FastAPI's exception handling, build their answers with ``fault``.

Mapping, and nowhere else:

- ApiError(status)           the status it carries (routes raise it for Masakari-specific answers)
- NotFound                   404 itemNotFound
- Conflict                   409 conflictingRequest
- StoreUnavailable           503 serviceUnavailable (the database, not the request, is at fault)
- UserError                  400 badRequest
- TemporaryError             503 serviceUnavailable
- RequestValidationError     400 badRequest naming the field
- Starlette HTTPException    its status (unknown path 404, wrong method 405)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from haven.domain.errors import (
    Conflict,
    Deposed,
    HavenError,
    NotFound,
    NotLeading,
    StoreUnavailable,
    TemporaryError,
    UserError,
)

FAULT_NAMES: Mapping[int, str] = {
    HTTPStatus.BAD_REQUEST: "badRequest",
    HTTPStatus.UNAUTHORIZED: "unauthorized",
    HTTPStatus.FORBIDDEN: "forbidden",
    HTTPStatus.NOT_FOUND: "itemNotFound",
    HTTPStatus.METHOD_NOT_ALLOWED: "badMethod",
    HTTPStatus.CONFLICT: "conflictingRequest",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "overLimit",
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: "badMediaType",
    HTTPStatus.TOO_MANY_REQUESTS: "overLimit",
    HTTPStatus.NOT_IMPLEMENTED: "notImplemented",
    HTTPStatus.SERVICE_UNAVAILABLE: "serviceUnavailable",
}
# Masakari has no name for the others (406 included) and says "masakariFault".
OTHER_FAULT = "masakariFault"


class ApiError(Exception):
    """An answer a route decides on itself: a status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def fault(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {FAULT_NAMES.get(status, OTHER_FAULT): {"code": status, "message": message}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def status_of(error: HavenError) -> int:
    if isinstance(error, NotFound):
        return HTTPStatus.NOT_FOUND
    if isinstance(error, Conflict):
        return HTTPStatus.CONFLICT
    if isinstance(error, StoreUnavailable | TemporaryError | Deposed | NotLeading):
        # StoreUnavailable is a UserError: first. Leadership lost during the request: ask the leader.
        return HTTPStatus.SERVICE_UNAVAILABLE
    if isinstance(error, UserError):
        return HTTPStatus.BAD_REQUEST
    return HTTPStatus.INTERNAL_SERVER_ERROR


def validation_message(errors: Sequence[Mapping[str, Any]]) -> str:
    """Masakari's wording, naming the first offending field as a dotted path inside the body."""
    if not errors:
        return "Invalid input"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "Malformed request body"
    location = [str(part) for part in first.get("loc", ())]
    if location and location[0] in {"body", "query", "path", "header"} and len(location) > 1:
        location = location[1:]
    field = ".".join(location) or "body"
    return f"Invalid input for field/attribute {field}. {first.get('msg', 'invalid value')}"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return fault(exc.status, exc.message)


async def _haven_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HavenError)
    status = status_of(exc)
    if status == HTTPStatus.INTERNAL_SERVER_ERROR:
        raise exc  # not a request's fault: let the server log it with its traceback
    message = exc.message if isinstance(exc, UserError) else str(exc)
    return fault(status, message)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return fault(HTTPStatus.BAD_REQUEST, validation_message(list(exc.errors())))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    messages: dict[int, str] = {
        HTTPStatus.NOT_FOUND: "The resource could not be found.",
        HTTPStatus.METHOD_NOT_ALLOWED: f"The request method {request.method} is not allowed on this resource",
    }
    message = messages.get(exc.status_code, str(exc.detail))
    return fault(exc.status_code, message, exc.headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HavenError, _haven_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
