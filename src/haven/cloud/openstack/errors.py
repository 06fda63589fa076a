"""openstacksdk and keystoneauth errors, translated into haven's CloudError tree at the driver boundary.

Called by haven.cloud.openstack.calls for every request the driver makes, so no
openstack or keystoneauth exception ever leaves haven.cloud.openstack:

    NotFoundException (404)                       -> NotFound
    ConflictException (409)                       -> Conflict
    5xx, 429, connection failures, timeouts,
    a failed version discovery                    -> TemporaryError (a retry after ``delay`` may help)
    other 4xx (400 bad request, 403 policy, ...)  -> PermanentError, with Nova's own message
    a missing endpoint or a bad clouds.yaml       -> PermanentError naming what to fix
"""

from __future__ import annotations

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc

from haven.domain.errors import CloudError, Conflict, NotFound, PermanentError, TemporaryError

RETRY_DELAY_S = 2.0  # after a 5xx or a lost connection: Nova's API is usually back within seconds
MAX_RETRY_AFTER_S = 60.0


def translate(exc: BaseException, what: str) -> CloudError:
    """The CloudError for ``exc`` raised while doing ``what`` (e.g. "evacuate server X")."""
    if isinstance(exc, CloudError):
        return exc
    if isinstance(exc, os_exc.HttpException):
        return _from_http(exc, what)
    if isinstance(exc, ksa_exc.HttpError):  # keystoneauth's own (token requests to Keystone)
        status = exc.http_status or 0
        if status >= 500:
            return TemporaryError(f"{what}: Keystone answered {status}: {exc.message}", RETRY_DELAY_S)
        return PermanentError(f"{what}: Keystone refused ({status}): {exc.message}")
    if isinstance(exc, ksa_exc.EndpointNotFound | os_exc.EndpointNotFound):
        return PermanentError(f"{what}: no such endpoint in the service catalog ({exc})")
    if isinstance(exc, ksa_exc.DiscoveryFailure):  # mostly an API that is down or restarting
        return TemporaryError(f"{what}: cannot reach the cloud (version discovery): {exc}", RETRY_DELAY_S)
    if isinstance(exc, ksa_exc.ConnectionError | ksa_exc.RetriableConnectionFailure):
        return TemporaryError(f"{what}: cannot reach the cloud: {exc}", RETRY_DELAY_S)
    if isinstance(exc, TimeoutError | ConnectionError):
        return TemporaryError(f"{what}: cannot reach the cloud: {exc}", RETRY_DELAY_S)
    if isinstance(exc, ksa_exc.AuthorizationFailure | ksa_exc.Unauthorized | ksa_exc.MissingAuthPlugin):
        return PermanentError(f"{what}: authentication failed: {exc}; check the cloud's auth in clouds.yaml")
    if isinstance(exc, os_exc.SDKException | ksa_exc.ClientException):
        return PermanentError(f"{what}: {exc}")
    raise exc  # a programming error in haven: let it surface with its stack trace


def _from_http(exc: os_exc.HttpException, what: str) -> CloudError:
    status = exc.status_code or 0
    reason = nova_message(exc)
    message = f"{what}: {reason}" if reason else f"{what}: HTTP {status}"
    if isinstance(exc, os_exc.NotFoundException) or status == 404:
        return NotFound(message)
    if isinstance(exc, os_exc.ConflictException) or status == 409:
        return Conflict(message)
    if status >= 500 or status == 429:
        return TemporaryError(f"{message} (HTTP {status})", _retry_after(exc))
    return PermanentError(f"{message} (HTTP {status})")


def nova_message(exc: os_exc.HttpException) -> str:
    """The reason Nova gave (its JSON ``message``), without openstacksdk's URL decoration."""
    return str(exc.details or "").strip()


def _retry_after(exc: os_exc.HttpException) -> float:
    response = exc.response
    value = response.headers.get("Retry-After", "") if response is not None else ""
    try:
        return min(max(float(value), 0.1), MAX_RETRY_AFTER_S)
    except ValueError:
        return RETRY_DELAY_S
