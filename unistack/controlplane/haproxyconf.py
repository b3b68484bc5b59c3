"""The gateway's haproxy.cfg, rendered from the gateway Services and their Endpoints (pure).

`routes_from(services, endpoints)` turns the Services labelled `unistack.io/gateway: "true"`
and annotated `unistack.io/gateway-path: /compute[,/other]` into `Route`s: one per path
prefix, to the ready addresses of the Service's Endpoints (same name and namespace), each on
the Endpoints port that serves the Service's first port. `render(config, routes)` writes the
whole file for HAProxy 2.6 in master-worker mode; `unistack.controlplane.haproxy` validates
and applies it and `unistack.controlplane.gateway` watches the objects and calls both.

What the file asks of HAProxy, and why:
- One frontend; each prefix matches the path itself or anything under it (`/compute`,
  `/compute/...`, not `/computers`), longest prefix first; the path goes to the pod unchanged.
- Each client address sticks to one replica (`balance source`, consistent hashing so that a
  replica coming or going moves only its share of clients): a client then reads what it just
  wrote, as it would from Keystone or Neutron over one database, without every read paying
  for a round trip to the store. Between replicas, a request that failed on a stale cache
  is served again (`openstack.readyourwrites`); a stale success cannot be caught that way,
  and Tempest's update-then-show tests through round-robin replicas showed it.
- Every server is health-checked with `GET /healthz` (200 = ready) every `check_interval_ms`;
  `fall` failures mark it down, and so do three connections in a row that could not be
  made (`observe layer4`), so a killed pod leaves the rotation within about a second; one
  failed connection alone does not (on a loaded host a connect can time out once, and
  marking the only replica down for it would answer 503 where a retry succeeds).
- Retries: a connection that could not be made is retried for every method (the request was
  never sent). Layer-7 retries (the pod closed without answering, or answered 502/503/504)
  resend a request HAProxy already sent; `retry-on` does not look at the method, so they are
  switched off (`http-request disable-l7-retry`) for everything but `retry_methods`
  (GET, HEAD, OPTIONS by default). `option redispatch 1` sends each retry to another server.
  L7 retries need the whole request in one buffer (`tune.bufsize`, 16 kB by default): bodies
  larger than that are never retried, which bodiless GETs never hit.
- Reloads: `option idle-close-on-response` lets an old worker answer the next request of an
  idle keep-alive connection (with `Connection: close`) instead of closing it under the
  client; `hard-stop-after` bounds how long old workers live.
- A prefix whose Service has no ready endpoint answers 503 with the service's OpenStack error
  body (Keystone's, Nova's, Neutron's or Glance's shape); HAProxy's own 502/503/504 for a
  backend whose servers are all down use the same body. Unknown paths answer 404.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

GATEWAY_LABEL = "unistack.io/gateway"
PATH_ANNOTATION = "unistack.io/gateway-path"
NO_ROUTE_BACKEND = "unistack_no_route"  # an underscore: no Service's backend has this name
_PREFIX = re.compile(r"^/[A-Za-z0-9._~/-]*$")
_NAME = re.compile(r"[^A-Za-z0-9_.:-]")
_TITLES = {404: "Not Found", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_NOVA_FAULTS = {404: "itemNotFound", 503: "serviceUnavailable"}
_MESSAGES = {
    502: "The service behind this path failed to answer; try again later.",
    503: "The service behind this path has no ready replica; try again later.",
    504: "The service behind this path did not answer in time; try again later.",
}


@dataclass(frozen=True, slots=True, order=True)
class Server:
    """One pod address of a backend. A `backup` one (an address the Endpoints call not
    ready) gets requests only while no other server of the backend passes its check."""

    address: str
    port: int
    backup: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """Requests whose path is `prefix` or under it go to the backend's servers."""

    prefix: str
    backend_name: str
    servers: tuple[Server, ...]


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Where the gateway listens and how it checks, retries and reloads (times in ms)."""

    bind_host: str = "0.0.0.0"
    bind_port: int = 8080
    stats_socket: str = ""  # a unix socket path for the admin CLI; none when empty
    check_path: str = "/healthz"
    check_interval_ms: int = 500
    fall: int = 2
    rise: int = 2
    retries: int = 3
    retry_methods: tuple[str, ...] = ("GET", "HEAD", "OPTIONS")
    connect_timeout_ms: int = 3000
    client_timeout_ms: int = 120_000
    server_timeout_ms: int = 120_000
    keep_alive_timeout_ms: int = 10_000
    hard_stop_after_ms: int = 30_000
    maxconn: int = 4096
    balance: str = "source"  # "roundrobin" spreads one client's requests over the replicas


# --- routes from Services and Endpoints (pure) ------------------------------------------------


def normalize_prefix(prefix: str) -> str | None:
    """`/compute/` → `/compute`; None for what is not a plain absolute path."""
    prefix = prefix.strip()
    if not _PREFIX.match(prefix) or "//" in prefix:
        return None
    return prefix.rstrip("/") or "/"


def gateway_prefixes(service: Obj) -> list[str]:
    """The valid prefixes the Service's annotation lists, in order, without repeats."""
    meta = service.get("metadata") or {}
    if (meta.get("labels") or {}).get(GATEWAY_LABEL) != "true":
        return []
    raw = str((meta.get("annotations") or {}).get(PATH_ANNOTATION) or "")
    prefixes = (normalize_prefix(part) for part in raw.split(","))
    return list(dict.fromkeys(p for p in prefixes if p))


def backend_name(service: Obj) -> str:
    """An HAProxy-safe backend name for the Service."""
    return "unistack-" + _NAME.sub("_", str(service["metadata"]["name"]))


def _endpoints_port(service_port: Obj, ports: list[Obj]) -> int | None:
    """The Endpoints port serving the Service port: same name (the pods resolved a named
    targetPort), else the numeric targetPort (or the port itself when it has none)."""
    name = service_port.get("name") or ""
    for port in ports:
        if (port.get("name") or "") == name and (port.get("protocol") or "TCP") == "TCP":
            return int(port["port"])
    target = service_port.get("targetPort") or service_port.get("port")
    if isinstance(target, int) and any(int(p["port"]) == target for p in ports):
        return target
    return None


def ready_servers(service: Obj, endpoints: Obj | None) -> tuple[Server, ...]:
    """The Endpoints' addresses on the Service's first port, sorted: the ready ones, then
    the not-ready ones as backups. A backup gets requests only while no ready server passes
    HAProxy's own check (the same `/healthz` the readiness probe asks), so a route whose
    Endpoints lag behind its pods degrades to them rather than to a 503."""
    service_ports = (service.get("spec") or {}).get("ports") or []
    if not service_ports or endpoints is None:
        return ()
    ready: set[Server] = set()
    waiting: set[Server] = set()
    for subset in endpoints.get("subsets") or []:
        port = _endpoints_port(service_ports[0], subset.get("ports") or [])
        if port is None:
            continue
        ready.update(Server(str(a["ip"]), port) for a in subset.get("addresses") or [])
        waiting.update(
            Server(str(a["ip"]), port, backup=True) for a in subset.get("notReadyAddresses") or []
        )
    backups = {s for s in waiting if Server(s.address, s.port) not in ready}
    return (*sorted(ready), *sorted(backups))


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def routes_from(services: list[Obj], endpoints: list[Obj]) -> list[Route]:
    """The gateway's routes, sorted by prefix; a prefix claimed by two Services goes to the
    first by namespace and name."""
    by_key = {_key(e): e for e in endpoints}
    routes: dict[str, Route] = {}
    for service in sorted(services, key=_key):
        servers = ready_servers(service, by_key.get(_key(service)))
        for prefix in gateway_prefixes(service):
            routes.setdefault(prefix, Route(prefix, backend_name(service), servers))
    return [routes[prefix] for prefix in sorted(routes)]


# --- OpenStack error bodies -------------------------------------------------------------------


def error_body(prefix: str, status: int, message: str) -> Obj:
    """The error body of the OpenStack service DevStack serves at `prefix`."""
    service = prefix.strip("/").split("/")[0]
    title = _TITLES.get(status, "Error")
    if service in ("compute", "volume"):
        return {_NOVA_FAULTS.get(status, "computeFault"): {"code": status, "message": message}}
    if service == "network":
        return {"NeutronError": {"type": "HTTPError", "message": message, "detail": ""}}
    if service == "image":
        return {"code": f"{status} {title}", "title": title, "message": message}
    return {"error": {"code": status, "title": title, "message": message}}


def _quoted_json(body: Obj) -> str:
    """JSON inside HAProxy's single quotes (no escapes there: a quote becomes \\u0027)."""
    return "'" + json.dumps(body, separators=(",", ":")).replace("'", "\\u0027") + "'"


def _json_reply(keyword: str, prefix: str, status: int, message: str) -> str:
    body = _quoted_json(error_body(prefix, status, message))
    return f"{keyword} status {status} content-type application/json string {body}"


# --- the file (pure) --------------------------------------------------------------------------


def _global(config: GatewayConfig) -> list[str]:
    lines = ["global", f"    maxconn {config.maxconn}"]
    lines.append(f"    hard-stop-after {config.hard_stop_after_ms}ms")
    if config.stats_socket:
        lines.append(f"    stats socket {config.stats_socket} mode 600 level admin")
    return lines


def _defaults(config: GatewayConfig) -> list[str]:
    return [
        "defaults",
        "    mode http",
        f"    timeout connect {config.connect_timeout_ms}ms",
        f"    timeout client {config.client_timeout_ms}ms",
        f"    timeout server {config.server_timeout_ms}ms",
        f"    timeout http-request {min(config.client_timeout_ms, 10_000)}ms",
        f"    timeout http-keep-alive {config.keep_alive_timeout_ms}ms",
        f"    timeout queue {config.connect_timeout_ms * 5}ms",
        f"    timeout check {config.connect_timeout_ms}ms",
        f"    retries {config.retries}",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response 502 503 504",
        "    option idle-close-on-response",
        "    option forwardfor",
    ]


def _frontend(config: GatewayConfig, routes: Sequence[Route]) -> list[str]:
    lines = ["frontend unistack-gateway", f"    bind {_bind(config)}"]
    if config.retry_methods:
        lines.append(f"    acl unistack_retryable method {' '.join(config.retry_methods)}")
        lines.append("    http-request disable-l7-retry unless unistack_retryable")
    else:
        lines.append("    http-request disable-l7-retry")
    ordered = sorted(routes, key=lambda r: (-len(r.prefix), r.prefix))
    for index, route in enumerate(ordered):
        acl = f"unistack_route{index}"
        if route.prefix == "/":
            lines.append(f"    acl {acl} path_beg /")
        else:
            lines.append(f"    acl {acl} path {route.prefix}")
            lines.append(f"    acl {acl} path_beg {route.prefix}/")
        lines.append(f"    use_backend {route.backend_name} if {acl}")
    lines.append(f"    default_backend {NO_ROUTE_BACKEND}")
    return lines


def _no_route_backend() -> list[str]:
    message = "The resource could not be found."
    reply = _json_reply("http-request return", "/", 404, message)
    return ["", f"backend {NO_ROUTE_BACKEND}", f"    {reply}"]


def _bind(config: GatewayConfig) -> str:
    host = f"[{config.bind_host}]" if ":" in config.bind_host else config.bind_host
    return f"{host}:{config.bind_port}"


def server_line(server: Server) -> str:
    """`server NAME ADDRESS:PORT`, the name stable across renders (HAProxy keeps state by it)."""
    name = _NAME.sub("_", f"{server.address}_{server.port}")
    address = f"ipv6@{server.address}" if ":" in server.address else server.address
    return f"    server {name} {address}:{server.port}" + (" backup" if server.backup else "")


def _backend(config: GatewayConfig, route: Route) -> list[str]:
    lines = ["", f"backend {route.backend_name}"]
    if not route.servers:
        reply = _json_reply("http-request return", route.prefix, 503, _MESSAGES[503])
        return [*lines, f"    {reply}"]
    lines += [
        f"    balance {config.balance}",
        *(["    hash-type consistent"] if config.balance == "source" else []),
        f"    option httpchk GET {config.check_path}",
        "    http-check expect status 200",
        f"    default-server check inter {config.check_interval_ms}ms"
        f" fastinter {max(config.check_interval_ms // 2, 100)}ms"
        f" downinter {config.check_interval_ms * 2}ms fall {config.fall} rise {config.rise}"
        " observe layer4 error-limit 3 on-error mark-down",
    ]
    for status, message in _MESSAGES.items():
        lines.append("    " + _json_reply("http-error", route.prefix, status, message))
    lines += [server_line(server) for server in route.servers]
    return lines


def _unique_backends(routes: Iterable[Route]) -> list[Route]:
    """One route per backend name (a Service with several prefixes has one backend)."""
    first: dict[str, Route] = {}
    for route in routes:
        first.setdefault(route.backend_name, route)
    return [first[name] for name in sorted(first)]


def render(config: GatewayConfig, routes: Sequence[Route]) -> str:
    """The complete haproxy.cfg for these routes."""
    lines = [*_global(config), "", *_defaults(config), ""]
    lines += _frontend(config, routes)
    for route in _unique_backends(routes):
        lines += _backend(config, route)
    lines += _no_route_backend()
    return "\n".join(lines) + "\n"
