"""A Keystone user's password turned into a project-scoped token, for the dashboard's login form.

The token is then checked by the API's own ``KeystoneAuthenticator`` (so the roles and the policy are
the API's) and forgotten: the browser gets a session cookie, never the token. keystoneauth1 is
synchronous; the dashboard calls this in a worker thread.
"""

from __future__ import annotations

import logging

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from haven.api.auth import AuthUnavailable

log = logging.getLogger(__name__)


class KeystonePasswordLogin:
    """``login(user, password, project)``: a token, or None when Keystone refuses the credentials."""

    def __init__(
        self,
        auth_url: str,
        *,
        user_domain_name: str = "Default",
        project_domain_name: str = "Default",
        timeout_s: float = 5.0,
    ) -> None:
        self._auth_url = auth_url
        self._user_domain = user_domain_name
        self._project_domain = project_domain_name
        self._timeout_s = timeout_s

    def __call__(self, username: str, password: str, project: str) -> str | None:
        auth = v3.Password(
            auth_url=self._auth_url,
            username=username,
            password=password,
            user_domain_name=self._user_domain,
            project_name=project,
            project_domain_name=self._project_domain,
        )
        session = ks_session.Session(auth=auth, timeout=self._timeout_s)
        try:
            token: str | None = session.get_token()
        except ks_exc.Unauthorized:
            return None
        except (ks_exc.ConnectFailure, ks_exc.ConnectTimeout, ks_exc.DiscoveryFailure) as exc:
            raise AuthUnavailable(
                f"haven cannot log you in: Keystone at {self._auth_url} is unreachable"
            ) from exc
        except ks_exc.ClientException as exc:
            log.warning("dashboard: Keystone refused a login: %s", type(exc).__name__)
            return None
        return token
