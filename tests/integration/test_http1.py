"""The lean HTTP/1.1 client against a loopback server that answers as each test scripts it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from unistack.client.http1 import ConnectionClosed, Http1Client

Answerer = Callable[[int, int, bytes], bytes | None]  # (connection, request no., head) → reply


@dataclass
class Server:
    """Counts connections and requests; `answer` says what to send back (None: hang up)."""

    answer: Answerer
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            for count in range(1_000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                reply = self.answer(number, count, head)
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def ok(body: bytes = b"{}", extra: str = "") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


Serve = Callable[[Answerer], Awaitable[Server]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    listeners: list[asyncio.Server] = []

    async def started(answer: Answerer) -> Server:
        server = Server(answer)
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        listeners.append(listener)
        server.port = listener.sockets[0].getsockname()[1]
        return server

    yield started
    for listener in listeners:
        listener.close()
        await listener.wait_closed()


async def test_requests_reuse_one_connection(serve: Serve) -> None:
    server = await serve(lambda conn, n, head: ok(b'{"n": %d}' % n))
    client = Http1Client(f"http://127.0.0.1:{server.port}", default_headers={"X-Token": "t"})
    for n in range(3):
        answer = await client.request("GET", "/api/v1/pods", params={"limit": "5", "q": "a b"})
        assert (answer.status, answer.body) == (200, b'{"n": %d}' % n)
        assert answer.headers["content-type"] == "application/json"
    assert server.connections == 1
    first = server.requests[0].split(b"\r\n")
    assert first[0] == b"GET /api/v1/pods?limit=5&q=a+b HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in first and b"X-Token: t" in first
    client.close()


async def test_concurrent_requests_get_their_own_connections_and_answers(serve: Serve) -> None:
    server = await serve(lambda conn, n, head: ok(head.split(b" ")[1]))
    client = Http1Client(f"http://127.0.0.1:{server.port}")
    answers = await asyncio.gather(*(client.request("GET", f"/p/{i}") for i in range(8)))
    assert [a.body for a in answers] == [f"/p/{i}".encode() for i in range(8)]
    assert server.connections == 8
    await asyncio.gather(*(client.request("GET", f"/p/{i}") for i in range(8)))
    assert server.connections == 8  # the second round reuses the idle ones
    client.close()


async def test_post_sends_its_body_and_reads_a_chunked_answer(serve: Serve) -> None:
    chunked = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"a"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n'
    )
    server = await serve(lambda conn, n, head: chunked)
    client = Http1Client(f"http://127.0.0.1:{server.port}")
    answer = await client.request(
        "POST", "/x", body=b'{"k": 1}', headers={"Content-Type": "application/json"}
    )
    assert (answer.status, answer.body) == (201, b'{"a": 1}')
    assert server.requests[0].endswith(b'Content-Length: 8\r\n\r\n{"k": 1}')
    client.close()


async def test_a_get_on_a_dropped_idle_connection_is_sent_again(
    serve: Serve,
) -> None:
    # The first connection answers once, then hangs up on the next request unanswered.
    server = await serve(lambda conn, n, head: ok() if conn > 1 or n == 0 else None)
    client = Http1Client(f"http://127.0.0.1:{server.port}")
    await client.request("GET", "/one")
    answer = await client.request("GET", "/two")
    assert answer.status == 200 and server.connections == 2
    client.close()


async def test_a_post_on_a_dropped_connection_is_not_sent_twice(serve: Serve) -> None:
    server = await serve(lambda conn, n, head: ok() if conn > 1 or n == 0 else None)
    client = Http1Client(f"http://127.0.0.1:{server.port}")
    await client.request("GET", "/one")
    with pytest.raises(ConnectionClosed):
        await client.request("POST", "/create", body=b"{}")
    assert sum(1 for r in server.requests if r.startswith(b"POST")) == 1
    client.close()


async def test_connection_close_is_honoured(serve: Serve) -> None:
    server = await serve(lambda conn, n, head: ok(extra="Connection: close\r\n"))
    client = Http1Client(f"http://127.0.0.1:{server.port}")
    for _ in range(3):
        assert (await client.request("GET", "/")).status == 200
    assert server.connections == 3
    client.close()


async def test_a_head_answer_has_no_body_whatever_its_length(serve: Serve) -> None:
    server = await serve(lambda conn, n, head: b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
    client = Http1Client(f"http://127.0.0.1:{server.port}")
    answer = await asyncio.wait_for(client.request("HEAD", "/v2/"), 5)
    assert (answer.status, answer.headers["content-length"], answer.body) == (200, "99", b"")
    client.close()


async def test_a_refused_connection_is_an_oserror() -> None:
    with socket_port() as port:
        client = Http1Client(f"http://127.0.0.1:{port}")
        with pytest.raises(OSError):
            await client.request("GET", "/")


class socket_port:
    """A loopback port with nothing listening on it, for as long as the block runs."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return int(self._sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
