"""What every OpenStack facade shares on the HTTP side: errors, request ids, JSON in and out.

Each service is a Starlette app (routing and request parsing; uvicorn serves it). `service_app`
builds one with:
- `x-openstack-request-id` (`req-<uuid>`) on every response, as oslo.middleware's RequestId
  does; the id also goes in the access log line of the failure, if any;
- OpenStack's error bodies in the service's own format (`ErrorFormat`): Keystone's
  `{"error": {"code", "title", "message"}}`, Nova's and Cinder's
  `{"itemNotFound": {"code", "message"}}`, Neutron's `{"NeutronError": {"type", "message",
  "detail"}}`, Glance's webob `{"code": "404 Not Found", "title", "message"}`. Unknown paths
  and methods get them too; a record missing, duplicated or contended below a handler is a
  404 or 409; an unexpected exception is logged with its traceback and the client gets a plain
  500 body, never the trace.
`read_json` enforces the request body limit (413) and a JSON object body (400);
`read_json_value` the limit only (a JSON patch is a list).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from unistack.client.transport import TransportError
from unistack.iaas import records

Obj = dict[str, Any]
ErrorFormat = Callable[[int, str, str], Obj]  # status, message, error type
REQUEST_ID_HEADER = "x-openstack-request-id"
MAX_BODY_BYTES = 114_688  # Keystone's and oslo.middleware's default max_request_body_size

log = logging.getLogger(__name__)


class OpenStackError(Exception):
    """An error answer: its status and the message the client reads."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        error_type: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.error_type = error_type  # Neutron's "type" (NetworkNotFound), where it has one


def bad_request(message: str) -> OpenStackError:
    return OpenStackError(400, message)


def unauthorized(
    message: str = "The request you have made requires authentication.",
) -> OpenStackError:
    return OpenStackError(401, message)


def forbidden(message: str) -> OpenStackError:
    return OpenStackError(403, message)


def not_found(message: str) -> OpenStackError:
    return OpenStackError(404, message)


def conflict(message: str) -> OpenStackError:
    return OpenStackError(409, message)


def title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def keystone_error(status: int, message: str, error_type: str = "") -> Obj:
    return {"error": {"code": status, "title": title(status), "message": message}}


# Nova's (and Cinder's) fault names by status, from nova/api/openstack/wsgi.py's Fault.
_FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    406: "notAceptable",  # sic, as Nova spells it
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def nova_error(status: int, message: str, error_type: str = "") -> Obj:
    name = _FAULT_NAMES.get(status, "computeFault")
    return {name: {"code": status, "message": message}}


def neutron_error(status: int, message: str, error_type: str = "") -> Obj:
    default = {400: "BadRequest", 401: "NotAuthorized", 403: "PolicyNotAuthorized"}
    default |= {404: "NotFound", 409: "Conflict", 413: "RequestEntityTooLarge"}
    kind = error_type or default.get(status, "HTTPError")
    return {"NeutronError": {"type": kind, "message": message, "detail": ""}}


def glance_error(status: int, message: str, error_type: str = "") -> Obj:
    return {"code": f"{status} {title(status)}", "title": title(status), "message": message}


def base_url(request: Request) -> str:
    """The service's own URL with a trailing slash, mount path included (`/identity/`):
    Starlette's `request.base_url` leaves out the path the gateway mounted the service at."""
    root = request.scope.get("root_path", "")
    return f"{request.url.scheme}://{request.url.netloc}{root}/"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def empty(status: int = 204, headers: dict[str, str] | None = None) -> Response:
    return Response(b"", status, headers)


async def read_json_value(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    """The request body as any JSON value (None when empty): 413 beyond `limit` bytes, 400
    when it is not JSON."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise OpenStackError(413, "Request Entity Too Large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise OpenStackError(413, "Request Entity Too Large")
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Malformed request body: {exc}") from exc


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> Obj:
    """The request body as a JSON object, as `read_json_value` reads it; 400 if not an
    object."""
    data = await read_json_value(request, limit)
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


class RequestIdMiddleware:
    """Adds `x-openstack-request-id` to every response (plain ASGI, so streams pass through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req-{uuid.uuid4()}"
        scope.setdefault("state", {})["request_id"] = request_id
        header = (REQUEST_ID_HEADER.encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def service_app(
    routes: Sequence[BaseRoute], error_format: ErrorFormat, *, redirect_slashes: bool = True
) -> ASGIApp:
    """A service's app: its routes, its error format, request ids (outermost, so that even
    a 500 carries one). Without `redirect_slashes` a path with a stray trailing slash is a
    404 (Glance's `/v2/images/` names no image) instead of a redirect."""

    async def openstack_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OpenStackError)
        body = error_format(exc.status, exc.message, exc.error_type)
        return json_response(body, exc.status, exc.headers)

    async def record_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, records.RecordError)
        if isinstance(exc, records.Missing):
            status, text = 404, f"{exc.kind.kind} {exc.object_id} could not be found."
        elif isinstance(exc, records.Duplicate):
            status, text = 409, f"{exc.kind.kind} {exc.object_id} already exists."
        else:
            status, text = 409, f"{exc.kind.kind} {exc.object_id} is being changed; try again."
        return json_response(error_format(status, text, ""), status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "The resource could not be found.", 405: "Method Not Allowed"}
        text = message.get(exc.status_code, str(exc.detail))
        return json_response(
            error_format(exc.status_code, text, ""), exc.status_code, dict(exc.headers or {})
        )

    async def store_unavailable(request: Request, exc: Exception) -> Response:
        # The API server (the store) did not answer: a restart or a kill; try again shortly.
        log.warning(
            "%s %s: the API server did not answer: %s", request.method, request.url.path, exc
        )
        message = "The service's store is unavailable; try again shortly."
        return json_response(error_format(503, message, ""), 503, {"Retry-After": "1"})

    async def unexpected(request: Request, exc: Exception) -> Response:
        request_id = request.scope.get("state", {}).get("request_id", "")
        log.exception("%s %s failed (%s)", request.method, request.url.path, request_id)
        message = "An unexpected error prevented the server from fulfilling your request."
        return json_response(error_format(500, message, ""), 500)

    app = Starlette(
        routes=list(routes),
        exception_handlers={
            OpenStackError: openstack_error,
            records.RecordError: record_error,
            HTTPException: http_error,
            TransportError: store_unavailable,
            Exception: unexpected,
        },
    )
    app.router.redirect_slashes = redirect_slashes
    return RequestIdMiddleware(app)
