"""The agent's side of the thin ``unistack-cni`` (``delegate``): run CNI calls in-process.

``serving(path)`` listens on a unix socket in a thread of its own while the node agent runs
(``unistack serve agent`` wraps the agent in it); each connection carries one call from
``delegate``, which ``plugin.run`` executes here exactly as the standalone plugin would, one
thread per call (the IPAM lock is a ``flock`` per open file, so concurrent calls serialise as
concurrent plugin processes do). Threads, not the agent's event loop: the plugin's work blocks
(the lock, ``ip`` and ``nft``), and the agent needs nothing from it but that it is done.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socketserver
import threading
from collections.abc import Iterator

from unistack.integration.cni import delegate, plugin

log = logging.getLogger(__name__)


class _Call(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        environ, stdin = delegate.decode_request(self.rfile.read())
        out = io.StringIO()
        code = plugin.run(environ, stdin, out)
        self.wfile.write(delegate.encode_reply(code, out.getvalue().encode()))
        server = self.server
        assert isinstance(server, CniServer)
        server.handled += 1


class CniServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    handled = 0  # calls served, for tests and curiosity


@contextlib.contextmanager
def serving(path: str) -> Iterator[CniServer]:
    """Serve CNI calls on ``path`` (mode 0600) until the block ends; then remove the socket."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a socket left by an agent that was killed
    os.makedirs(os.path.dirname(path), exist_ok=True)
    server = CniServer(path, _Call)
    os.chmod(path, 0o600)
    thread = threading.Thread(target=server.serve_forever, name="cni-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
