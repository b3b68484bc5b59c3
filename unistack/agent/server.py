"""The agent's own HTTP endpoint (the kubelet's :10250): container logs and exec.

The API server proxies `pods/log` and `pods/exec` here, as kube-apiserver does to the
kubelet. Requests carry the node-proxy bearer token the API server was given.

- `GET /containerLogs/{namespace}/{pod}/{container}` with `follow`, `previous`, `tailLines`,
  `limitBytes`: the container's log file (its current run, or the one before);
- `GET /exec/{namespace}/{pod}/{container}?command=...&stdin&stdout&stderr&tty` upgraded to a
  WebSocket speaking the channel protocol (`v5.channel.k8s.io`, also v4): one byte of channel
  then data — 0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 terminal resize, and in v5
  255 to close a stream. With a tty the command gets a pseudo-terminal.

aiohttp serves it: it has the WebSocket server this needs, and is already a dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import logging
import os
import signal
import struct
import termios
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from unistack.agent.runtime import Container

log = logging.getLogger(__name__)
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
FOLLOW_POLL = 0.2

# (namespace, pod, container, previous) -> (log path, running container or None) or an error
Locate = Callable[[str, str, str, bool], tuple[Path | None, Container | None, str]]


def _status_error(status: int, message: str) -> web.Response:
    reason = {400: "BadRequest", 404: "NotFound", 401: "Unauthorized"}.get(status, "InternalError")
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": status,
    }
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _tail(data: bytes, lines: int) -> bytes:
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


class AgentServer:
    def __init__(
        self,
        locate: Locate,
        exec_argv: Callable[[Container, list[str], bool], list[str]],
        token: str,
    ):
        self.locate = locate
        self.exec_argv = exec_argv
        self.token = token
        self.app = web.Application(middlewares=[self._auth])
        self.app.router.add_get("/healthz", self.health)
        self.app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.logs)
        self.app.router.add_get("/exec/{namespace}/{pod}/{container}", self.exec)
        self.app.router.add_post("/exec/{namespace}/{pod}/{container}", self.exec)
        self._runner: web.AppRunner | None = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        offered = request.headers.get("Authorization", "")
        allowed = bool(self.token) and hmac.compare_digest(offered, f"Bearer {self.token}")
        if request.path != "/healthz" and not allowed:
            return _status_error(401, "Unauthorized")
        response: web.StreamResponse = await handler(request)
        return response

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    # --- logs -------------------------------------------------------------------------------

    async def logs(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        info = request.match_info
        previous = query.get("previous") in ("true", "1")
        path, container, problem = self.locate(
            info["namespace"], info["pod"], info["container"], previous
        )
        if path is None:
            return _status_error(400 if problem else 404, problem or "not found")
        data = await asyncio.to_thread(path.read_bytes) if path.exists() else b""
        if "tailLines" in query:
            data = _tail(data, int(query["tailLines"]))
        if "limitBytes" in query:
            data = data[: int(query["limitBytes"])]
        follow = query.get("follow") in ("true", "1") and container is not None and not previous
        if not follow:
            return web.Response(body=data, content_type="text/plain")
        response = web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request)
        await response.write(data)
        offset = path.stat().st_size if path.exists() else 0
        assert container is not None
        while True:
            size = path.stat().st_size if path.exists() else 0
            if size > offset:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read(size - offset)
                offset = size
                await response.write(chunk)
            if container.exited.done():
                break
            await asyncio.sleep(FOLLOW_POLL)
        await response.write_eof()
        return response

    # --- exec -------------------------------------------------------------------------------

    async def exec(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        query = request.query
        command = query.getall("command", [])
        if not command:
            return _status_error(400, "you must specify at least 1 command")
        _, container, problem = self.locate(
            info["namespace"], info["pod"], info["container"], False
        )
        if container is None or container.exited.done():
            return _status_error(400, problem or f"container {info['container']} is not running")
        ws = web.WebSocketResponse(protocols=PROTOCOLS)
        if not ws.can_prepare(request).ok:
            return _status_error(400, "exec needs a WebSocket upgrade (v5.channel.k8s.io)")
        await ws.prepare(request)
        tty = query.get("tty") in ("true", "1")
        want_stdin = query.get("stdin") in ("true", "1")
        try:
            argv = self.exec_argv(container, command, tty)
            code = await self._run(ws, argv, tty, want_stdin)
            await ws.send_bytes(bytes([ERROR]) + orjson.dumps(_exit_status(command, code)))
        except Exception as error:  # the stream is open: report on the error channel
            log.exception("exec failed")
            message = {"metadata": {}, "status": "Failure", "message": str(error)}
            with contextlib.suppress(Exception):
                await ws.send_bytes(bytes([ERROR]) + orjson.dumps(message))
        await ws.close()
        return ws

    async def _run(
        self, ws: web.WebSocketResponse, argv: list[str], tty: bool, want_stdin: bool
    ) -> int:
        if tty:
            master, slave = os.openpty()
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
            )
            os.close(slave)
            outputs = [(master, STDOUT)]
            stdin_fd: int | None = master
        else:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if want_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            master = -1
            outputs = []
            stdin_fd = None
        pumps: list[asyncio.Task[None]] = []
        if tty:
            pumps.append(asyncio.ensure_future(_pump_fd(master, STDOUT, ws)))
        else:
            assert process.stdout is not None and process.stderr is not None
            pumps.append(asyncio.ensure_future(_pump_stream(process.stdout, STDOUT, ws)))
            pumps.append(asyncio.ensure_future(_pump_stream(process.stderr, STDERR, ws)))
        reader = asyncio.ensure_future(_read_client(ws, process, stdin_fd))
        code = await process.wait()
        await asyncio.gather(*pumps, return_exceptions=True)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        if master >= 0:
            with contextlib.suppress(OSError):
                os.close(master)
        del outputs
        return code


def _exit_status(command: list[str], code: int) -> dict[str, Any]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
        f"{command}, exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


async def _pump_stream(
    stream: asyncio.StreamReader, channel: int, ws: web.WebSocketResponse
) -> None:
    while True:
        chunk = await stream.read(32768)
        if not chunk:
            return
        await ws.send_bytes(bytes([channel]) + chunk)


async def _pump_fd(fd: int, channel: int, ws: web.WebSocketResponse) -> None:
    loop = asyncio.get_running_loop()
    while True:
        readable = loop.create_future()
        loop.add_reader(fd, readable.set_result, None)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        try:
            chunk = os.read(fd, 32768)
        except OSError:  # EIO: the terminal's other side is closed
            return
        if not chunk:
            return
        await ws.send_bytes(bytes([channel]) + chunk)


async def _read_client(
    ws: web.WebSocketResponse, process: asyncio.subprocess.Process, fd: int | None
) -> None:
    """Feed stdin, apply resizes, close stdin on the v5 close signal."""
    async for message in ws:
        if message.type != WSMsgType.BINARY or not message.data:
            continue
        channel, data = message.data[0], message.data[1:]
        if channel == STDIN and data:
            if fd is not None:
                os.write(fd, data)
            elif process.stdin is not None:
                process.stdin.write(data)
                await process.stdin.drain()
        elif channel == RESIZE and fd is not None:
            size = orjson.loads(data)
            packed = struct.pack(
                "HHHH", int(size.get("Height", 24)), int(size.get("Width", 80)), 0, 0
            )
            fcntl.ioctl(fd, termios.TIOCSWINSZ, packed)
            # The terminal is not the runtime's controlling one, so no SIGWINCH comes by itself:
            # `runc exec --tty` copies the new size to the container's terminal on SIGWINCH.
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGWINCH)
        elif channel == CLOSE and data[:1] == bytes([STDIN]):
            if fd is not None:
                os.write(fd, b"\x04")
            elif process.stdin is not None:
                process.stdin.close()
