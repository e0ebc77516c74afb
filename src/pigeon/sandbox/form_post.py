"""Form posts over kept-alive plain HTTP/1.1 connections: the sandbox's status callbacks.

The sandbox posts two callbacks per message, and on one machine it shares the
cores with the Pigeon it stands in front of. aiohttp's client spent about
0.4 ms of CPU on each of those posts on a 2-core box (a plain request and
response over asyncio streams: about 0.1 ms), more than the rest of a
message's simulated life. :class:`FormPoster` sends a urlencoded form to an
``http://`` URL over a pooled connection and reads the status and the body
(``Content-Length`` or chunked; a body that runs to the close is not read, the
connection is closed) and nothing else: no redirects, no cookies, no proxies,
no TLS, no credentials in the URL (such a callback goes through aiohttp, see
:class:`pigeon.sandbox.callbacks.CallbackDispatcher`).

A kept-alive connection the server has closed meanwhile (uvicorn closes idle
ones after 5 s) fails before any byte of the answer: the post is sent once
more on a new connection, as browsers and HTTP clients do. Any other failure
raises :class:`FormPostError` (or :class:`TimeoutError`), and the connection
is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from urllib.parse import urlencode, urlsplit

#: the longest status line plus headers read from an answer
MAX_HEAD_BYTES = 64 * 1024
#: the largest answer body read (a callback's answer is empty or a few bytes)
MAX_BODY_BYTES = 1024 * 1024
_HEAD_END = b"\r\n\r\n"

_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class FormPostError(OSError):
    """The server could not be reached or answered something that is not HTTP/1.x."""


class _StaleConnection(FormPostError):
    """A reused connection ended before its answer began."""


class FormPoster:
    """Posts forms to ``http://`` URLs, keeping up to ``limit`` connections open at once."""

    def __init__(self, *, limit: int = 100, timeout_seconds: float = 5.0) -> None:
        self._timeout = timeout_seconds
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    @staticmethod
    def handles(url: str) -> bool:
        """Whether ``url`` is one this poster sends to: plain ``http://`` with a host, no
        credentials (Twilio posts those with basic auth: aiohttp does) and nothing that
        could end a request line (control characters, spaces)."""
        return _plain(url) is not None

    async def post(self, url: str, form: dict[str, str], headers: dict[str, str]) -> int:
        """POST ``form`` (urlencoded) to ``url`` with ``headers``; the answer's status code.

        Raises :class:`FormPostError` or :class:`TimeoutError` (after ``timeout_seconds``).
        """
        plain = _plain(url)
        if plain is None:
            raise FormPostError(f"not a plain http:// URL: {url!r}")
        key, netloc, target = plain
        body = urlencode(form).encode()
        lines = [
            f"POST {target} HTTP/1.1",
            f"Host: {netloc}",
            "Content-Type: application/x-www-form-urlencoded",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        async with self._slots, asyncio.timeout(self._timeout):
            connection = self._take(key)
            if connection is not None:
                try:
                    return await self._exchange(key, connection, request, reused=True)
                except _StaleConnection:
                    pass  # the server closed it while idle: once more on a new one
            connection = await _connect(key)
            return await self._exchange(key, connection, request, reused=False)

    async def close(self) -> None:
        """Close every idle connection; posts after this still work (on new ones)."""
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for _, writer in connections:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        connections = self._idle.get(key)
        while connections:
            reader, writer = connections.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    async def _exchange(
        self, key: tuple[str, int], connection: _Connection, request: bytes, *, reused: bool
    ) -> int:
        reader, writer = connection
        keep = False
        try:
            writer.write(request)
            try:
                head = await reader.readuntil(_HEAD_END)
            except asyncio.IncompleteReadError as exc:
                if reused and not exc.partial:
                    raise _StaleConnection("the kept-alive connection was closed") from None
                raise FormPostError("the connection closed before the answer ended") from None
            except ConnectionResetError:
                if reused:
                    raise _StaleConnection("the kept-alive connection was reset") from None
                raise
            status, keep = await _read_answer(reader, head)
            return status
        except asyncio.LimitOverrunError as exc:
            raise FormPostError("the answer's headers are too long") from exc
        except asyncio.IncompleteReadError as exc:
            raise FormPostError("the connection closed before the answer ended") from exc
        except (OSError, ValueError) as exc:
            if isinstance(exc, FormPostError):
                raise
            raise FormPostError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if keep:
                self._idle.setdefault(key, []).append(connection)
            else:
                writer.close()


@functools.lru_cache(maxsize=64)
def _plain(url: str) -> tuple[tuple[str, int], str, str] | None:
    """``url``'s (host, port), ``Host`` header and request target, if it is plain http://
    (parsed once per URL: a sandbox posts every callback of a sender to the same one)."""
    if not url.startswith("http://") or any(c <= " " or c == "\x7f" for c in url):
        return None
    parts = urlsplit(url)
    try:
        port = parts.port or 80
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (parts.hostname, port), parts.netloc, target


async def _connect(key: tuple[str, int]) -> _Connection:
    try:
        return await asyncio.open_connection(*key, limit=MAX_HEAD_BYTES)
    except OSError as exc:
        raise FormPostError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from exc


async def _read_answer(reader: asyncio.StreamReader, head: bytes) -> tuple[int, bool]:
    """Read the body that follows ``head``; the status and whether the connection is reusable."""
    status_line, *header_lines = head[: -len(_HEAD_END)].split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise FormPostError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
    status = int(rest[:3])
    fields: dict[bytes, bytes] = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    keep = version == b"HTTP/1.1" and fields.get(b"connection") != b"close"
    if status < 200 or status in (204, 304):
        return status, keep
    if b"chunked" in fields.get(b"transfer-encoding", b""):
        await _read_chunks(reader)
    elif (length := fields.get(b"content-length")) is not None:
        size = int(length)
        if size > MAX_BODY_BYTES:
            raise FormPostError(f"an answer of {size} bytes is too long")
        await reader.readexactly(size)
    else:  # the body runs to the close: the status is known, so close now
        keep = False
    return status, keep


async def _read_chunks(reader: asyncio.StreamReader) -> None:
    read = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            # trailers, if any, end with an empty line
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return
        read += size
        if read > MAX_BODY_BYTES:
            raise FormPostError("a chunked answer is too long")
        await reader.readexactly(size + 2)
