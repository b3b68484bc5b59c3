"""The ASGI application: authentication, routing, error handling, response writing.

Middleware order, outermost first: (1) errors — any `ApiError` becomes a `Status` body, any
other exception is logged here and answered with a bare 500 Status, never a traceback;
(2) the 3 MiB body limit (413); (3) authentication (401: service-account tokens, then the
authenticator given) and authorization (403: by default system:masters, then RBAC, see
`auth`); (4) routing to discovery, OpenAPI, health, the service-account issuer's documents, or
the resource verbs in `handlers` and `watch`.

We route ourselves rather than through a framework router because Kubernetes paths are one
grammar (`routing.parse`) over a registry that changes at run time as CRDs come and go.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import parse_qs

import orjson

from unistack import store as storage
from unistack.apiserver import (
    auth,
    binding,
    bootstrap,
    crds,
    discovery,
    errors,
    fieldselectors,
    impersonation,
    lifecycle,
    metrics,
    nodeproxy,
    noderestriction,
    openapi,
    reviews,
    routing,
    serviceaccount_admission,
    serviceaccounts,
    serviceips,
    tokenrequest,
)
from unistack.apiserver.handlers import ChainedHooks, ResourceHandlers
from unistack.apiserver.kinds import register_builtins
from unistack.apiserver.rbac.authorizer import RbacAuthorizer
from unistack.apiserver.rbac.escalation import EscalationCheck
from unistack.apiserver.request import Request, User
from unistack.apiserver.resources import Registry, ResourceType
from unistack.apiserver.responses import (
    AnyResponse,
    PartsResponse,
    Response,
    StreamingResponse,
)
from unistack.apiserver.watch import Streams, WatchStream

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_BODY = 3 * 1024 * 1024
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-unistack",
    "gitCommit": "unistack",
    "gitTreeState": "clean",
    "buildDate": "2026-11-23T00:00:00Z",
    "goVersion": "python",
    "compiler": "cpython",
    "platform": "linux/amd64",
}


class ApiServer:
    """The Kubernetes-compatible API as one ASGI callable over one store."""

    def __init__(
        self,
        store: storage.ObjectStore,
        *,
        authenticator: auth.Authenticator | None = None,
        authorizer: auth.Authorizer | None = None,
        registry: Registry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        compaction_interval: float | None = None,
        service_cidr: str = serviceips.DEFAULT_SERVICE_CIDR,
        node_ports: tuple[int, int] = serviceips.DEFAULT_NODE_PORTS,
        node_proxy_token: str = "",
        token_issuer: serviceaccounts.TokenIssuer | None = None,
        advertise: tuple[str, int] | None = None,  # where pods reach it: `kubernetes`' endpoint
        policy: tuple[dict[str, Any], ...] = (),  # ClusterRoles and bindings made like defaults
    ) -> None:
        self.policy = policy
        self.advertise = advertise or (bootstrap.API_SERVER_ADDRESS, bootstrap.API_SERVER_PORT)
        self.store = store
        self.streams = Streams()  # the clients' watches, ended when the server shuts down
        self.compaction_interval = compaction_interval
        self._background: set[asyncio.Task[None]] = set()
        self.registry = registry or Registry()
        if registry is None:
            register_builtins(self.registry)
        # service-account tokens first: a token that is no JWT is passed on at once
        self.tokens = token_issuer or serviceaccounts.TokenIssuer.ephemeral()
        self.service_accounts = serviceaccounts.ServiceAccountAuthenticator(
            self.tokens, serviceaccounts.Accounts(store)
        )
        self.authenticator = auth.UnionAuthenticator(
            self.service_accounts, authenticator or auth.TrustEveryone()
        )
        self.rbac = RbacAuthorizer(store)
        self.authorizer = authorizer or auth.UnionAuthorizer(auth.PrivilegedGroups(), self.rbac)
        self.clock = clock
        crd_hooks = crds.CrdHooks(self.registry, store, lambda: lifecycle.timestamp(self.clock()))
        self.service_hooks = serviceips.ServiceAllocationHooks(
            serviceips.ServiceIPAllocator(service_cidr), serviceips.NodePortAllocator(node_ports)
        )
        escalation = EscalationCheck(self.rbac, self.authorizer, store)
        pod_accounts = serviceaccount_admission.ServiceAccountAdmission(store)
        restriction = noderestriction.NodeRestriction()
        hooks = ChainedHooks(restriction, crd_hooks, self.service_hooks, escalation, pod_accounts)
        self.handlers = ResourceHandlers(store, clock=clock, hooks=hooks)
        self.metrics = metrics.RequestMetrics(lambda: store.watcher_count)
        pods, nodes = (
            self.registry.lookup("", "v1", "pods"),
            self.registry.lookup("", "v1", "nodes"),
        )
        assert pods is not None and nodes is not None
        self.node_proxy = nodeproxy.NodeProxy(store, pods, nodes, node_proxy_token)
        self._started = False
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        """Serve the CRDs already stored. Runs once, before the first request."""
        async with self._start_lock:
            if not self._started:
                await crds.load(self.store, self.registry)
                await serviceips.load(self.store, self._services(), self.service_hooks)
                await bootstrap.ensure_system_namespaces(self.handlers, self.registry)
                await bootstrap.ensure_kubernetes_service(
                    self.handlers,
                    self.registry,
                    self.service_hooks.ips.first_address(),
                    self.advertise,
                )
                await bootstrap.ensure_rbac_defaults(self.handlers, self.policy)
                await self.rbac.start()
                for component in (self.authenticator, self.authorizer):
                    start = getattr(component, "start", None)
                    if start is not None:  # one that follows the store
                        await start()
                self._settle_memory()
                if self.compaction_interval:
                    task = asyncio.get_running_loop().create_task(self._compact_periodically())
                    self._background.add(task)
                self._started = True

    def _services(self) -> ResourceType:
        rt = self.registry.lookup("", "v1", "services")
        assert rt is not None, "the Service kind must be registered"
        return rt

    @staticmethod
    def _settle_memory() -> None:
        """Keep the start-up heap out of garbage collection: a full collection over the
        OpenAPI models and module objects would otherwise pause every request for tens of
        milliseconds. Objects made per request are short-lived and still collected."""
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 50, 100)

    async def _compact_periodically(self) -> None:
        """Keep one interval of history, as kube-apiserver compacts etcd every five minutes."""
        assert self.compaction_interval
        keep_from = self.store.revision
        while True:
            await asyncio.sleep(self.compaction_interval)
            try:
                await self.store.compact(keep_from)
            except Exception:
                log.exception("compaction failed")
            keep_from = self.store.revision

    def stop(self) -> None:
        for task in self._background:
            task.cancel()
        self.rbac.stop()
        for component in (self.authenticator, self.authorizer):
            stop = getattr(component, "stop", None)
            if stop is not None:
                stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        if not self._started:
            await self.start()
        started = time.perf_counter()
        try:
            req = await self._read_request(scope, receive)
            response = await self._dispatch(req)
        except _ClientGone:  # a body cut short is never acted on: nobody is left to answer
            return
        except errors.ApiError as exc:
            response = _status_response(exc)
        except Exception:
            log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
            response = _status_response(errors.internal())
        await _send(response, send, receive)
        watch = b"watch=true" in scope.get("query_string", b"") or b"watch=1" in scope.get(
            "query_string", b""
        )
        self.metrics.observe(
            scope["method"], scope["path"], watch, response.status, time.perf_counter() - started
        )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """WebSocket upgrades: only `pods/exec` (the channel protocol kubectl speaks)."""
        try:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            query = parse_qs(
                scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
            )
            user = self.authenticator.authenticate(headers.get("authorization"))
            if user is None:
                raise errors.unauthorized()
            impersonating = _impersonation_headers(scope)
            if impersonating:
                want = impersonation.wanted(impersonating)
                user = impersonation.impersonate(user, want, self.authorizer)
            parsed = routing.parse(scope["path"])
            if (
                not isinstance(parsed, routing.ResourcePath)
                or (parsed.group, parsed.resource, parsed.subresource) != ("", "pods", "exec")
                or parsed.name is None
            ):
                raise errors.bad_request("only pods/exec accepts a WebSocket upgrade")
            request = Request("GET", scope["path"], query, headers, b"")
            request.user = user
            self._authorize(request, resource_attributes(request, parsed, "create", "", "pods"))
        except errors.ApiError as error:
            await nodeproxy.reject(send, error)
            return
        try:
            await self.node_proxy.exec(scope, receive, send, parsed, query)
        except Exception:
            log.exception("exec relay failed for %s", scope["path"])

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read_request(self, scope: Scope, receive: Receive) -> Request:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY:
            raise errors.too_large()
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise errors.too_large()
            chunks.append(chunk)
            more = message.get("more_body", False)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        impersonation = _impersonation_headers(scope)
        body = b"".join(chunks)
        return Request(
            scope["method"], scope["path"], query, headers, body, impersonation=impersonation
        )

    async def _dispatch(self, req: Request) -> AnyResponse:
        path = req.path.rstrip("/") or "/"
        user = self.authenticator.authenticate(req.headers.get("authorization"))
        if user is None:
            if path not in auth.PUBLIC_PATHS:
                raise errors.unauthorized()
            user = auth.ANONYMOUS
        if req.impersonation:
            want = impersonation.wanted(req.impersonation)
            user = impersonation.impersonate(user, want, self.authorizer)
        req.user = user
        simple = self._non_resource(req, path)
        if simple is not None:
            self._authorize(req, auth.Attributes(req.method.lower(), path))
            return await simple
        return await self._resource(req)

    def _authorize(self, req: Request, attributes: auth.Attributes) -> None:
        if req.path.rstrip("/") in auth.PUBLIC_PATHS:
            return
        reason = self.authorizer.authorize(req.user, attributes)
        if reason is not None:
            self._forbid(req, attributes, reason)

    @staticmethod
    def _forbid(req: Request, attributes: auth.Attributes, reason: str) -> NoReturn:
        message = auth.forbidden_message(req.user, attributes, reason)
        log.info("forbidden: %s", message)  # as kube-apiserver's RBAC DENY lines
        raise errors.forbidden_on(attributes.resource, attributes.group, attributes.name, message)

    def _non_resource(self, req: Request, path: str) -> Awaitable[Response] | None:
        routes: dict[str, Callable[[Request], Awaitable[Response]]] = {
            "/healthz": self._health,
            "/livez": self._health,
            "/readyz": self._health,
            "/version": self._version,
            "/api": self._api_root,
            "/apis": self._apis_root,
            "/openapi/v2": self._openapi_v2,
            "/openapi/v3": self._openapi_v3_index,
            "/unistack/compact": self._compact,
            "/metrics": self._metrics,
            "/.well-known/openid-configuration": self._openid_configuration,
            "/openid/v1/jwks": self._jwks,
        }
        route = routes.get(path)
        if route is None and path.startswith(("/healthz/", "/livez/", "/readyz/")):
            route = self._health
        if route is None and path.startswith("/openapi/v3/"):
            route = self._openapi_v3
        return route(req) if route is not None else None

    # -- non-resource endpoints ---------------------------------------------------------------

    async def _health(self, req: Request) -> Response:
        return Response(200, b"ok", content_type="text/plain; charset=utf-8")

    async def _version(self, req: Request) -> Response:
        return Response(200, orjson.dumps(VERSION))

    async def _api_root(self, req: Request) -> Response:
        negotiated = discovery.negotiate(req.headers.get("accept", ""))
        if negotiated is not None:
            version, content_type = negotiated
            body = discovery.aggregated(self.registry, True, version)
            return Response(200, orjson.dumps(body), content_type=content_type)
        address = req.headers.get("host", "127.0.0.1:6443")
        return Response(200, orjson.dumps(discovery.core_versions(address)))

    async def _apis_root(self, req: Request) -> Response:
        negotiated = discovery.negotiate(req.headers.get("accept", ""))
        if negotiated is not None:
            version, content_type = negotiated
            body = discovery.aggregated(self.registry, False, version)
            return Response(200, orjson.dumps(body), content_type=content_type)
        return Response(200, orjson.dumps(discovery.group_list(self.registry)))

    async def _openapi_v2(self, req: Request) -> Response:
        return Response(200, orjson.dumps(openapi.v2(self.registry)))

    async def _openapi_v3_index(self, req: Request) -> Response:
        return Response(200, orjson.dumps(openapi.v3_index(self.registry)))

    async def _openapi_v3(self, req: Request) -> Response:
        parts = req.path.rstrip("/").split("/")[3:]
        if parts[:1] == ["api"] and len(parts) == 2:
            doc = openapi.v3_group_version(self.registry, "", parts[1])
        elif parts[:1] == ["apis"] and len(parts) == 3:
            doc = openapi.v3_group_version(self.registry, parts[1], parts[2])
        else:
            doc = None
        if doc is None:
            raise errors.ApiError(
                404, "NotFound", "the server could not find the requested resource"
            )
        return Response(200, orjson.dumps(doc))

    def _review_token(self, token: str, audiences: list[str]) -> tuple[User | None, list[str]]:
        """A TokenReview's answer: who, and for which audiences. Only service-account tokens
        are for audiences other than the API server's."""
        if audiences and set(audiences) - set(self.tokens.audiences):
            user = self.service_accounts.user_of(token, audiences)
            return user, list(audiences) if user is not None else []
        user = self.authenticator.authenticate(f"Bearer {token}")
        return user, list(audiences or self.tokens.audiences)

    async def _openid_configuration(self, req: Request) -> Response:
        return Response(200, orjson.dumps(self.tokens.openid_configuration()))

    async def _jwks(self, req: Request) -> Response:
        body = orjson.dumps(self.tokens.jwks())
        return Response(200, body, content_type="application/jwk-set+json")

    async def _metrics(self, req: Request) -> Response:
        return Response(200, self.metrics.exposition(), content_type=metrics.CONTENT_TYPE)

    async def _compact(self, req: Request) -> Response:
        if req.method != "POST":
            raise errors.method_not_allowed()
        if auth.MASTERS not in req.user.groups:
            raise errors.forbidden(f'User "{req.user.name}" cannot compact the store')
        revision = req.int_param("revision")
        await self.store.compact(revision if revision is not None else self.store.revision)
        return Response(200, orjson.dumps({"compacted": self.store.compacted_revision}))

    # -- resources ----------------------------------------------------------------------------

    async def _resource(self, req: Request) -> AnyResponse:
        parsed = routing.parse(req.path)
        if parsed is None:
            raise _no_such_path()
        if isinstance(parsed, routing.GroupPath):
            return self._discovery_doc(req, discovery.group(self.registry, parsed.group))
        if isinstance(parsed, routing.GroupVersionPath):
            doc = discovery.resource_list(self.registry, parsed.group, parsed.version)
            return self._discovery_doc(req, doc)
        rt = self.registry.lookup(parsed.group, parsed.version, parsed.resource)
        if rt is None or (parsed.subresource and parsed.subresource not in rt.subresources):
            raise _no_such_path()
        if parsed.namespace is not None and not rt.namespaced:
            raise _no_such_path()
        verb = parsed.verb(req.method, req.flag("watch"))
        attributes = resource_attributes(req, parsed, verb, rt.group, rt.plural)
        self._authorize(req, attributes)
        node = noderestriction.node_of(req.user)
        if node is not None:  # a node reads only what its pods use
            reason = await noderestriction.read_refusal(node, attributes, self.store)
            if reason is not None:
                self._forbid(req, attributes, reason)
        return await self._verb(req, rt, parsed, verb)

    def _discovery_doc(self, req: Request, doc: dict[str, Any] | None) -> Response:
        if doc is None:
            raise _no_such_path()
        self._authorize(req, auth.Attributes("get", req.path))
        return Response(200, orjson.dumps(doc))

    async def _verb(
        self, req: Request, rt: Any, rp: routing.ResourcePath, verb: str
    ) -> AnyResponse:
        handlers = self.handlers
        table: dict[str, Callable[..., Awaitable[Response | PartsResponse]]] = {
            "get": handlers.get,
            "list": handlers.list,
            "create": handlers.create,
            "update": handlers.update,
            "patch": handlers.patch,
            "delete": handlers.delete,
            "deletecollection": handlers.delete_collection,
        }
        if verb not in rt.verbs and rp.subresource is None:
            raise errors.method_not_allowed()
        if rt.extra.get("review") == "access" and verb == "create":
            return reviews.self_subject_access_review(req, rt, self.authorizer)
        if rt.extra.get("review") == "rules" and verb == "create":
            return reviews.self_subject_rules_review(req, rt, self.rbac)
        if rt.extra.get("review") == "self" and verb == "create":
            return reviews.self_subject_review(req, rt)
        if rt.extra.get("review") == "token" and verb == "create":
            return reviews.token_review(req, rt, self._review_token)
        if verb == "watch":
            return WatchStream(req, rt, rp, self.store, self.clock, self.streams).response()
        if rp.subresource == "log" and verb == "get":
            return await self.node_proxy.log(req, rp)
        if rp.subresource == "exec":
            raise errors.bad_request("Upgrade request required")
        if rp.subresource == "proxy" and rp.resource == "nodes" and rp.group == "":
            return await self.node_proxy.proxy(req, rp)
        if rp.subresource == "binding" and verb == "create":
            return await binding.create_binding(handlers, req, rt, rp)
        if rp.subresource == "token" and verb == "create":
            return await tokenrequest.token_request(req, rt, rp, self.store, self.tokens)
        if verb not in table or (rp.subresource and verb not in ("get", "update", "patch")):
            raise errors.method_not_allowed()
        return await table[verb](req, rt, rp)


def _impersonation_headers(scope: Scope) -> tuple[tuple[str, str], ...]:
    """The request's Impersonate-* headers, in order (a group may come more than once)."""
    found = []
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        if name.startswith(impersonation.PREFIX):
            found.append((name, value.decode("latin-1")))
    return tuple(found)


class _ClientGone(Exception):
    """The client disconnected before it had sent the whole request body."""


def resource_attributes(
    req: Request, parsed: routing.ResourcePath, verb: str, group: str, plural: str
) -> auth.Attributes:
    """What a resource request asks, as kube-apiserver's RequestInfo says it: a Namespace
    named in the path is in itself (so a RoleBinding there covers reading it), and a list or
    watch narrowed to one name by `fieldSelector=metadata.name=` names it (so a rule with
    `resourceNames` covers a one-object informer)."""
    namespace, name = parsed.namespace or "", parsed.name or ""
    if not group and plural == "namespaces" and name and not namespace:
        namespace = name
    if not name and verb in ("list", "watch") and req.param("fieldSelector"):
        try:
            selector = fieldselectors.parse_field_selector(req.param("fieldSelector") or "")
        except errors.ApiError:
            pass  # answered as a 400 by the handler, once authorized
        else:
            name = selector.requires_exact_match("metadata.name") or ""
    return auth.Attributes(verb, req.path, group, plural, parsed.subresource or "", namespace, name)


def _no_such_path() -> errors.ApiError:
    return errors.ApiError(404, "NotFound", "the server could not find the requested resource")


def _status_response(exc: errors.ApiError) -> Response:
    return Response(exc.code, errors.encode_status(exc), headers=dict(exc.headers))


async def _send(response: AnyResponse, send: Send, receive: Receive) -> None:
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"cache-control", b"no-cache, private"),
        *((k.encode(), v.encode()) for k, v in response.headers.items()),
    ]
    if isinstance(response, StreamingResponse):
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await _stream(response, send, receive)
        return
    parts = response.parts if isinstance(response, PartsResponse) else [response.body]
    headers.append((b"content-length", str(sum(map(len, parts))).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await _send_parts(parts, send)


_SLICE = 256 * 1024


async def _send_parts(parts: list[bytes], send: Send) -> None:
    """Send a body in slices of about 256 KiB, yielding between them, so the requests queued
    behind a large LIST (a GET of one object) are not held up by its copies and TLS writes."""
    if len(parts) == 1 and len(parts[0]) <= _SLICE:
        await send({"type": "http.response.body", "body": parts[0]})
        return
    for index, piece in enumerate(_slices(parts)):
        if index:
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _slices(parts: list[bytes]) -> Iterator[bytes]:
    group: list[bytes] = []
    size = 0
    for part in parts:
        if len(part) > _SLICE:
            if group:
                yield b"".join(group)
                group, size = [], 0
            view = memoryview(part)
            yield from (bytes(view[i : i + _SLICE]) for i in range(0, len(part), _SLICE))
            continue
        group.append(part)
        size += len(part)
        if size >= _SLICE:
            yield b"".join(group)
            group, size = [], 0
    if group:
        yield b"".join(group)


async def _stream(response: StreamingResponse, send: Send, receive: Receive) -> None:
    """Send chunks until the stream ends or the client goes away, whichever is first."""

    async def pump() -> None:
        async for chunk in response.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    pumping = asyncio.ensure_future(pump())
    watching = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, watching):
            task.cancel()
        await asyncio.gather(pumping, watching, return_exceptions=True)
        await response.chunks.aclose()  # type: ignore[attr-defined]
    if pumping.done() and not pumping.cancelled() and pumping.exception() is not None:
        log.error("watch stream failed", exc_info=pumping.exception())
