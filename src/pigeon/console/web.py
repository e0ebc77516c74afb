"""The console's plumbing: templates, sessions per request, CSRF, error pages, static files."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from pigeon.console.options import ConsoleOptions
from pigeon.console.sandbox_link import SandboxLink, SandboxUnavailable
from pigeon.console.sessions import (
    COOKIE,
    COOKIE_PATH,
    MAX_AGE_SECONDS,
    Session,
    SessionStore,
    csrf_matches,
)
from pigeon.domain.events import format_time
from pigeon.errors import (
    ConflictError,
    NotFoundError,
    PermissionDenied,
    PigeonError,
    StoreUnavailable,
    ValidationError,
)
from pigeon.store.sql_store import SqlStore

log = logging.getLogger(__name__)

PREFIX = "/console"
LOGIN = f"{PREFIX}/login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
#: every page: nothing from elsewhere, no inline script or style, never framed
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
_STATIC_TYPES = {
    "htmx.min.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "htmx.LICENSE": "text/plain; charset=utf-8",
}
_STATUS_OF = (
    (ValidationError, 400),
    (PermissionDenied, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (StoreUnavailable, 503),
    (SandboxUnavailable, 502),
)

Handler = Callable[[Request], Awaitable[Response]]


def when(value: datetime | None) -> str:
    """A time as the console shows it: UTC, to the millisecond."""
    if value is None:
        return ""
    return format_time(value)[:-4].replace("T", " ") + " UTC"


class Console:
    """The console's shared state: the store, sessions, templates and the sandbox link."""

    def __init__(self, store: SqlStore, options: ConsoleOptions) -> None:
        self.store = store
        self.options = options
        self.sessions = SessionStore()
        self.sandbox = SandboxLink(options.sandbox_urls)
        self.env = Environment(
            loader=PackageLoader("pigeon.console", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = when
        self._static: dict[str, bytes] = {}

    # -- rendering -------------------------------------------------------------
    def render(self, template: str, **context: Any) -> str:
        """A template rendered with ``context``."""
        return self.env.get_template(template).render(**context)

    async def page(
        self,
        template: str,
        session: Session | None,
        *,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """A whole page: the layout's navigation needs the session and whether a sandbox is on."""
        is_admin = bool(session and session.account and session.account.is_admin)
        sandbox = is_admin and await self.sandbox.url() is not None
        html = self.render(
            template,
            session=session,
            account=session.account if session else None,
            csrf=session.csrf if session else "",
            is_admin=is_admin,
            sandbox_on=sandbox,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def fragment(self, template: str, **context: Any) -> HTMLResponse:
        """A piece of a page, for htmx to swap in."""
        return HTMLResponse(self.render(template, **context), headers=SECURITY_HEADERS)

    async def error_page(self, session: Session | None, status: int, message: str) -> Response:
        """The page that says what went wrong (changing nothing)."""
        return await self.page("error.html", session, status=status, code=status, message=message)

    # -- sessions --------------------------------------------------------------
    async def session_of(self, request: Request) -> Session | None:
        """The request's signed-in session, its key checked again (a revoked key ends it)."""
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None or session.key is None:
            return None
        account = await self.store.authenticate(session.key)
        if account is None:
            self.sessions.drop(session.id)
            return None
        session.account = account
        return session

    def to_login(self, request: Request) -> Response:
        """Off to the sign-in page (htmx follows ``HX-Redirect``, a browser the 303)."""
        if request.headers.get("hx-request"):
            return Response(status_code=200, headers={"HX-Redirect": LOGIN})
        return RedirectResponse(LOGIN, status_code=303)

    @staticmethod
    def set_cookie(request: Request, response: Response, session: Session) -> None:
        """The session id in its HttpOnly, SameSite=Strict cookie, for /console only."""
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=MAX_AGE_SECONDS,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    async def form(request: Request) -> dict[str, str]:
        """A form POST's fields (URL-encoded; anything else reads as no fields)."""
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return {}
        raw = (await request.body()).decode("utf-8", "replace")
        return dict(parse_qsl(raw, keep_blank_values=True))

    @staticmethod
    def csrf_ok(request: Request, session: Session, form: dict[str, str]) -> bool:
        """Whether a POST carries the session's CSRF token (form field or header)."""
        return csrf_matches(session, form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER))

    # -- static files ------------------------------------------------------------
    def static(self, name: str) -> Response:
        """One of the console's own assets (a fixed list: no path is ever opened from a URL)."""
        kind = _STATIC_TYPES.get(name)
        if kind is None:
            return Response("not found", status_code=404, media_type="text/plain")
        body = self._static.get(name)
        if body is None:
            body = (resources.files("pigeon.console") / "static" / name).read_bytes()
            self._static[name] = body
        headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
        return Response(body, media_type=kind, headers=headers)


def guarded(console: Console, handler: Handler) -> Handler:
    """``handler`` with Pigeon's errors answered by an error page naming what was wrong."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except (PigeonError, SandboxUnavailable) as exc:
            status = next((s for kind, s in _STATUS_OF if isinstance(exc, kind)), 500)
            if status >= 500:
                log.error("console page %s failed: %s", request.url.path, exc)
            session = await _quiet_session(console, request)
            return await console.error_page(session, status, str(exc))

    return run


async def _quiet_session(console: Console, request: Request) -> Session | None:
    try:
        return await console.session_of(request)
    except PigeonError:
        return None
