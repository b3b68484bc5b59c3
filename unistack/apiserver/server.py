"""Run the API server: the SQLite store, the ASGI app, uvicorn with TLS.

`serve` is what `unistack serve apiserver` calls; it blocks until SIGINT or SIGTERM.
uvicorn runs with uvloop and httptools, the fastest well-kept ASGI server stack.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from unistack.apiserver.app import ApiServer
from unistack.apiserver.auth import Authenticator, TokenFileAuthenticator, UnionAuthenticator
from unistack.apiserver.keystone import KeystoneAuthenticator, StoreRevocations
from unistack.apiserver.serviceaccounts import TokenIssuer
from unistack.store import ObjectStore, SqliteStore
from unistack.tokens import RepositoryCodec, load_keys


@dataclass(frozen=True, slots=True)
class ServerSettings:
    db_path: str
    host: str = "127.0.0.1"
    port: int = 6443
    certfile: str | None = None
    keyfile: str | None = None
    token_file: str | None = None
    compaction_interval: float = 300.0
    node_proxy_token_file: str | None = None  # the bearer token agents accept (logs, exec)
    key_repository: str | None = None  # the identity service's Fernet keys: Keystone tokens
    service_account_key_file: str | None = None  # signs service-account tokens (`pki/sa.key`)
    advertise_address: str = ""  # where pods reach the API server (the `kubernetes` Service)


def build_authenticator(settings: ServerSettings, store: ObjectStore) -> Authenticator | None:
    """The static token file, then Keystone tokens when the cloud's keys are there."""
    found: list[Authenticator] = []
    if settings.token_file:
        found.append(TokenFileAuthenticator(settings.token_file))
    keys = load_keys(Path(settings.key_repository)) if settings.key_repository else []
    if keys and settings.key_repository:  # followed: a rotation needs no restart
        codec = RepositoryCodec(Path(settings.key_repository))
        found.append(KeystoneAuthenticator(codec, StoreRevocations(store)))
    return UnionAuthenticator(*found) if found else None


def build_app(settings: ServerSettings, policy: tuple[dict[str, Any], ...] = ()) -> ApiServer:
    store = SqliteStore(settings.db_path)
    return ApiServer(
        store,
        policy=policy,
        authenticator=build_authenticator(settings, store),
        compaction_interval=settings.compaction_interval or None,
        node_proxy_token=_read_token(settings.node_proxy_token_file),
        advertise=(settings.advertise_address, settings.port)
        if settings.advertise_address
        else None,
        token_issuer=(
            TokenIssuer.from_file(settings.service_account_key_file)
            if settings.service_account_key_file
            else None
        ),
    )


def _read_token(path: str | None) -> str:
    if not path:
        return ""
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


# what a request still in flight gets to finish once shutdown begins
SHUTDOWN_GRACE_SECONDS = 2


class _EndingWatches(uvicorn.Server):
    """A watch never finishes by itself, so uvicorn's shutdown, which waits for the
    requests in flight, waited on every watch until the supervisor's SIGKILL (10 s later,
    the store left unclosed). As kube-apiserver does, the clients' watches are ended as
    shutdown begins (`watch.Streams`: their streams close cleanly and each watcher resumes
    from its last resourceVersion against the next server); other requests get
    SHUTDOWN_GRACE_SECONDS."""

    def __init__(self, config: uvicorn.Config, app: ApiServer) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.app.streams.end()
        await super().shutdown(sockets)


def serve(settings: ServerSettings, policy: tuple[dict[str, Any], ...] = ()) -> None:
    """Serve until a signal; `policy` is RBAC the embedding adds to the defaults."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = build_app(settings, policy)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=settings.certfile,
        ssl_keyfile=settings.keyfile,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=120,
        proxy_headers=False,  # nothing sits in front of the API server to set X-Forwarded-*
        server_header=False,
        backlog=4096,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    try:
        _EndingWatches(config, app).run()
    finally:
        app.store.close()
