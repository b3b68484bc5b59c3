"""The ``unistack-cni`` the node agent installs: a thin plugin that hands each call to the agent.

A runtime execs it as any CNI plugin (``CNI_*`` variables, config on stdin, result or error
JSON on stdout, exit code). It passes the variables and stdin over a unix socket to the agent's
``server`` (started by ``unistack serve agent``), which runs ``plugin`` there and sends back the
output and exit code, as Cilium's and Multus's thin plugins hand their calls to their daemons.
When nothing listens on the socket (the agent is stopped; ``unistack down`` cleaning up), the
plugin runs here instead, so the executable never depends on the agent being up.

Why: the plugin is exec'd for every pod ADD and DEL, and measured per exec (CPU, user+system,
this 2-core machine) the self-contained plugin cost ~70 ms (ADD) and ~53 ms (DEL) even
started with ``python -I -S``: ~14 ms of interpreter, ~30 ms of imports (json and re, typing,
ipaddress, hashlib) and the work. This client imports nothing but ``os``, ``sys`` and
``_socket`` (the C module under ``socket``, whose enum wrappers alone cost ~15 ms) and costs
~16 ms; the agent, which has all of it imported already, does the work for ~10 ms more.

The wire format needs no JSON on this side: the request is ``NAME=value\\0`` for each ``CNI_*``
variable, an empty entry, then stdin verbatim; the reply is the exit code, a newline and the
plugin's stdout. ``encode_*``/``decode_*`` are shared with ``server``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing and collections.abc are what this module must not import
if TYPE_CHECKING:
    from collections.abc import Mapping

VARIABLES = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")


def main(socket_path: str) -> None:
    """Entry point of the installed executable."""
    stdin = sys.stdin.buffer.read()
    try:
        reply = call(socket_path, encode_request(os.environ, stdin))
    except OSError as error:  # the agent went away mid-call: report it, never redo it
        sys.exit(_fail(f"the agent's CNI server failed: {error}", stdin))
    if reply is None:  # no agent listening: run the plugin in this process
        from unistack.integration.cni import plugin

        sys.exit(plugin.run(os.environ, stdin, sys.stdout))
    code, output = decode_reply(reply)
    sys.stdout.buffer.write(output)
    sys.exit(code)


def call(socket_path: str, request: bytes) -> bytes | None:
    """Send ``request`` and read the reply to its end; None when nobody listens."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.connect(socket_path)
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        sock.sendall(request)
        sock.shutdown(_socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    finally:
        sock.close()
    if not chunks:
        raise ConnectionResetError("no reply")
    return b"".join(chunks)


def encode_request(environ: Mapping[str, str], stdin: bytes) -> bytes:
    pairs = [f"{name}={environ[name]}\0".encode() for name in VARIABLES if name in environ]
    return b"".join(pairs) + b"\0" + stdin


def decode_request(request: bytes) -> tuple[dict[str, str], bytes]:
    """The ``CNI_*`` variables and the stdin of an ``encode_request`` message."""
    environ: dict[str, str] = {}
    at = 0
    while (end := request.index(b"\0", at)) != at:
        name, _, value = request[at:end].decode().partition("=")
        environ[name] = value
        at = end + 1
    return environ, request[at + 1 :]


def encode_reply(code: int, output: bytes) -> bytes:
    return f"{code}\n".encode() + output


def decode_reply(reply: bytes) -> tuple[int, bytes]:
    code, _, output = reply.partition(b"\n")
    return int(code), output


def _fail(message: str, stdin: bytes) -> int:
    from unistack.dataplane import cnierrors
    from unistack.integration.cni import plugin

    error = cnierrors.CniError(cnierrors.INTERNAL, message)
    return plugin.fail(error, stdin, sys.stdout)
