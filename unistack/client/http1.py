"""A lean HTTP/1.1 keep-alive client for the API server's small requests.

Why our own: every controller, the scheduler and the agent talk to the API server in short
requests (a GET, a binding, a status update, an Event), thousands per second at scale. With
aiohttp each such request cost ~450 µs of client CPU over TLS (URL objects, multidicts,
payload registry, timers, its stream reader), which made the client, not the decision, the
largest part of the scheduler's work per pod. This client does only what those requests need:
one request line and headers written in one call, the response parsed by httptools (the C
parser uvicorn uses), idle connections kept per transport and reused, TLS by asyncio's own
SSL transport. Streams (watches, logs, exec) stay on aiohttp.

A request written on a connection that had been idle and is found closed before any byte of
the answer arrives is sent again on a new connection when it is idempotent (GET, HEAD, PUT,
DELETE, OPTIONS), as Go's net/http does; otherwise the error is the caller's to handle.
"""

from __future__ import annotations

import asyncio
import ssl
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import httptools

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
MAX_IDLE = 64


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the whole answer came."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered  # whether any byte of the response had arrived


@dataclass(slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its response parsed as it comes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._answered = False
        self._head = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is a write transport without subclassing asyncio.Transport.
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionClosed(f"bad response: {exc}", answered=True))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionClosed(f"connection closed: {exc!r}", answered=self._answered))

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self._head:  # no body follows, whatever Content-Length says; the parser would wait
            self._head = False
            self.on_message_complete()
            self.close()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        answer = Answer(self._parser.get_status_code(), self._headers, b"".join(self._body))
        if not self._parser.should_keep_alive():
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    # -- use -------------------------------------------------------------------------------

    def send(self, data: bytes, *, head: bool = False) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self._headers, self._body, self._answered, self._head = {}, [], False, head
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1Client:
    """Requests to one origin (`http://` or `https://host:port`) over kept-alive connections."""

    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._ssl = ssl_context if parts.scheme == "https" else None
        self._server_hostname = server_hostname if self._ssl is not None else None
        host_header = parts.netloc.rsplit("@", 1)[-1]
        fixed = {"Host": host_header, **(default_headers or {})}
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._idle: list[_Connection] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        target = self._prefix + path
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params)
        head = f"{method} {target} HTTP/1.1\r\n{self._fixed}"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body or b'')}\r\n"
        data = (head + "\r\n").encode("latin-1") + (body or b"")
        connection, reused = await self._connection()
        try:
            answer = await connection.send(data, head=method == "HEAD")
        except ConnectionClosed as exc:
            if not (reused and not exc.answered and method in IDEMPOTENT):
                raise
            connection, _ = await self._connection(fresh=True)
            answer = await connection.send(data, head=method == "HEAD")
        except BaseException:
            connection.close()  # cancelled mid-answer: the connection's state is unknown
            raise
        if not connection.closed and len(self._idle) < MAX_IDLE:
            self._idle.append(connection)
        elif not connection.closed:
            connection.close()
        return answer

    async def _connection(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        while self._idle and not fresh:
            connection = self._idle.pop()
            if not connection.closed:
                return connection, True
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            _Connection,
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._server_hostname,
        )
        return protocol, False

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
