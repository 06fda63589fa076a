"""Keystone tokens for haven's API: validate X-Auth-Token as keystonemiddleware would.

Who calls it: ``haven serve`` builds a ``KeystoneAuthenticator`` when the config has a
``[keystone]`` section and hands it to ``create_app``; ``AuthGate`` asks it for the
caller of each request. keystonemiddleware is WSGI-only; haven's API is ASGI, so this
module does the same validation itself: haven logs in as its own service user
(keystoneauth1 keeps that token fresh) and asks ``GET /v3/auth/tokens`` with the
caller's token in ``X-Subject-Token``.

keystoneauth1 is synchronous. Its session already does what we need (service login,
re-login when the service token expires, timeouts), and redoing that over httpx would
duplicate it, so the authenticator is marked ``blocking`` and the gate calls it in
Starlette's worker threads; a cache hit costs no Keystone round trip. Valid answers are
cached for ``ttl_s`` but never past the token's own expiry; refusals for ``invalid_ttl_s``
(a short time, so a flood of bad tokens does not become a flood on Keystone). Tokens are
kept only as SHA-256 digests and never logged. Keystone unreachable, or refusing haven's
own credentials, raises ``AuthUnavailable`` (503): the caller's token is not at fault.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from haven.api.auth import AuthUnavailable, Principal

log = logging.getLogger(__name__)

_MAX_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class KeystoneCredentials:
    """haven's own service account, from the ``[keystone]`` section of its config."""

    auth_url: str
    username: str
    password: str
    project_name: str
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    timeout_s: float = 5.0

    def __repr__(self) -> str:
        return (
            f"KeystoneCredentials({self.username}@{self.project_name} at {self.auth_url}, <password hidden>)"
        )


def service_session(credentials: KeystoneCredentials) -> ks_session.Session:
    """A keystoneauth1 session logged in (lazily) as haven's service user."""
    auth = v3.Password(
        auth_url=credentials.auth_url,
        username=credentials.username,
        password=credentials.password,
        project_name=credentials.project_name,
        user_domain_name=credentials.user_domain_name,
        project_domain_name=credentials.project_domain_name,
    )
    return ks_session.Session(auth=auth, timeout=credentials.timeout_s)


class KeystoneAuthenticator:
    """``Authenticator`` backed by Keystone's token validation, with a small TTL cache."""

    blocking = True

    def __init__(
        self,
        credentials: KeystoneCredentials,
        *,
        ttl_s: float = 60.0,
        invalid_ttl_s: float = 2.0,
        session: ks_session.Session | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._credentials = credentials
        self._session = session or service_session(credentials)
        self._ttl_s = ttl_s
        self._invalid_ttl_s = invalid_ttl_s
        self._now = now
        self._cache: OrderedDict[str, tuple[Principal | None, float]] = OrderedDict()
        self._lock = threading.Lock()  # called from several worker threads at once

    def __repr__(self) -> str:
        return f"KeystoneAuthenticator({self._credentials!r})"

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
        hit = self._cached(key)
        if hit is not None:
            return hit[0]
        principal, expires_at = self._validate(token)
        if principal is None:
            self._remember(key, None, self._now() + self._invalid_ttl_s)
        else:
            self._remember(key, principal, min(self._now() + self._ttl_s, expires_at))
        return principal

    def _cached(self, key: str) -> tuple[Principal | None] | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry[1] <= self._now():
                del self._cache[key]
                return None
            return (entry[0],)

    def _remember(self, key: str, principal: Principal | None, until: float) -> None:
        if until <= self._now():
            return
        with self._lock:
            self._cache[key] = (principal, until)
            self._cache.move_to_end(key)
            while len(self._cache) > _MAX_CACHED:
                self._cache.popitem(last=False)  # the oldest entry

    def _validate(self, token: str) -> tuple[Principal | None, float]:
        status, body = self._ask(token)
        if status == 401:  # haven's own token was refused (revoked, expired early): log in again, once
            self._session.invalidate()
            status, body = self._ask(token)
        if status == 404:  # the caller's token is unknown, expired or revoked
            return None, 0.0
        if status == 200:
            return principal_from_token(body.get("token", {}))
        who = f"user {self._credentials.username}"
        if status == 401:
            problem = f"Keystone refuses haven's own token ({who}); check [keystone] in haven's config"
        elif status == 403:
            problem = f"{who} may not validate tokens; give it the service (or admin) role"
        else:
            problem = f"Keystone answered {status} to the validation"
        log.warning("token validation failed: %s", problem)
        raise AuthUnavailable(f"haven cannot check tokens: {problem}")

    def _ask(self, token: str) -> tuple[int, dict[str, Any]]:
        url = self._credentials.auth_url.rstrip("/")
        if not url.endswith("/v3"):
            url += "/v3"
        where = f"Keystone at {self._credentials.auth_url}"
        try:
            response = self._session.get(
                f"{url}/auth/tokens",
                headers={"X-Subject-Token": token},
                authenticated=True,
                raise_exc=False,
                connect_retries=0,
            )
        except ks_exc.Unauthorized as exc:  # haven's own service login was refused
            raise AuthUnavailable(
                f"haven cannot check tokens: {where} refused haven's service credentials "
                f"(user {self._credentials.username}); fix [keystone] in haven's config"
            ) from exc
        except (ks_exc.ConnectionError, ks_exc.RequestTimeout, ks_exc.DiscoveryFailure) as exc:
            raise AuthUnavailable(f"haven cannot check tokens: {where} is unreachable") from exc
        except ks_exc.ClientException as exc:
            raise AuthUnavailable(
                f"haven cannot check tokens: {where} failed ({type(exc).__name__})"
            ) from exc
        body: dict[str, Any] = response.json() if response.status_code == 200 else {}
        return response.status_code, body


def principal_from_token(token: Mapping[str, Any]) -> tuple[Principal | None, float]:
    """The caller and the token's expiry (epoch seconds) from Keystone's token body."""
    user = token.get("user") or {}
    if not user.get("id"):
        return None, 0.0
    project = token.get("project") or {}
    roles = frozenset(str(role["name"]) for role in token.get("roles") or () if role.get("name"))
    expires = token.get("expires_at")
    expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp() if expires else 0.0
    principal = Principal(user_id=str(user["id"]), project_id=project.get("id"), roles=roles)
    return principal, expires_at


__all__ = ["KeystoneAuthenticator", "KeystoneCredentials", "principal_from_token", "service_session"]
