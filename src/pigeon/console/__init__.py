"""The web console at ``/console``: server-rendered pages (Jinja2) made live by htmx.

No build step and nothing from a CDN: the templates, the stylesheet and
``htmx.min.js`` (vendored, see ``static/htmx.LICENSE``) ship in the package.
Signing in takes an API key, which stays on the server (see
:mod:`pigeon.console.sessions`); every form is CSRF-protected. Pages:
notifications (the listing API's filters, updated every second), one
notification's timeline and attempts, usage per day, health (consumer lag,
providers), and for admin keys the dead letters and the development sandbox.
"""

from __future__ import annotations

from fastapi import APIRouter

from pigeon.console.admin_pages import add_admin_pages
from pigeon.console.options import ConsoleOptions
from pigeon.console.pages import Pages
from pigeon.console.web import PREFIX, Console, Handler
from pigeon.store.sql_store import SqlStore

__all__ = ["PREFIX", "ConsoleOptions", "console_router"]


def console_router(store: SqlStore, options: ConsoleOptions) -> APIRouter:
    """The console's routes (left out of the OpenAPI schema)."""
    router = APIRouter()
    console = Console(store, options)

    def route(path: str, handler: Handler, methods: list[str]) -> None:
        router.add_route(PREFIX + path, handler, methods=methods, include_in_schema=False)

    Pages(console).register(route)
    add_admin_pages(console, route)
    return router
