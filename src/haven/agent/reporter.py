"""Delivering the spool to the engine: ``POST /v1/notifications``, in order, until each one is settled.

Who calls it: ``haven.agent.runner`` runs ``Reporter.run`` for the agent's lifetime and calls
``wake`` after adding to the spool.

Each answer settles a notification or not:
- 2xx: delivered. 409: delivered too (the engine already has it, or the host is on maintenance:
  Masakari's duplicate/maintenance answer; sending it again cannot change that).
- Any other 4xx except 401/403/408/429: this notification is wrong (a malformed payload, a host the
  engine does not know): logged with the engine's reason and dropped, so one bad event never
  blocks the ones behind it.
- 401/403 (the agent's token, not the event, is wrong: the token file is re-read), 408, 429, 5xx
  and an unreachable engine: kept, and retried with exponential back-off (``retry_min_s`` doubling
  to ``retry_max_s``), starting again at once when something new is spooled.
The token is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import httpx

from haven.agent.spool import Spool, Spooled
from haven.domain.waiting import within

log = logging.getLogger("haven.agent")

RETRYABLE_4XX = frozenset({401, 403, 408, 429})
TIMEOUT_S = 10.0


class Reporter:
    def __init__(
        self,
        spool: Spool,
        engine_url: str,
        *,
        token_file: Path | None = None,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.spool = spool
        self.url = f"{engine_url}/v1/notifications"
        self.token_file = token_file
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._transport = transport
        self._wake = asyncio.Event()
        self._token = self._read_token()
        self.delivered = 0
        self.dropped = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        delay = self.retry_min_s
        unreachable_logged = False
        async with httpx.AsyncClient(timeout=TIMEOUT_S, transport=self._transport) as http:
            while True:
                self._wake.clear()
                pending = self.spool.pending()
                stuck = False
                for item in pending:
                    reason = await self._send(http, item)
                    if reason is None:
                        continue
                    stuck = True
                    if not unreachable_logged:
                        log.warning("cannot deliver to %s (%s); %d notification(s) spooled, retrying",
                                    self.url, reason, len(self.spool))  # fmt: skip
                        unreachable_logged = True
                    break
                if not stuck:
                    if unreachable_logged:
                        log.info("engine at %s reachable again; spool delivered", self.url)
                    unreachable_logged = False
                    delay = self.retry_min_s
                    if len(pending) == 0:
                        await self._wake.wait()
                    continue
                with contextlib.suppress(TimeoutError):
                    await within(self._wake.wait(), delay)
                delay = min(delay * 2, self.retry_max_s)

    async def _send(self, http: httpx.AsyncClient, item: Spooled) -> str | None:
        """None when the item is settled (and removed); else why it must be retried."""
        self.spool.attempted(item.id)
        headers = {"X-Auth-Token": self._token} if self._token else {}
        try:
            answer = await http.post(self.url, json=item.body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        what = _describe(item)
        if answer.is_success or answer.status_code == 409:
            if answer.status_code == 409:
                log.info("engine already has %s: %s", what, _reason(answer))
            else:
                log.info("delivered %s", what)
            self.spool.remove(item.id)
            self.delivered += 1
            return None
        if answer.status_code in RETRYABLE_4XX:
            if answer.status_code in (401, 403):
                self._token = self._read_token()  # an operator may have fixed the token file
            return f"HTTP {answer.status_code}: {_reason(answer)}"
        if 400 <= answer.status_code < 500:
            log.error("engine refused %s with HTTP %d: %s; dropped (it would never be accepted)",
                      what, answer.status_code, _reason(answer))  # fmt: skip
            self.spool.remove(item.id)
            self.dropped += 1
            return None
        return f"HTTP {answer.status_code}"

    def _read_token(self) -> str:
        if self.token_file is None:
            return ""
        try:
            return self.token_file.read_text().strip()
        except OSError as exc:
            log.error("cannot read the token file %s: %s", self.token_file, exc.strerror)
            return ""


def _describe(item: Spooled) -> str:
    note = item.body.get("notification", {})
    return f"{note.get('type')} notification #{item.id} {note.get('payload')}"


def _reason(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:300]
    # Masakari's (and haven's) error body: {"badRequest": {"code": 400, "message": "..."}}
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])[:300]
    return str(body)[:300]
