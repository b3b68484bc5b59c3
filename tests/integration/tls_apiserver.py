"""An API server app served by uvicorn with TLS on a loopback port, and the real kubectl
against it (kubectl sends bearer tokens only over TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from unistack.apiserver.app import ApiServer
from unistack.cli import pki

KUBECTL = shutil.which("kubectl")


@dataclass
class Served:
    url: str
    home: Path  # the CA certificate and kubectl's empty kubeconfig and cache

    async def kubectl(self, token: str, *args: str) -> tuple[int, str]:
        """kubectl as the bearer of `token`: its exit status and its stdout and stderr."""
        assert KUBECTL is not None
        env = {
            **os.environ,
            "KUBECONFIG": str(self.home / "empty-kubeconfig"),
            "HOME": str(self.home),
        }
        process = await asyncio.create_subprocess_exec(
            KUBECTL,
            f"--server={self.url}",
            f"--certificate-authority={self.home / 'ca.crt'}",
            f"--token={token}",
            "--request-timeout=10s",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        output, _ = await process.communicate()
        return process.returncode or 0, output.decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_tls(app: ApiServer, home: Path) -> AsyncIterator[Served]:
    """Serve a started `app` until the block ends; certificates are made under `home`."""
    (home / "empty-kubeconfig").write_text("")
    files = pki.PkiFiles(home / "ca.crt", home / "ca.key", home / "tls.crt", home / "tls.key")
    pki.ensure_pki(files)
    port = _free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="error",
        ssl_certfile=str(files.serving_cert),
        ssl_keyfile=str(files.serving_key),
    )
    server = uvicorn.Server(config)
    serving = asyncio.get_running_loop().create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        yield Served(f"https://127.0.0.1:{port}", home)
    finally:
        server.should_exit = True
        await serving
