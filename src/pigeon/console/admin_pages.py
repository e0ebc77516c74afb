"""The console's admin pages: dead letters (show, replay) and the development sandbox."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pigeon.api.deps import could_be_our_id
from pigeon.console.pages import Form, signed_in
from pigeon.console.sandbox_link import NUMBER_FIELDS, RATE_FIELDS, fault_changes
from pigeon.console.sessions import Session
from pigeon.console.web import PREFIX, Console, Handler
from pigeon.errors import NotFoundError, ValidationError

#: dead letters a page lists at most
DEAD_LETTER_PAGE = 200
SANDBOX_INBOX = 50


def add_admin_pages(console: Console, route: Callable[[str, Handler, list[str]], None]) -> None:
    """Register the pages only admin keys may use."""

    async def dead_letters(request: Request, session: Session, form: Form) -> Response:
        show_all = request.query_params.get("all", "") == "1"
        letters = await console.store.dead_letters(
            include_replayed=show_all, limit=DEAD_LETTER_PAGE
        )
        return await console.page(
            "dead_letters.html",
            session,
            letters=list(reversed(letters)),  # newest first
            show_all=show_all,
            replayed=request.query_params.get("replayed", ""),
        )

    async def dead_letter(request: Request, session: Session, form: Form) -> Response:
        letter_id = request.path_params["dead_letter_id"]
        letter = await console.store.dead_letter(letter_id) if could_be_our_id(letter_id) else None
        if letter is None:
            raise NotFoundError(f"no dead letter {letter_id!r}")
        try:
            payload = orjson.dumps(
                orjson.loads(letter.payload), option=orjson.OPT_INDENT_2
            ).decode()
        except orjson.JSONDecodeError:
            payload = letter.payload.decode("utf-8", "replace")
        return await console.page("dead_letter.html", session, letter=letter, payload=payload)

    async def replay(request: Request, session: Session, form: Form) -> Response:
        letter_id = request.path_params["dead_letter_id"]
        if not could_be_our_id(letter_id):
            raise NotFoundError(f"no dead letter {letter_id!r}")
        await console.store.replay_dead_letter(letter_id)
        return RedirectResponse(f"{PREFIX}/dead-letters/{letter_id}", status_code=303)

    async def replay_all(request: Request, session: Session, form: Form) -> Response:
        report = await console.store.replay_dead_letters()
        return RedirectResponse(
            f"{PREFIX}/dead-letters?replayed={len(report.replayed)}", status_code=303
        )

    async def sandbox(request: Request, session: Session, form: Form) -> Response:
        if await console.sandbox.url() is None:
            raise NotFoundError(
                "no sandbox provider is configured (it is a development tool: 'pigeon run' "
                "starts one)"
            )
        return await console.page(
            "sandbox.html",
            session,
            faults=await console.sandbox.faults(),
            messages=await console.sandbox.inbox(SANDBOX_INBOX),
            sandbox_url=await console.sandbox.url(),
            rate_fields=RATE_FIELDS,
            number_fields=NUMBER_FIELDS,
            saved=request.query_params.get("saved", ""),
        )

    async def sandbox_inbox(request: Request, session: Session, form: Form) -> Response:
        return console.fragment("_inbox.html", messages=await console.sandbox.inbox(SANDBOX_INBOX))

    async def sandbox_faults(request: Request, session: Session, form: Form) -> Response:
        changes = fault_changes(form)
        try:
            await console.sandbox.set_faults(changes)
        except ValidationError as exc:  # the sandbox's own check: name the form's field
            raise ValidationError(exc.field, f"the sandbox refused it: {exc.reason}") from exc
        return RedirectResponse(f"{PREFIX}/sandbox?saved=1", status_code=303)

    async def sandbox_clear(request: Request, session: Session, form: Form) -> Response:
        await console.sandbox.clear()
        return RedirectResponse(f"{PREFIX}/sandbox", status_code=303)

    route("/dead-letters", signed_in(console, dead_letters, admin=True), ["GET"])
    route("/dead-letters/replay", signed_in(console, replay_all, admin=True), ["POST"])
    route("/dead-letters/{dead_letter_id}", signed_in(console, dead_letter, admin=True), ["GET"])
    route(
        "/dead-letters/{dead_letter_id}/replay",
        signed_in(console, replay, admin=True),
        ["POST"],
    )
    route("/sandbox", signed_in(console, sandbox, admin=True), ["GET"])
    route("/sandbox/inbox", signed_in(console, sandbox_inbox, admin=True), ["GET"])
    route("/sandbox/faults", signed_in(console, sandbox_faults, admin=True), ["POST"])
    route("/sandbox/clear", signed_in(console, sandbox_clear, admin=True), ["POST"])
