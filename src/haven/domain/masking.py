"""Passwords kept out of what haven prints: a URL's userinfo, and a secret within a third party's words.

Called where a URL or an error that may quote one is printed, logged or stored: haven.store.engine (a
database URL that does not parse, and the parser's own words), haven.cli.serve (the start-up line) and
haven.evidence.broker (a failed look's words, kept as evidence). Pure; one masker for all of them.

- ``mask_url``: the password of each userinfo of a URL, as the URL's own syntax places it, whatever the
  password holds (``@``, ``,``, ``:``, ``/``) and whatever its length: ``rabbit://nova:***@h1:5672,
  nova:***@h2:5672/``, ``postgresql://haven:***@db/haven``. A URL that does not parse is masked all the
  same (a missing password stays missing).
- ``mask_words``: free text (an exception's message) with each URL in it masked as above, and each
  secret masked where it can be the credential without mangling the words around it: where it stands
  before ``@`` (a userinfo's remnant, as SQLAlchemy quotes ``'s3cret@h2'``), at any length; as a whole
  token (not inside a longer word: ``guest`` in ``'guest'`` or ``password=guest``, not in ``guesthouse``)
  from 4 characters; everywhere from 12 (no word holds such a string by chance). A password of 1 to 3
  characters is masked in free text only as a userinfo's: as a token it would mask the words "a" or
  "on", and ``str.replace`` made "failed" read "f***iled" (review R2-N3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
TOKEN_FROM = 4  # a secret this long or longer is masked wherever it stands as a whole token
ANYWHERE_FROM = 12  # ... and this long or longer wherever it appears
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def mask_url(raw: str) -> str:
    """``raw`` with the password of each of its userinfos replaced by ``***`` (text without ``://``, or a
    URL without a userinfo password, is returned as it is)."""
    split = _authority(raw)
    if split is None:
        return raw
    head, authority, tail = split
    out: list[str] = []
    last = 0
    for start, at in _userinfos(authority):
        colon = authority.find(":", start, at)
        if colon < 0:
            continue  # a user without a password
        out.append(authority[last : colon + 1] + MASK)
        last = at
    out.append(authority[last:])
    return head + "".join(out) + tail


def url_passwords(raw: str) -> list[str]:
    """The passwords ``raw``'s userinfos hold, as written (percent-encoded ones as they are)."""
    split = _authority(raw)
    if split is None:
        return []
    _, authority, _ = split
    found = []
    for start, at in _userinfos(authority):
        colon = authority.find(":", start, at)
        if colon >= 0 and at > colon + 1:
            found.append(authority[colon + 1 : at])
    return found


def mask_words(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every URL in it masked (``mask_url``), then each of ``secrets`` where it can be the
    credential (the module docstring)."""
    masked = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= ANYWHERE_FROM:
            masked = masked.replace(secret, MASK)
            continue
        shape = rf"(?<!\w){re.escape(secret)}(?=@)"  # a userinfo's remnant: the credential, at any length
        if len(secret) >= TOKEN_FROM:
            shape = rf"(?<!\w){re.escape(secret)}(?!\w)"
        masked = re.sub(shape, MASK, masked)
    return masked


def _authority(raw: str) -> tuple[str, str, str] | None:
    """``raw`` as (scheme and ``://``, the authority, the rest), or None without a userinfo. Parsers end a
    userinfo at different ``@``s: SQLAlchemy at the first (``postgresql://haven:Ab#9@db/haven`` has the
    password ``Ab#9``), urllib (oslo.messaging) at the last before the first ``/``, ``?`` or ``#``; an
    operator's unencoded password may hold any of them. The userinfo runs to the latest of those ``@``s and
    of the last one before the first ``/`` (``?`` and ``#`` taken as the password's), and the authority on
    to the first ``/``, ``?`` or ``#`` after it: where readings differ, the one that masks more wins (an
    ``@`` in a path or query only makes more of it masked, never less; ``postgresql://db:5432/haven?a=x@b``
    is masked as SQLAlchemy reads it, user ``db`` and a password)."""
    scheme, sep, rest = raw.partition("://")
    if not sep:
        return None
    query = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    slash = rest.find("/")
    last_at = max(
        rest.find("@"),
        rest.rfind("@", 0, query),
        rest.rfind("@", 0, slash if slash >= 0 else len(rest)),
    )
    if last_at < 0:
        return None
    after = [i for i in (rest.find(c, last_at) for c in "/?#") if i >= 0]
    end = min(after, default=len(rest))
    return scheme + sep, rest[:end], rest[end:]


def _userinfos(authority: str) -> list[tuple[int, int]]:
    """Each userinfo of ``authority`` as (its start, its ``@``): a host entry begins after the first
    ``,`` that follows the previous ``@`` (oslo.messaging's several hosts); an ``@`` with no ``,`` since
    the previous one is part of the same password, which then ends at this later ``@``."""
    entries: dict[int, int] = {}
    start, previous = 0, -1
    for at, char in enumerate(authority):
        if char != "@":
            continue
        if previous >= 0:
            comma = authority.find(",", previous, at)
            if comma >= 0:
                start = comma + 1
        entries[start] = at
        previous = at
    return sorted(entries.items())
