"""Dashboard sessions: a login becomes a random session id in an HttpOnly, SameSite=Strict cookie.

The token or password a user logs in with is checked once, by the API's own authenticator, and never
kept: the session holds the principal (user, project, roles), a CSRF token for the page's forms and
its expiry. Only a digest of the session id is kept in memory, so a dump of the process does not hand
out live sessions. Sessions live in the serving process (a restart of ``haven serve`` asks users to log
in again; with several engines, a browser stays on the engine it logged in to).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from haven.api.auth import Principal

COOKIE = "haven_session"
DEFAULT_TTL_S = 8 * 3600.0
MAX_SESSIONS = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    csrf: str
    expires_at: float


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Session ids (by digest) to sessions; ``now`` comes from the caller's clock."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._by_digest: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, principal: Principal, now: float) -> tuple[str, Session]:
        """A new session for ``principal``: its id (for the cookie, shown nowhere else) and itself."""
        session_id = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(32), now + self._ttl_s)
        with self._lock:
            self._prune(now)
            self._by_digest[_digest(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None, now: float) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._by_digest.get(_digest(session_id))
            if session is not None and session.expires_at <= now:
                del self._by_digest[_digest(session_id)]
                return None
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._by_digest.pop(_digest(session_id), None)

    def _prune(self, now: float) -> None:
        expired = [d for d, s in self._by_digest.items() if s.expires_at <= now]
        for d in expired:
            del self._by_digest[d]
        while len(self._by_digest) >= MAX_SESSIONS:  # the oldest first (dicts keep insertion order)
            del self._by_digest[next(iter(self._by_digest))]


def csrf_ok(session: Session, sent: str | None) -> bool:
    """The form's (or header's) CSRF token is the session's, compared in constant time."""
    return sent is not None and hmac.compare_digest(sent.encode(), session.csrf.encode())
