"""The OCI Distribution (Docker registry v2) HTTP API over an `ImageStore`, as plain ASGI.

Serves what `skopeo copy`, `docker pull/push` and our own puller use: the base check,
blobs (HEAD/GET with Range), chunked, monolithic and cross-repository-mount uploads,
manifests by tag or digest, tag listing and the catalog. Access is anonymous; run it on
loopback. Routes are one table below; handlers are `verb_noun` methods returning a
`Response`. Store errors map to the spec's error codes in `_STORE_ERRORS`; anything else is
logged and answered with a spec-format 500, never a traceback.

`serve` runs it alone; `run` runs it inside the caller's event loop on a listener that shares
its address with the host's other registries (SO_REUSEPORT: the supervisor's and the
control plane's registry pods, `cli.selfhost`), and, cancelled, serves on for a drain before
closing the listener and finishing the requests in flight. Every replica reads and writes the
same store, whose writes are atomic renames and whose uploads are files, so a push may go to
one replica and its next chunk to another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import uvicorn

from unistack.images import digests, oci, reference
from unistack.images import store as storage
from unistack.images.asgi import (
    BodyTooLarge,
    ClientDisconnected,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    send_response,
    serve_lifespan,
)

log = logging.getLogger(__name__)

API_VERSION_HEADER = {"docker-distribution-api-version": "registry/2.0"}
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
BLOB_CHUNK = 1024 * 1024

Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]


class RegistryError(Exception):
    """An error answered in the spec's format: `{"errors": [{code, message, detail}]}`."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail

    def response(self, headers: dict[str, str] | None = None) -> Response:
        error = {"code": self.code, "message": self.message, "detail": self.detail}
        body = orjson.dumps({"errors": [error]})
        return Response(self.status, {"content-type": "application/json", **(headers or {})}, body)


_STORE_ERRORS: dict[type[storage.StoreError], tuple[int, str]] = {
    storage.BlobUnknown: (404, "BLOB_UNKNOWN"),
    storage.ManifestUnknown: (404, "MANIFEST_UNKNOWN"),
    storage.NameUnknown: (404, "NAME_UNKNOWN"),
    storage.UploadUnknown: (404, "BLOB_UPLOAD_UNKNOWN"),
    storage.NameInvalid: (400, "NAME_INVALID"),
    storage.DigestMismatch: (400, "DIGEST_INVALID"),
}


class Registry:
    """The registry as one ASGI callable."""

    def __init__(self, store: storage.ImageStore) -> None:
        self.store = store
        name = r"(?P<name>.+)"
        self.routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (re.compile(r"^/v2/?$"), {"GET": self.get_base, "HEAD": self.get_base}),
            (re.compile(r"^/v2/_catalog$"), {"GET": self.list_repositories}),
            (re.compile(rf"^/v2/{name}/tags/list$"), {"GET": self.list_tags}),
            (
                re.compile(rf"^/v2/{name}/manifests/(?P<ref>[^/]+)$"),
                {
                    "GET": self.get_manifest,
                    "HEAD": self.get_manifest,
                    "PUT": self.put_manifest,
                    "DELETE": self.delete_manifest,
                },
            ),
            (re.compile(rf"^/v2/{name}/blobs/uploads/?$"), {"POST": self.start_upload}),
            (
                re.compile(rf"^/v2/{name}/blobs/uploads/(?P<upload>[^/]+)$"),
                {
                    "GET": self.get_upload,
                    "PATCH": self.patch_upload,
                    "PUT": self.finish_upload,
                    "DELETE": self.cancel_upload,
                },
            ),
            (
                re.compile(rf"^/v2/{name}/blobs/(?P<digest>[^/]+)$"),
                {"GET": self.get_blob, "HEAD": self.get_blob},
            ),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request.from_scope(scope, receive)
        response = await self.respond(request)
        response.headers.update(API_VERSION_HEADER)
        try:
            await send_response(send, response, head=request.method == "HEAD")
        except OSError:
            log.info("client went away during %s %s", request.method, request.path)
        except Exception:
            log.exception("registry failed sending %s %s", request.method, request.path)

    async def respond(self, request: Request) -> Response:
        """Route the request and turn every failure into a spec-format error response."""
        try:
            handler, params = self._route(request)
            return await handler(request, params)
        except RegistryError as error:
            return error.response()
        except storage.StoreError as error:
            status, code = _STORE_ERRORS[type(error)]
            return RegistryError(status, code, str(error)).response()
        except BodyTooLarge as error:
            return RegistryError(413, "SIZE_INVALID", str(error)).response()
        except ClientDisconnected:
            return Response(400)
        except Exception:
            log.exception("registry failed on %s %s", request.method, request.path)
            return RegistryError(500, "UNKNOWN", "internal server error").response()

    def _route(self, request: Request) -> tuple[Handler, dict[str, str]]:
        for pattern, methods in self.routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            params = match.groupdict()
            if "name" in params and not reference.is_repository_name(params["name"]):
                raise RegistryError(400, "NAME_INVALID", f"invalid repository {params['name']!r}")
            if request.method not in methods:
                raise RegistryError(405, "UNSUPPORTED", f"{request.method} is not supported here")
            return methods[request.method], params
        raise RegistryError(404, "NOT_FOUND", f"no endpoint at {request.path}")

    # Base and listings

    async def get_base(self, request: Request, params: dict[str, str]) -> Response:
        return Response(200, {"content-type": "application/json"}, b"{}")

    async def list_repositories(self, request: Request, params: dict[str, str]) -> Response:
        page, link = _paginate(self.store.list_repositories(), request, "/v2/_catalog")
        return _json(200, {"repositories": page}, link)

    async def list_tags(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        page, link = _paginate(self.store.list_tags(name), request, f"/v2/{name}/tags/list")
        return _json(200, {"name": name, "tags": page}, link)

    # Manifests

    async def get_manifest(self, request: Request, params: dict[str, str]) -> Response:
        manifest = self.store.get_manifest(params["name"], params["ref"])
        headers = {
            "content-type": manifest.media_type,
            "docker-content-digest": manifest.digest,
            "etag": f'"{manifest.digest}"',
        }
        return Response(200, headers, manifest.data)

    async def put_manifest(self, request: Request, params: dict[str, str]) -> Response:
        name, ref = params["name"], params["ref"]
        data = await request.body(MAX_MANIFEST_BYTES)
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        try:
            manifest = oci.parse_manifest(data, content_type or None)
        except oci.ManifestError as error:
            raise RegistryError(400, "MANIFEST_INVALID", f"manifest invalid: {error}") from None
        self._check_references(name, manifest)
        digest = self.store.put_manifest(name, ref, data, manifest.media_type)
        location = f"/v2/{name}/manifests/{digest}"
        return Response(201, {"location": location, "docker-content-digest": digest})

    async def delete_manifest(self, request: Request, params: dict[str, str]) -> Response:
        self.store.delete_manifest(params["name"], params["ref"])
        return Response(202)

    def _check_references(self, name: str, manifest: oci.Manifest) -> None:
        for blob in manifest.referenced_blobs():
            if self.store.blob_size(blob.digest) is None:
                raise _manifest_blob_unknown(blob.digest)
        for child in manifest.children:
            if not self.store.has_manifest(name, child.digest):
                raise _manifest_blob_unknown(child.digest)

    # Blobs

    async def get_blob(self, request: Request, params: dict[str, str]) -> Response:
        digest = _digest(params["digest"])
        size = self.store.blob_size(digest)
        if size is None:
            raise RegistryError(404, "BLOB_UNKNOWN", f"blob {digest} is unknown", params)
        headers = {
            "content-type": "application/octet-stream",
            "docker-content-digest": digest,
            "accept-ranges": "bytes",
            "etag": f'"{digest}"',
        }
        start, end = _byte_range(request.headers.get("range"), size)
        status = 200
        if (start, end) != (0, size - 1) and size > 0:
            status = 206
            headers["content-range"] = f"bytes {start}-{end}/{size}"
        headers["content-length"] = str(max(end - start + 1, 0))
        if request.method == "HEAD":
            return Response(status, headers)
        handle = self.store.open_blob(digest)
        return Response(status, headers, stream=_read_chunks(handle, start, end - start + 1))

    # Uploads

    async def start_upload(self, request: Request, params: dict[str, str]) -> Response:
        name = params["name"]
        mounted = request.query.get("mount")
        if mounted and self.store.blob_size(_digest(mounted)) is not None:
            return _blob_created(name, mounted)
        upload_id = self.store.start_upload()
        digest = request.query.get("digest")
        if digest is None:
            return self._upload_status(202, name, upload_id)
        await self._receive_chunk(request, upload_id)
        await asyncio.to_thread(self.store.finish_upload, upload_id, _digest(digest))
        return _blob_created(name, digest)

    async def get_upload(self, request: Request, params: dict[str, str]) -> Response:
        return self._upload_status(204, params["name"], params["upload"])

    async def patch_upload(self, request: Request, params: dict[str, str]) -> Response:
        name, upload_id = params["name"], params["upload"]
        size = self.store.upload_size(upload_id)
        content_range = request.headers.get("content-range")
        if content_range and _range_start(content_range) != size:
            return RegistryError(
                416, "BLOB_UPLOAD_INVALID", f"upload has {size} bytes; got range {content_range}"
            ).response(self._upload_status(416, name, upload_id).headers)
        await self._receive_chunk(request, upload_id)
        return self._upload_status(202, name, upload_id)

    async def finish_upload(self, request: Request, params: dict[str, str]) -> Response:
        name, upload_id = params["name"], params["upload"]
        digest = _digest(request.query.get("digest", ""))
        await self._receive_chunk(request, upload_id)
        await asyncio.to_thread(self.store.finish_upload, upload_id, digest)
        return _blob_created(name, digest)

    async def cancel_upload(self, request: Request, params: dict[str, str]) -> Response:
        self.store.cancel_upload(params["upload"])
        return Response(204)

    async def _receive_chunk(self, request: Request, upload_id: str) -> None:
        with self.store.open_upload(upload_id) as handle:
            async for chunk in request.stream():
                handle.write(chunk)

    def _upload_status(self, status: int, name: str, upload_id: str) -> Response:
        size = self.store.upload_size(upload_id)
        headers = {
            "location": f"/v2/{name}/blobs/uploads/{upload_id}",
            "docker-upload-uuid": upload_id,
            "range": f"0-{max(size - 1, 0)}",
        }
        return Response(status, headers)


def build_app(root: Path) -> Registry:
    """The registry over a store rooted at `root`."""
    return Registry(storage.ImageStore(root))


def serve(root: Path, host: str, port: int) -> None:
    """Run the registry under uvicorn (plain HTTP) until interrupted."""
    uvicorn.run(
        build_app(root), host=host, port=port, loop="uvloop", http="httptools", log_level="warning"
    )


def shared_listener(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on `host`:`port` that other processes may bind too
    (SO_REUSEPORT): the kernel spreads new connections over them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, port))
        listener.listen(backlog)
    except OSError:
        listener.close()
        raise
    return listener


# After the listener closes, how long connections it accepted have to send their request
# before uvicorn closes those still idle: a client that opened one an instant before would
# otherwise have its request refused with a reset or a broken pipe.
ACCEPTED_GRACE_SECONDS = 0.5


class _EmbeddedServer(uvicorn.Server):
    """uvicorn in the caller's loop: signals are the caller's, and stopping is cancelling.
    Stopping closes the listener first and gives what it accepted `ACCEPTED_GRACE_SECONDS`
    to send a request before idle connections are closed."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for listener in sockets or []:
            listener.close()
        await asyncio.sleep(ACCEPTED_GRACE_SECONDS)
        await super().shutdown(sockets)


async def run(
    root: Path,
    host: str,
    port: int,
    *,
    drain_seconds: float = 0.0,
    serving: asyncio.Event | None = None,
) -> None:
    """Serve until cancelled on a `shared_listener`; `serving` is set while it accepts. Once
    cancelled it clears `serving`, serves on `drain_seconds` (time for a registry that stands
    in to bind the port), then closes the listener and finishes the requests in flight."""
    listener = shared_listener(host, port)
    config = uvicorn.Config(build_app(root), http="httptools", log_level="warning")
    server = _EmbeddedServer(config)
    running = asyncio.create_task(server.serve(sockets=[listener]), name="registry")
    try:
        while not server.started and not running.done():
            await asyncio.wait([running], timeout=0.05)
        if serving is not None and server.started:
            serving.set()
        await asyncio.wait([running])
        running.result()
    finally:
        if serving is not None:
            serving.clear()
        if not running.done():
            await asyncio.sleep(drain_seconds)
            server.should_exit = True
            await asyncio.wait([running])
        listener.close()


def _digest(value: str) -> str:
    if not digests.is_digest(value):
        raise RegistryError(400, "DIGEST_INVALID", f"invalid digest {value!r}", {"digest": value})
    return value


def _manifest_blob_unknown(digest: str) -> RegistryError:
    return RegistryError(
        400, "MANIFEST_BLOB_UNKNOWN", f"manifest references unknown {digest}", {"digest": digest}
    )


def _blob_created(name: str, digest: str) -> Response:
    headers = {"location": f"/v2/{name}/blobs/{digest}", "docker-content-digest": digest}
    return Response(201, headers)


def _json(status: int, document: Any, link: str | None) -> Response:
    headers = {"content-type": "application/json"}
    if link:
        headers["link"] = link
    return Response(status, headers, orjson.dumps(document))


def _paginate(items: list[str], request: Request, path: str) -> tuple[list[str], str | None]:
    """Apply `last` and `n`; return the page and the Link header for the next one."""
    last = request.query.get("last")
    if last:
        items = [item for item in items if item > last]
    if "n" not in request.query:
        return items, None
    try:
        count = int(request.query["n"])
    except ValueError:
        raise RegistryError(400, "PAGINATION_NUMBER_INVALID", "n must be an integer") from None
    if count < 0:
        raise RegistryError(400, "PAGINATION_NUMBER_INVALID", "n must not be negative")
    page = items[:count]
    if len(items) <= count or not page:
        return page, None
    return page, f'<{path}?n={count}&last={page[-1]}>; rel="next"'


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """The inclusive byte range a `Range: bytes=a-b` header asks for, else the whole blob."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip()) if header else None
    if match is None or size == 0 or match.group(0) == "bytes=-":
        return 0, size - 1
    first, last = match.groups()
    if not first:
        return max(size - int(last), 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start > end:
        raise RegistryError(416, "RANGE_INVALID", f"range {header} is outside 0-{size - 1}")
    return start, end


def _range_start(content_range: str) -> int:
    match = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)", content_range.strip())
    if match is None:
        raise RegistryError(400, "BLOB_UPLOAD_INVALID", f"bad Content-Range {content_range!r}")
    return int(match.group(1))


async def _read_chunks(handle: BinaryIO, start: int, length: int) -> AsyncGenerator[bytes, None]:
    """Stream `length` bytes from `start`, reading in a thread so the loop stays free."""
    try:
        handle.seek(start)
        while length > 0:
            chunk = await asyncio.to_thread(handle.read, min(BLOB_CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()
