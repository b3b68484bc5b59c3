"""A QMP session against a peer speaking the protocol on a unix socket, as QEMU does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from unistack.dataplane import qmp

VERSION = {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2"}
GREETING = {"QMP": {"version": VERSION, "capabilities": []}}


async def _commands(reader: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects a QMP client sends: a stream of them, not lines."""
    decoder, buffer = json.JSONDecoder(), ""
    while chunk := await reader.read(4096):
        buffer += chunk.decode()
        while buffer.strip():
            try:
                command, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                break  # the rest of it is still on the way
            buffer = buffer.lstrip()[end:]
            yield command


async def _peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """QEMU's side: greet, accept capabilities, and on `quit` answer and hang up at once."""

    def send(message: dict[str, Any]) -> None:
        writer.write(json.dumps(message).encode() + b"\r\n")

    send(GREETING)
    async for command in _commands(reader):
        send({"return": {}, **({"id": command["id"]} if "id" in command else {})})
        if command["execute"] == "quit":
            send({"event": "SHUTDOWN", "data": {"guest": False},
                  "timestamp": {"seconds": 1, "microseconds": 0}})  # fmt: skip
            await writer.drain()
            writer.close()
            return
        await writer.drain()


async def test_quit_ends_the_session_without_an_error(tmp_path: Path) -> None:
    socket = tmp_path / "qmp.sock"
    server = await asyncio.start_unix_server(_peer, path=str(socket))
    try:
        for _ in range(5):  # the hang-up races the client's own disconnect: try it often
            async with qmp.connect(socket, timeout=2.0) as monitor:
                await monitor.execute("quit")
                await asyncio.sleep(0.05)  # the reader has seen the end of the stream
    finally:
        server.close()
        await server.wait_closed()
