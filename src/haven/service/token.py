"""The local API token of the embedded default: one secret in a file only its owner can read.

Called by `haven serve` (which creates it on first start and hands it to the API)
and by `haven token` (which prints it for scripts and for clients such as
openstacksdk's ``admin_token`` auth). Production deployments use Keystone
tokens instead; this file is what a single-machine haven needs.

The file is created with mode 0600 in one ``os.open`` call, so it is never
readable by others, not even for an instant. A file that others can read is
refused rather than silently fixed: someone may already have copied it.
The token is never logged.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from haven.domain.errors import UserError

TOKEN_FILE = "token"
_OWNER_ONLY = 0o600


def token_path(home: Path) -> Path:
    return home / TOKEN_FILE


def ensure_token(home: Path, path: Path | None = None) -> str:
    """The token in ``home`` (or at ``path``: ``[api] token_file``), created on first use.

    A new token is 32 random bytes, URL-safe, never starting with "-".
    """
    home.mkdir(parents=True, exist_ok=True)
    path = path or token_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _OWNER_ONLY)
    except FileExistsError:
        return read_token(home, path)
    token = _new_token()
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return token


def _new_token() -> str:
    # One in 64 URL-safe tokens starts with "-", which command lines (`openstack --os-token X`)
    # take for an option; drawing again costs under a bit of the 256.
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


def read_token(home: Path, path: Path | None = None) -> str:
    """The existing token; a missing, empty or loosely protected file is a UserError naming the fix."""
    path = path or token_path(home)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise UserError(
            f"no API token at {path}", "start `haven serve` once (it creates the token), or check --home"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read the API token at {path}: {exc.strerror}") from None
    with os.fdopen(fd, encoding="ascii") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise UserError(
                f"the API token file {path} can be read or written by others (mode {mode:04o})",
                f"run `chmod 600 {path}` if nobody else could have read it, "
                f"else delete it so that `haven serve` makes a new one",
            )
        token = f.read().strip()
    if not token:
        raise UserError(f"the API token file {path} is empty", "delete it; `haven serve` makes a new one")
    return token


__all__ = ["TOKEN_FILE", "ensure_token", "read_token", "token_path"]
