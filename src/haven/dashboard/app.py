"""``create_dashboard``: the dashboard as one Starlette application, mounted by ``haven serve`` at /dashboard.

Who may see it: the callers the API lets read ``GET /v1/haven/status`` (admin or reader), logged in
once with the API's own authenticator (the local token, or a Keystone user when ``[keystone]`` is
set); then a session cookie (haven.dashboard.sessions) that is HttpOnly, SameSite=Strict, scoped to
/dashboard and Secure behind HTTPS. Every POST carries the session's CSRF token (a form field, or the
``X-CSRF-Token`` header htmx sends) and, when the browser sends one, an ``Origin`` of this server.
Without a session a page answers 401 with the login form; the event stream answers a plain 401.

What it shows comes from haven.dashboard.board: read from the store when a page opens, then moved by
the engine's events through the ``EventHub`` (a server-sent-events stream per page, whose messages
are HTML fragments that htmx swaps in by id). Releasing a gate hold is the API's release (admin only,
haven.api.policy's rule for ``POST /v1/haven/segments/{id}/release``), confirmed in the page and
audited as the API audits it, with "(dashboard)" in the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from haven.api.auth import Authenticator, AuthUnavailable, Principal
from haven.api.policy import allowed, policy_for
from haven.api.routes.haven_backups import RESTORES_PATH
from haven.api.routes.haven_drills import DRILLS_PATH
from haven.api.routes.haven_status import RELEASE_PATH, STATUS_PATH
from haven.canary.model import BOOT_PHASES
from haven.dashboard.board import (
    BACKUP_ROWS,
    TOP_CAUSES,
    BackupsView,
    Board,
    Changes,
    age_text,
    canary_durations,
    clock_text,
)
from haven.dashboard.domains import FailureDomains
from haven.dashboard.drills import DrillRefused, DrillRun, DrillRunner
from haven.dashboard.hub import EventHub
from haven.dashboard.leadership import LeaderView, leader_view, leadership_changes
from haven.dashboard.sessions import COOKIE, Session, SessionStore, csrf_ok
from haven.domain.clock import Clock
from haven.domain.errors import Conflict, HavenError, NotFound, UserError
from haven.domain.events import EventKind
from haven.domain.ids import HostName, NotificationId
from haven.domain.waiting import within
from haven.service.release import release_segment
from haven.service.status import Leadership
from haven.store import Store

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
ROOT = "/dashboard"
COALESCE_S = 0.2  # events arriving within this long go out as one message
KEEPALIVE_S = 15.0
MAX_FORM_BYTES = 16_384
SYMBOLS = {
    "healthy": "✓", "suspect": "?", "dead": "✕", "isolated": "⇹", "held": "‖", "agent_down": "!",
    # control-plane replicas (ReplicaHealth), the canary's boots (Outcome), recovery points
    "starting": "…", "unhealthy": "✗", "failed": "✕", "stopped": "○", "unknown": "?", "absent": "-",
    "ok": "✓", "slow": "◔", "booting": "…", "deleting": "…", "abandoned": "-",
    "within_policy": "✓", "stale": "✗", "none_yet": "○",
    # restore drills
    "passed": "✓", "running": "…",
}  # fmt: skip
STEP_SYMBOLS = {"done": "✓", "failed": "✕", "running": "…", "pending": "○", "skipped": "-"}

# Keystone password login (optional): (user name, password, project) -> a token, or None if refused.
PasswordLogin = Callable[[str, str, str], str | None]


@dataclass(frozen=True, slots=True)
class DashboardDeps:
    store: Store
    authenticator: Authenticator
    hub: EventHub
    clock: Clock
    sessions: SessionStore
    domains: FailureDomains  # host: (zone, rack), as the cloud last said
    password_login: PasswordLogin | None = None
    declared: Mapping[str, int] | None = None  # control-plane service: its min_replicas
    backups: BackupsView | None = None  # the backup runner's latest plan, when this server runs it
    leadership: Leadership | None = None  # several engines: the elector (a follower's page says so)

    def board(self) -> Board:
        return Board(
            self.store, self.domains, declared=self.declared, backups=self.backups, now=self.clock.now()
        )


def create_dashboard(
    store: Store,
    authenticator: Authenticator,
    hub: EventHub,
    clock: Clock,
    *,
    sessions: SessionStore | None = None,
    password_login: PasswordLogin | None = None,
    domains: FailureDomains | Mapping[HostName, tuple[str, str]] | None = None,
    declared: Mapping[str, int] | None = None,
    backups: BackupsView | None = None,
    leadership: Leadership | None = None,
) -> Starlette:
    """``domains``: each host's zone and rack (a FailureDomains re-reads them from the cloud; a plain
    mapping stays as given); ``declared``: each control-plane service's min_replicas; ``backups``: how
    to read the backup runner's latest plan (None: this server runs no backups); ``leadership``:
    whether this engine leads and who does (haven serve's elector; None: the only engine)."""
    deps = DashboardDeps(
        store,
        authenticator,
        hub,
        clock,
        sessions or SessionStore(),
        domains if isinstance(domains, FailureDomains) else FailureDomains(domains),
        password_login,
        declared,
        backups,
        leadership,
    )
    templates = template_environment()
    pages = _Pages(deps, templates)
    return Starlette(
        routes=[
            Route("/", pages.index, methods=["GET"]),
            Route("/login", pages.login_form, methods=["GET"]),
            Route("/login", pages.login, methods=["POST"]),
            Route("/logout", pages.logout, methods=["POST"]),
            Route("/events", pages.events, methods=["GET"]),
            Route("/segments/{segment_id}/release", pages.release, methods=["POST"]),
            Route("/drills", pages.drill, methods=["POST"]),
            Route("/drills/{drill_id}/events", pages.drill_events, methods=["GET"]),
            Route("/backups/{server_id}/drill", pages.restore_drill, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
    )


def template_environment() -> Environment:
    """The page's templates with the helpers they call (clock, symbols...)."""
    templates = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        enable_async=False,
    )
    templates.globals.update(
        clock=clock_text,
        age=age_text,
        symbols=SYMBOLS,
        step_symbols=STEP_SYMBOLS,
        root=ROOT,
        canary_durations=canary_durations,
        canary_phases=[p.value for p in BOOT_PHASES],
        top_causes=TOP_CAUSES,
        backup_rows=BACKUP_ROWS,
        explanation_anchor=lambda r: "ex-" + re.sub(r"[^A-Za-z0-9_-]", "-", r.id),
    )
    return templates


def can_read(principal: Principal) -> bool:
    return allowed(policy_for("GET", STATUS_PATH), principal.roles)


def can_release(principal: Principal) -> bool:
    return allowed(policy_for("POST", RELEASE_PATH), principal.roles)


def can_drill(principal: Principal) -> bool:
    return allowed(policy_for("POST", DRILLS_PATH), principal.roles)


def can_restore(principal: Principal) -> bool:
    """A restore drill from the page: the API's rule for ``POST /v1/haven/backups/restores`` (admin)."""
    return allowed(policy_for("POST", RESTORES_PATH), principal.roles)


def can_drill_backups(principal: Principal, board: Board) -> bool:
    return board.drill_now is not None and can_restore(principal)


class _Pages:
    def __init__(self, deps: DashboardDeps, templates: Environment) -> None:
        self.deps = deps
        self.templates = templates
        self.drills = DrillRunner(deps.hub)

    def _html(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        body = self.templates.get_template(name).render(**context)
        return HTMLResponse(body, status_code=status, headers=_NO_STORE)

    def _session(self, request: Request) -> Session | None:
        session = self.deps.sessions.get(request.cookies.get(COOKIE), self.deps.clock.now())
        if session is None or not can_read(session.principal):
            return None
        return session

    def _login_page(self, status: int, message: str = "") -> HTMLResponse:
        return self._html(
            "login.html", status, message=message, password_login=self.deps.password_login is not None
        )

    # --- pages -------------------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return self._login_page(HTTPStatus.UNAUTHORIZED)
        await self.deps.domains.refresh()  # hosts added to a zone or moved since (at most every 30 s)
        board = self.deps.board()
        p = session.principal
        drill = self.drills.running() if can_drill(p) else None  # started from a page, maybe this one
        return self._html(
            "index.html",
            board=board,
            leader=leader_view(self.deps.leadership),
            csrf=session.csrf,
            user=p.user_id,
            roles=", ".join(sorted(p.roles)) or "no role",
            can_release=can_release(p),
            can_drill=can_drill(p),
            can_drill_backups=can_drill_backups(p, board),
            scenarios=self.drills.scenarios(),
            drill=drill.view if drill is not None else None,
        )

    async def login_form(self, request: Request) -> Response:
        if self._session(request) is not None:
            return RedirectResponse(f"{ROOT}/", status_code=HTTPStatus.SEE_OTHER)
        return self._login_page(HTTPStatus.OK)

    async def login(self, request: Request) -> Response:
        if not _same_origin(request):
            return _refused(HTTPStatus.FORBIDDEN, "cross-site request refused")
        form = await _form(request)
        if form is None:
            return self._login_page(HTTPStatus.BAD_REQUEST, "the form could not be read; try again")
        token = form.get("token", "").strip()
        username, password = form.get("username", "").strip(), form.get("password", "")
        project = form.get("project", "").strip()
        try:
            if not token and username and self.deps.password_login is not None:
                found = await run_in_threadpool(self.deps.password_login, username, password, project)
                if found is None:  # Keystone refused the credentials (which are never logged)
                    log.warning("dashboard: a login was refused (from %s)", _client(request))
                    return self._login_page(
                        HTTPStatus.UNAUTHORIZED, "not recognised: check the user name, password and project"
                    )
                token = found
            if not token:
                return self._login_page(
                    HTTPStatus.UNAUTHORIZED, "give the token, or a user name and password"
                )
            principal = await self._authenticate(token)
        except AuthUnavailable as exc:
            return self._login_page(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        if principal is None:
            log.warning("dashboard: a login was refused (from %s)", _client(request))
            return self._login_page(HTTPStatus.UNAUTHORIZED, "not recognised: check the token or password")
        if not can_read(principal):
            log.warning("dashboard: %s may not read haven's status (roles %s)", principal.user_id,
                        sorted(principal.roles))  # fmt: skip
            return self._login_page(HTTPStatus.FORBIDDEN, "your roles do not allow reading haven's status")
        session_id, _ = self.deps.sessions.open(principal, self.deps.clock.now())
        log.info("dashboard: %s logged in", principal.user_id)
        response = RedirectResponse(f"{ROOT}/", status_code=HTTPStatus.SEE_OTHER)
        response.set_cookie(
            COOKIE,
            session_id,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=ROOT,
        )
        return response

    async def _authenticate(self, token: str) -> Principal | None:
        auth = self.deps.authenticator
        if getattr(auth, "blocking", False):
            return await run_in_threadpool(auth.authenticate, token)
        return auth.authenticate(token)

    async def logout(self, request: Request) -> Response:
        session = self._session(request)
        form = await _form(request)
        if session is not None and _same_origin(request) and csrf_ok(session, (form or {}).get("csrf")):
            self.deps.sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse(f"{ROOT}/login", status_code=HTTPStatus.SEE_OTHER)
        response.delete_cookie(COOKIE, path=ROOT)
        return response

    async def _posted(self, request: Request) -> tuple[Session, dict[str, str]] | Response:
        """The session and form of a POST from this page, or the refusal: 401 without a session,
        403 without the session's CSRF token or from another origin."""
        session = self._session(request)
        if session is None:
            return _refused(HTTPStatus.UNAUTHORIZED, "log in first")
        form = await _form(request) or {}
        sent = request.headers.get("x-csrf-token") or form.get("csrf")
        if not _same_origin(request) or not csrf_ok(session, sent):
            return _refused(HTTPStatus.FORBIDDEN, "the form is stale or not from this page: reload it")
        return session, form

    async def release(self, request: Request) -> Response:
        posted = await self._posted(request)
        if isinstance(posted, Response):
            return posted
        session, form = posted
        p = session.principal
        segment_id = request.path_params["segment_id"]
        if not can_release(p):
            log.warning(
                "dashboard: release of segment %s refused to %s (not an admin)", segment_id, p.user_id
            )
            return _refused(HTTPStatus.FORBIDDEN, "only an admin may release a hold")
        reason = form.get("reason", "").strip()
        if not reason:
            return _refused(HTTPStatus.BAD_REQUEST, "say why (the reason is recorded)")
        by = f"user {p.user_id}" + (f" of project {p.project_id}" if p.project_id else "") + " (dashboard)"
        try:
            done = release_segment(self.deps.store, segment_id, by, reason, self.deps.clock.now())
        except NotFound:
            return _refused(HTTPStatus.NOT_FOUND, f"no segment {segment_id}")
        except Conflict as exc:
            return _refused(HTTPStatus.CONFLICT, str(exc))
        log.warning("dashboard: segment %s released by %s: %s (hosts %s)", done.segment, by, done.reason,
                    ", ".join(done.hosts) or "none")  # fmt: skip
        board = self.deps.board()
        body = self.templates.get_template("parts.html").module.holds(  # type: ignore[attr-defined]
            board, True, session.csrf, ROOT
        )
        return HTMLResponse(str(body), headers=_NO_STORE)

    async def restore_drill(self, request: Request) -> Response:
        """A restore drill of one protected server now (admin, as the API's restores POST), confirmed in
        the page; audited: the restore record names who asked (``asked_by``), and the log says it."""
        posted = await self._posted(request)
        if isinstance(posted, Response):
            return posted
        session, _ = posted
        p = session.principal
        server_id = request.path_params["server_id"]
        if not can_restore(p):
            log.warning("dashboard: restore drill of %s refused to %s (not an admin)", server_id, p.user_id)
            return _refused(HTTPStatus.FORBIDDEN, "only an admin may run a restore drill")
        board = self.deps.board()
        if board.drill_now is None:
            return _refused(HTTPStatus.CONFLICT, "this server runs no backups ([backups] enabled = false)")
        view = leader_view(self.deps.leadership)
        if view.follower:
            return _refused(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "this engine does not lead: run the drill from the leader's dashboard",
            )
        protected = {v.server_id: v for v in board.protected}
        if server_id not in protected:
            return _refused(
                HTTPStatus.NOT_FOUND, f"no protected server {server_id} in the latest backup pass"
            )
        by = f"user {p.user_id}" + (f" of project {p.project_id}" if p.project_id else "") + " (dashboard)"
        try:
            record = await board.drill_now(server_id, by)
        except UserError as exc:  # no good backup, or a drill of it is running
            return _refused(HTTPStatus.CONFLICT, str(exc))
        except HavenError as exc:  # the cloud or the store refused (a deposed leader...)
            return _refused(HTTPStatus.SERVICE_UNAVAILABLE, f"the drill could not start: {exc}")
        log.warning("dashboard: restore drill %s of %s (%s) asked by %s: %s", record.id,
                    protected[server_id].server_name, server_id, by, record.state.value)  # fmt: skip
        board = self.deps.board()
        body = self.templates.get_template("parts.html").module.backups(  # type: ignore[attr-defined]
            board, can_drill_backups(p, board), session.csrf, ROOT
        )
        return HTMLResponse(str(body), headers=_NO_STORE)

    async def drill(self, request: Request) -> Response:
        """Start a drill on a fresh simulated cloud (admin, as the API's POST /v1/haven/drills); the
        answer is its panel, which follows the drill's own event stream until the verdict."""
        posted = await self._posted(request)
        if isinstance(posted, Response):
            return posted
        session, form = posted
        p = session.principal
        if not can_drill(p):
            return _refused(HTTPStatus.FORBIDDEN, "only an admin may run drills")
        by = f"user {p.user_id}" + (f" of project {p.project_id}" if p.project_id else "")
        try:
            run = self.drills.start(form, by)
        except DrillRefused as exc:
            return _refused(exc.status, str(exc))
        body = self._drill_parts().panel(run.view, ROOT)
        return HTMLResponse(str(body), status_code=HTTPStatus.ACCEPTED, headers=_NO_STORE)

    async def drill_events(self, request: Request) -> Response:
        """A drill's progress as server-sent events (``drill``: the panel's content as it stands), then
        ``end``. Who may start drills may follow them; a drill this server no longer knows is said so."""
        session = self._session(request)
        if session is None:
            return _refused(HTTPStatus.UNAUTHORIZED, "log in first")
        if not can_drill(session.principal):
            return _refused(HTTPStatus.FORBIDDEN, "only an admin may run drills")
        run = self.drills.get(request.path_params["drill_id"])
        return StreamingResponse(
            self._drill_stream(run),
            media_type="text/event-stream",
            headers={**_NO_STORE, "X-Accel-Buffering": "no"},
        )

    async def _drill_stream(self, run: DrillRun | None) -> AsyncIterator[str]:
        parts = self._drill_parts()
        if run is None:
            gone = '<p class="error">This drill is not known here any more (the server restarted, or '
            yield _sse("drill", gone + "another drill started since): start it again.</p>")
        else:
            said = None
            async for view in run.views():
                yield _sse("drill", str(parts.progress(view)))
                if view.said != said:
                    said = view.said
                    yield _sse("said", _escape(said))
        yield _sse("end", "the drill has finished")

    def _drill_parts(self) -> Any:
        return self.templates.get_template("drill.html").module

    async def events(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return _refused(HTTPStatus.UNAUTHORIZED, "log in first")
        return StreamingResponse(
            self._stream(request, session),
            media_type="text/event-stream",
            headers={**_NO_STORE, "X-Accel-Buffering": "no"},
        )

    async def _stream(self, request: Request, session: Session) -> AsyncIterator[str]:
        parts = self.templates.get_template("parts.html").module
        with self.deps.hub.subscribe() as sub, _watching(self.deps.leadership, sub.wake) as view:
            board = self.deps.board()  # after subscribing: no event falls between the two
            yield _sse("live", _live_text(view))
            # What changed between the page's own read and this stream's (a page is read first).
            yield _sse("update", _render_all(parts, board, session, view))
            while True:
                try:
                    await within(sub.wake.wait(), KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if sub.closed:
                    return
                await asyncio.sleep(COALESCE_S)
                sub.wake.clear()
                if sub.overflowed:
                    yield _sse("live", "too many changes at once: reload the page to catch up")
                    return
                if (now := leader_view(self.deps.leadership)) != view:
                    # This engine started or stopped leading, or another leads now: read it all again.
                    view, shown = now, set(board.notifications)
                    while not sub.queue.empty():
                        sub.queue.get_nowait()  # the store read below is newer than these events
                    board = self.deps.board()
                    yield _sse("update", _render_all(parts, board, session, view, shown))
                    yield _sse("live", _live_text(view))
                    continue
                events = []
                while not sub.queue.empty():
                    events.append(sub.queue.get_nowait())
                if any(e.kind is EventKind.SEGMENTS_CHANGED for e in events):
                    # A host just put in a segment: where is it? (Any read begun since the event will do:
                    # the pages that heard it share one.)
                    await self.deps.domains.refresh(COALESCE_S)
                known = set(board.notifications)
                changes = board.apply(events)
                if changes:
                    yield _sse("update", _render(parts, board, changes, known, session))
                if changes.announcements:
                    yield _sse("live", "; ".join(changes.announcements[-5:]))


@contextlib.contextmanager
def _watching(leadership: Leadership | None, wake: asyncio.Event) -> Iterator[LeaderView]:
    """The leadership the stream starts with; ``wake`` is set whenever it changes (a task of the
    stream's own, ended with it)."""
    view = leader_view(leadership)
    watcher = asyncio.get_running_loop().create_task(leadership_changes(leadership, view, wake))
    try:
        yield view
    finally:
        watcher.cancel()


def _live_text(view: LeaderView) -> str:
    if view.follower:
        return "not live: this engine is a follower (see the note above); its engine sends no events"
    return "live: following the engine's events"


def _render_all(
    parts: Any, board: Board, session: Session, view: LeaderView, shown: set[NotificationId] | None = None
) -> str:
    """Every part of the page, and the leadership note (a stream's first message, or after a change of
    leader); ``shown``: the notifications the page has (None: those of ``board``), the others go on top."""
    # The map and the segment tables whole (segments or hosts may have changed since the page's read).
    everything = Changes(set(board.hosts), set(board.notifications), True, True, True, True, membership=True)
    note = str(parts.leadership(view, board.read_at, oob=True))
    known = set(board.notifications) if shown is None else shown & set(board.notifications)
    return note + _render(parts, board, everything, known, session)


_NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}


def _render(parts: Any, board: Board, changes: Changes, known: set[NotificationId], session: Session) -> str:
    """The changed parts as fragments htmx swaps in by id (a new notification goes on top)."""
    # A table row parses only inside a table or a <template>: htmx swaps templated rows out of band.
    if changes.membership:  # segments or their hosts: the map and the tables whole
        out = [str(parts.domain_map(board, oob=True)), str(parts.segments(board, oob=True))]
    else:
        out = [
            f"<template>{parts.host_row(board.hosts[h], oob=True)}</template>" for h in sorted(changes.hosts)
        ]
        out += [str(parts.chip(board.hosts[h], oob=True)) for h in sorted(changes.hosts)]
    if changes.hosts or changes.membership:
        out.append(str(parts.counts(board, oob=True)))
    for nid in sorted(changes.notifications, key=lambda n: board.notifications[n].notification.created_at):
        card = str(parts.notification(board.notifications[nid], oob=nid in known))
        if nid not in known:
            card = f'<div hx-swap-oob="afterbegin:#notifications">{card}</div>'
            card += '<p id="no-notifications" hx-swap-oob="delete"></p>'  # the "none yet" line goes
        out.append(card)
    if any(
        board.notifications[n].notification.status.value in ("finished", "failed")
        for n in changes.notifications
    ):
        out.append(str(parts.plot(board, oob=True)))
    if changes.alerts:
        out.append(str(parts.alerts(board, oob=True)))
        out.append(str(parts.holds(board, can_release(session.principal), session.csrf, ROOT, oob=True)))
    if changes.controlplane:
        out.append(str(parts.controlplane(board, oob=True)))
    if changes.explanations:
        if not changes.alerts:  # an alert's explanation is shown beside it
            out.append(str(parts.alerts(board, oob=True)))
        out.append(str(parts.explanations(board, oob=True)))
        out.append(str(parts.canaries(board, oob=True)))
    if changes.backups:
        can = can_drill_backups(session.principal, board)
        out.append(str(parts.backups(board, can, session.csrf, ROOT, oob=True)))
    return "".join(out)


def _sse(event: str, html: str) -> str:
    lines = html.replace("\r", "").split("\n")
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


async def _form(request: Request) -> dict[str, str] | None:
    """An urlencoded form's fields (the last of each name); None if it is not one or too big."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return None
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[-1] for k, v in fields.items()}


def _same_origin(request: Request) -> bool:
    """A browser's Origin (when it sends one) names this server: no other site posts here."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


def _refused(status: int, message: str) -> Response:
    return HTMLResponse(
        f'<p class="error" role="alert">{_escape(message)}</p>', status_code=status, headers=_NO_STORE
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
