"""The console's pages for every signed-in key: sign-in, notifications, usage, health."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pigeon.api.deps import could_be_our_id
from pigeon.console import reads
from pigeon.console.charts import usage_chart
from pigeon.console.filters import METADATA_INPUTS, STATUSES, Filters, parse_day, parse_filters
from pigeon.console.sessions import COOKIE, COOKIE_PATH, Session
from pigeon.console.web import PREFIX, Console, Handler, guarded
from pigeon.domain.notification import Account, NotificationView, UsageDay
from pigeon.errors import NotFoundError, PermissionDenied, ValidationError
from pigeon.store.listing import Cursor

log = logging.getLogger(__name__)

#: rows per page of the list
PAGE = 50
#: the longest API key the sign-in form takes (ours are 47 characters)
MAX_KEY_CHARS = 200
USAGE_DAYS = 14

Form = dict[str, str]
SessionHandler = Callable[[Request, Session, Form], Awaitable[Response]]


def signed_in(console: Console, handler: SessionHandler, *, admin: bool = False) -> Handler:
    """``handler`` for a signed-in session only (an admin's, if ``admin``); a POST must
    carry the session's CSRF token, or nothing happens."""

    async def run(request: Request) -> Response:
        session = await console.session_of(request)
        if session is None or session.account is None:
            return console.to_login(request)
        if admin and not session.account.is_admin:
            raise PermissionDenied(
                "this page needs an admin API key ('pigeon keys create --account NAME --admin')"
            )
        form: Form = {}
        if request.method == "POST":
            form = await console.form(request)
            if not console.csrf_ok(request, session, form):
                return await console.error_page(
                    session,
                    403,
                    "this form did not come from your console session (its CSRF token is "
                    "missing or wrong); reload the page and try again",
                )
        return await handler(request, session, form)

    return guarded(console, run)


def account_of(session: Session) -> Account:
    """The signed-in account (``signed_in`` guarantees there is one)."""
    assert session.account is not None
    return session.account


async def accounts_in_view(
    console: Console, session: Session, picked: str
) -> tuple[list[str], dict[str, str]]:
    """The account ids a page covers and every visible account's name: an admin's pick (or
    every account), else the key's own; another account's id from a plain key is refused."""
    account = account_of(session)
    if not account.is_admin:
        if picked and picked != account.id:
            raise PermissionDenied(
                "an API key sees its own account only; sign in with an admin key to see others"
            )
        return [account.id], {account.id: account.name}
    names = {a.id: a.name for a in await reads.account_list(console.store)}
    if picked and picked not in names:
        raise ValidationError("account", f"no account {picked!r}")
    return ([picked] if picked else list(names)), names


async def page_of(
    console: Console, ids: list[str], filters: Filters
) -> tuple[list[NotificationView], str | None]:
    """A page over the accounts, newest first, and the cursor of the next (the same
    keyset cursor is valid for each account's listing)."""
    views: list[NotificationView] = []
    for account_id in ids:
        views += await console.store.list_notifications(
            account_id, filters.filter, limit=PAGE + 1, after=filters.cursor
        )
    views.sort(key=lambda v: (v.notification.created_at, v.notification.id), reverse=True)
    more = len(views) > PAGE
    views = views[:PAGE]
    last = views[-1].notification if more and views else None
    return views, Cursor(last.created_at, last.id).encode() if last is not None else None


async def find_view(console: Console, session: Session, notification_id: str) -> NotificationView:
    """One notification the session may see, or NotFoundError."""
    account = account_of(session)
    view = None
    if could_be_our_id(notification_id):
        if not account.is_admin:
            view = await console.store.get_view(account.id, notification_id)
        else:
            owner = await reads.owner_of(console.store, notification_id)
            owners = (
                [owner]
                if owner is not None
                else [a.id for a in await reads.account_list(console.store)]
            )
            for candidate in owners:  # not moved from the API's intake yet: look in each
                view = await console.store.get_view(candidate, notification_id)
                if view is not None:
                    break
    if view is None:
        raise NotFoundError(f"no notification {notification_id!r} you can see")
    return view


class Pages:
    """The pages every signed-in key may use."""

    def __init__(self, console: Console) -> None:
        self.console = console

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/notifications", status_code=303)

    async def login_form(self, request: Request) -> Response:
        if await self.console.session_of(request) is not None:  # signed in already
            return RedirectResponse(f"{PREFIX}/notifications", status_code=303)
        session = self.console.sessions.new()
        response = await self.console.page("login.html", None, login_csrf=session.csrf, error=None)
        self.console.set_cookie(request, response, session)
        return response

    async def login(self, request: Request) -> Response:
        pending = self.console.sessions.get(request.cookies.get(COOKIE))
        form = await self.console.form(request)
        if pending is None or not self.console.csrf_ok(request, pending, form):
            return await self.console.error_page(
                None,
                403,
                "the sign-in form expired or did not come from this console (CSRF token "
                "missing or wrong); open the sign-in page again",
            )
        key = form.get("api_key", "").strip()
        problem = None
        if not key:
            problem = "enter an API key ('pigeon keys create --account NAME' prints one)"
        elif len(key) > MAX_KEY_CHARS or not key.isprintable():
            problem = "that is not an API key"
        account = await self.console.store.authenticate(key) if problem is None else None
        if account is None:
            return await self.console.page(
                "login.html",
                None,
                status=401 if problem is None else 400,
                login_csrf=pending.csrf,
                error=problem or "unknown or revoked API key",
            )
        session = self.console.sessions.sign_in(pending, key, account)
        response = RedirectResponse(f"{PREFIX}/notifications", status_code=303)
        self.console.set_cookie(request, response, session)
        return response

    async def logout(self, request: Request, session: Session, form: Form) -> Response:
        self.console.sessions.drop(session.id)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
        return response

    async def notifications(self, request: Request, session: Session, form: Form) -> Response:
        filters = parse_filters(request.query_params.multi_items())
        ids, names = await accounts_in_view(self.console, session, filters.account)
        views, following = await page_of(self.console, ids, filters)
        lines = filters.metadata_lines + [""] * max(
            METADATA_INPUTS - len(filters.metadata_lines), 0
        )
        return await self.console.page(
            "notifications.html",
            session,
            views=views,
            names=names,
            filters=filters,
            statuses=STATUSES,
            metadata_lines=lines,
            following=following,
            live=filters.cursor is None,
        )

    async def rows(self, request: Request, session: Session, form: Form) -> Response:
        filters = parse_filters(request.query_params.multi_items())
        ids, names = await accounts_in_view(self.console, session, filters.account)
        views, _ = await page_of(self.console, ids, filters)
        return self.console.fragment(
            "_rows.html",
            views=views,
            names=names,
            filters=filters,
            live=filters.cursor is None,
            is_admin=account_of(session).is_admin,
        )

    async def detail_context(self, session: Session, notification_id: str) -> dict[str, Any]:
        view = await find_view(self.console, session, notification_id)
        attempts = await reads.attempts_of(self.console.store, view.notification.id)
        webhooks = await reads.webhooks_of(self.console.store, view.notification.id)
        return {
            "view": view,
            "attempts": attempts,
            "webhooks": webhooks,
            "final": view.notification.status.is_final,
        }

    async def notification(self, request: Request, session: Session, form: Form) -> Response:
        context = await self.detail_context(session, request.path_params["notification_id"])
        return await self.console.page("notification.html", session, **context)

    async def notification_live(self, request: Request, session: Session, form: Form) -> Response:
        context = await self.detail_context(session, request.path_params["notification_id"])
        return self.console.fragment("_detail.html", **context)

    async def usage(self, request: Request, session: Session, form: Form) -> Response:
        query = request.query_params
        unknown = set(query) - {"from", "to", "account"}
        if unknown:
            raise ValidationError(min(unknown), "is not a usage parameter; use from, to, account")
        today = datetime.now(UTC).date()
        end = parse_day("to", query.get("to"), today)
        start = parse_day("from", query.get("from"), end - timedelta(days=USAGE_DAYS - 1))
        picked = query.get("account", "")
        ids, names = await accounts_in_view(self.console, session, picked)
        totals: dict[date, list[int]] = {}
        for account_id in ids:
            for day in await self.console.store.usage(account_id, start, end):
                total = totals.setdefault(day.day, [0, 0])
                total[0] += day.messages
                total[1] += day.segments
        if not ids:  # an admin with no accounts yet: the range still has to be valid
            await self.console.store.usage(account_of(session).id, start, end)
        days = [UsageDay(d, m, s) for d, (m, s) in sorted(totals.items())]
        return await self.console.page(
            "usage.html",
            session,
            chart=usage_chart(days),
            start=start.isoformat(),
            end=end.isoformat(),
            picked=picked,
            names=names,
        )

    async def health_context(self) -> dict[str, Any]:
        broker_lag, note = None, None
        if self.console.options.lag is not None:
            try:
                broker_lag = await self.console.options.lag()
            except Exception as exc:  # the broker's own errors, a timeout: show the rest
                log.warning("console: consumer lag not measured: %r", exc)
                note = f"the broker's consumer lag could not be measured now: {exc!r}"
        backlog = await reads.backlog(self.console.store, broker_lag)
        return {
            "backlog": dataclasses.replace(backlog, lag_note=note) if note else backlog,
            "providers": await reads.provider_health(self.console.store),
            "window_minutes": int(reads.HEALTH_WINDOW.total_seconds() // 60),
        }

    async def health(self, request: Request, session: Session, form: Form) -> Response:
        return await self.console.page("health.html", session, **(await self.health_context()))

    async def health_live(self, request: Request, session: Session, form: Form) -> Response:
        return self.console.fragment("_health.html", **(await self.health_context()))

    async def static(self, request: Request) -> Response:
        return self.console.static(request.path_params["name"])

    def register(self, route: Callable[[str, Handler, list[str]], None]) -> None:
        """Add every page to the router through ``route``."""
        c = self.console
        route("", guarded(c, self.home), ["GET"])
        route("/", guarded(c, self.home), ["GET"])
        route("/login", guarded(c, self.login_form), ["GET"])
        route("/login", guarded(c, self.login), ["POST"])
        route("/logout", signed_in(c, self.logout), ["POST"])
        route("/notifications", signed_in(c, self.notifications), ["GET"])
        route("/notifications/rows", signed_in(c, self.rows), ["GET"])
        route("/notifications/{notification_id}", signed_in(c, self.notification), ["GET"])
        route(
            "/notifications/{notification_id}/live",
            signed_in(c, self.notification_live),
            ["GET"],
        )
        route("/usage", signed_in(c, self.usage), ["GET"])
        route("/health", signed_in(c, self.health), ["GET"])
        route("/health/live", signed_in(c, self.health_live), ["GET"])
        route("/static/{name}", self.static, ["GET"])
