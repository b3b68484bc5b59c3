"""How the client reaches an API server: over HTTP(S), or in-process through an ASGI app.

`Transport` is the seam: `request` for a whole response, `stream` for a response read line by
line as it arrives (watches). `HttpTransport` speaks HTTPS with aiohttp, verifying the server
against a CA and sending a bearer token; `AsgiTransport` calls an ASGI application (the API
server in `unistack.apiserver`, or anything else) directly, with no socket, for tests and for
components that run inside the API server's process. `unistack.client.api.Client` sits on top.
Connection-level failures (refused, reset, an app that raised) surface as `TransportError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp

from unistack.client.http1 import Http1Client

log = logging.getLogger(__name__)

Params = Mapping[str, str]
Headers = Mapping[str, str]
AsgiMessage = MutableMapping[str, Any]
AsgiApp = Callable[
    [AsgiMessage, Callable[[], Awaitable[AsgiMessage]], Callable[[AsgiMessage], Awaitable[None]]],
    Awaitable[None],
]


class TransportError(Exception):
    """The request did not get an HTTP response (connection failed, stream broke)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes


class StreamResponse:
    """A response whose body is read as it arrives; iterate it for lines (without `\\n`)."""

    def __init__(self, status: int, headers: Mapping[str, str], chunks: AsyncIterator[bytes]):
        self.status = status
        self.headers = headers
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[bytes]:
        pending = b""
        async for chunk in self._chunks:
            pending += chunk
            if b"\n" not in chunk:
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line
        if pending:
            yield pending

    async def read(self) -> bytes:
        """The whole remaining body (for error responses)."""
        return b"".join([chunk async for chunk in self._chunks])


class Transport(Protocol):
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: bytes | None = None,
        headers: Headers | None = None,
    ) -> Response: ...

    def stream(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        headers: Headers | None = None,
    ) -> AbstractAsyncContextManager[StreamResponse]: ...

    async def close(self) -> None: ...


# --- HTTP -----------------------------------------------------------------------------------


def tls_context(
    *,
    ca_file: str | None = None,
    ca_data: str | bytes | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
    client_cert_data: bytes | None = None,
    client_key_data: bytes | None = None,
    insecure: bool = False,
) -> ssl.SSLContext:
    """An SSL context verifying the server against the given CA (PEM file or PEM data)."""
    if isinstance(ca_data, bytes):
        ca_data = ca_data.decode()
    context = ssl.create_default_context(cafile=ca_file, cadata=ca_data)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    elif client_cert_data:
        _load_cert_chain_data(context, client_cert_data, client_key_data)
    return context


def _load_cert_chain_data(context: ssl.SSLContext, cert: bytes, key: bytes | None) -> None:
    """`ssl` loads certificates only from files: write them to a private directory briefly."""
    with tempfile.TemporaryDirectory() as directory:
        cert_path = os.path.join(directory, "cert.pem")
        key_path = os.path.join(directory, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(cert)
        if key is not None:
            with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(key)
        context.load_cert_chain(cert_path, key_path if key is not None else None)


class TokenFile:
    """A bearer token kept in a file (a kubeconfig's `tokenFile`, a pod's projected
    service-account token), read again once `period` seconds have passed, as client-go's
    cached file token source does: the token the node agent rotates before it expires is
    picked up without a restart. A failed read keeps the last token."""

    def __init__(
        self, path: str, period: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.period = period
        self._clock = clock
        self._token: str | None = None
        self._read_at: float | None = None

    def current(self) -> str | None:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self.period:
            self._read_at = now
            try:
                with open(self.path) as f:
                    self._token = f.read().strip() or self._token
            except OSError as error:
                if self._token is None:
                    log.warning("cannot read the token file %s: %s", self.path, error)
        return self._token


class HttpTransport:
    """The API server over HTTP(S) with aiohttp. The session is made on first use."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | TokenFile | None = None,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        ca_data: str | bytes | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        insecure: bool = False,
        server_hostname: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._server_hostname = server_hostname
        self._timeout = timeout
        self._ssl: ssl.SSLContext | bool = True
        if ssl_context is not None:
            self._ssl = ssl_context
        elif self.base_url.startswith("https:"):
            self._ssl = tls_context(
                ca_file=ca_file,
                ca_data=ca_data,
                client_cert=client_cert,
                client_key=client_key,
                insecure=insecure,
            )
        self._session: aiohttp.ClientSession | None = None
        self._http1: Http1Client | None = None  # requests; aiohttp serves the streams

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _bearer(self) -> dict[str, str]:
        token = self._token.current() if isinstance(self._token, TokenFile) else self._token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _headers(self, headers: Headers | None) -> dict[str, str]:
        return {"Accept": "application/json", **self._bearer(), **(headers or {})}

    def _request_kwargs(self, params: Params | None, headers: Headers | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"params": dict(params or {}), "headers": self._headers(headers)}
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        return kwargs

    def _small_requests(self) -> Http1Client:
        if self._http1 is None:
            context = self._ssl if isinstance(self._ssl, ssl.SSLContext) else None
            if context is None and self.base_url.startswith("https:"):
                context = ssl.create_default_context()
            self._http1 = Http1Client(
                self.base_url,
                ssl_context=context,
                server_hostname=self._server_hostname,
                # a token read from a file goes with each request (`request`), as it changes
                default_headers=self._headers(None)
                if not isinstance(self._token, TokenFile)
                else {"Accept": "application/json"},
            )
        return self._http1

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: bytes | None = None,
        headers: Headers | None = None,
    ) -> Response:
        if isinstance(self._token, TokenFile):
            headers = {**self._bearer(), **(headers or {})}
        try:
            async with asyncio.timeout(self._timeout):
                answer = await self._small_requests().request(
                    method, path, params=params, body=body, headers=headers
                )
        except (TimeoutError, OSError) as exc:
            raise TransportError(f"{method} {path}: {exc!r}") from exc
        return Response(answer.status, answer.headers, answer.body)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        headers: Headers | None = None,
    ) -> AsyncIterator[StreamResponse]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout)
        kwargs = self._request_kwargs(params, headers)
        try:
            async with self._client().request(
                method, self.base_url + path, timeout=timeout, **kwargs
            ) as resp:
                yield StreamResponse(resp.status, _lower(resp.headers), _http_chunks(resp))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(f"{method} {path}: {exc!r}") from exc

    async def close(self) -> None:
        if self._http1 is not None:
            self._http1.close()
            self._http1 = None
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _http_chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_any():
            yield chunk
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise TransportError(f"stream broken: {exc!r}") from exc


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


# --- in-process ASGI -------------------------------------------------------------------------

_END = {"type": "unistack.end"}


class _Exchange:
    """One ASGI request/response: feeds the body to the app, queues what the app sends."""

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body
        self._disconnected = asyncio.Event()
        self._sent: asyncio.Queue[AsgiMessage] = asyncio.Queue()
        self.error: BaseException | None = None

    async def receive(self) -> AsgiMessage:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: AsgiMessage) -> None:
        if self._disconnected.is_set():
            raise OSError("client disconnected")
        self._sent.put_nowait(message)

    def disconnect(self) -> None:
        self._disconnected.set()

    async def run(self, app: AsgiApp, scope: AsgiMessage) -> None:
        try:
            await app(scope, self.receive, self.send)
        except Exception as exc:
            self.error = exc
        finally:
            self._sent.put_nowait(_END)

    async def start(self) -> tuple[int, dict[str, str]]:
        message = await self._sent.get()
        if message is _END:
            raise TransportError("the application sent no response") from self.error
        headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
        return int(message["status"]), headers

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._sent.get()
            if message is _END:
                if self.error is not None:
                    raise TransportError("the application failed") from self.error
                return
            if message.get("type") != "http.response.body":
                continue
            if message.get("body"):
                yield bytes(message["body"])
            if not message.get("more_body", False):
                return


class AsgiTransport:
    """Calls an ASGI app in this process: no socket, no TLS, the same HTTP semantics."""

    def __init__(self, app: AsgiApp, *, token: str | None = None) -> None:
        self.app = app
        self._token = token

    def _scope(
        self, method: str, path: str, params: Params | None, headers: Headers | None, body: bytes
    ) -> AsgiMessage:
        raw_headers = {"host": "unistack.local", "accept": "application/json"}
        if self._token:
            raw_headers["authorization"] = f"Bearer {self._token}"
        raw_headers.update({k.lower(): v for k, v in (headers or {}).items()})
        if body:
            raw_headers["content-length"] = str(len(body))
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": urlencode(dict(params or {})).encode(),
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in raw_headers.items()],
            "client": ("127.0.0.1", 0),
            "server": ("unistack.local", 80),
            "state": {},
        }

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: bytes | None = None,
        headers: Headers | None = None,
    ) -> Response:
        exchange = _Exchange(body or b"")
        await exchange.run(self.app, self._scope(method, path, params, headers, body or b""))
        status, response_headers = await exchange.start()
        data = b"".join([chunk async for chunk in exchange.chunks()])
        return Response(status, response_headers, data)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        headers: Headers | None = None,
    ) -> AsyncIterator[StreamResponse]:
        exchange = _Exchange(b"")
        scope = self._scope(method, path, params, headers, b"")
        task = asyncio.create_task(exchange.run(self.app, scope))
        try:
            status, response_headers = await exchange.start()
            yield StreamResponse(status, response_headers, exchange.chunks())
        finally:
            exchange.disconnect()
            task.cancel()
            await asyncio.wait([task])

    async def close(self) -> None:
        return None
