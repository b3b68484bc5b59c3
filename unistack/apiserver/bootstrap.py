"""Objects every cluster starts with, as kube-apiserver creates them: the system namespaces
(each with its `default` ServiceAccount, which the ServiceAccount controller would make a
moment later: so a server running without the controllers has them too), the `kubernetes`
Service in `default` on the service CIDR's first address, with Endpoints pointing at the API
server itself, and the default RBAC policy (`rbac.policy`).

They are written through the ordinary create path as the API server itself (a member of
system:masters), so they are defaulted, validated and (the Service) given its cluster IP like
any client's object. One that already exists is left alone, also when changed since, but for
the `kubernetes` Endpoints (pointed at this server again) and the default RBAC policy, whose
missing rules and subjects are put back (`rbac.reconcile`) unless its autoupdate annotation
is "false".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from unistack import store as storage
from unistack.apiserver import errors
from unistack.apiserver.handlers import ResourceHandlers
from unistack.apiserver.kinds import rbac as rbac_kinds
from unistack.apiserver.rbac import policy, reconcile
from unistack.apiserver.request import Request, User
from unistack.apiserver.resources import Registry, ResourceType
from unistack.apiserver.routing import ResourcePath

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
API_SERVER_ADDRESS = "127.0.0.1"
API_SERVER_PORT = 6443
log = logging.getLogger(__name__)
API_SERVER_USER = User("system:apiserver", groups=("system:masters", "system:authenticated"))


async def ensure_system_namespaces(handlers: ResourceHandlers, registry: Registry) -> None:
    for name in SYSTEM_NAMESPACES:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        await _ensure(handlers, _kind(registry, "namespaces"), body)
        await _ensure(handlers, _kind(registry, "serviceaccounts"), default_service_account(name))


def default_service_account(namespace: str) -> dict[str, Any]:
    meta = {"name": "default", "namespace": namespace}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}


async def ensure_kubernetes_service(
    handlers: ResourceHandlers,
    registry: Registry,
    cluster_ip: str,
    advertise: tuple[str, int] = (API_SERVER_ADDRESS, API_SERVER_PORT),
) -> None:
    """The `kubernetes` Service, and its Endpoints and EndpointSlice naming `advertise` (the
    address and port pods reach this API server at), corrected when they name another, as
    kube-apiserver's endpoint reconciler does: the service proxy routes by the slice."""
    await _ensure(handlers, _kind(registry, "services"), kubernetes_service(cluster_ip))
    await _reconcile(handlers, _kind(registry, "endpoints"), kubernetes_endpoints(*advertise))
    slices = registry.lookup("discovery.k8s.io", "v1", "endpointslices")
    assert slices is not None, "the EndpointSlice kind must be registered"
    await _reconcile(handlers, slices, kubernetes_endpoint_slice(*advertise))


async def ensure_rbac_defaults(
    handlers: ResourceHandlers, extra: tuple[dict[str, Any], ...] = ()
) -> None:
    """Create the default policy and the `extra` ClusterRoles and ClusterRoleBindings the
    embedding gives (the node agents' role), or put back what a stored one lacks
    (`rbac.reconcile`; another API server starting at the same time may write it first:
    read again)."""
    roles = [*policy.cluster_roles(), *(o for o in extra if o["kind"] == "ClusterRole")]
    bindings = [
        *policy.cluster_role_bindings(),
        *(o for o in extra if o["kind"] == "ClusterRoleBinding"),
    ]
    for role in roles:
        await _reconcile_default(handlers, rbac_kinds.CLUSTER_ROLE, role, reconcile.reconciled_role)
    for binding in bindings:
        await _reconcile_default(
            handlers, rbac_kinds.CLUSTER_ROLE_BINDING, binding, reconcile.reconciled_binding
        )


async def _reconcile_default(
    handlers: ResourceHandlers,
    rt: ResourceType,
    default: dict[str, Any],
    reconciled: Callable[[dict[str, Any], dict[str, Any]], reconcile.Reconciled],
) -> None:
    name = default["metadata"]["name"]
    for _ in range(_ATTEMPTS):
        try:
            stored = orjson.loads((await handlers.store.get(rt.key(None, name))).value)
        except storage.NotFound:
            await _ensure(handlers, rt, default)
            return
        outcome = reconciled(stored, default)
        if outcome.obj is None:
            return
        try:
            if outcome.recreate:  # a roleRef cannot change: the binding is made again
                await _call(handlers, "DELETE", rt, outcome.obj, b"")
                meta = {
                    k: outcome.obj["metadata"].get(k) for k in ("name", "labels", "annotations")
                }
                await _ensure(handlers, rt, {**outcome.obj, "metadata": meta})
            else:
                await _call(handlers, "PUT", rt, outcome.obj, orjson.dumps(outcome.obj))
        except errors.ApiError as exc:
            if exc.reason in ("Conflict", "NotFound"):
                continue
            raise
        log.info("reconciled %s %s: added %s", rt.kind, name, "; ".join(outcome.added))
        return


def kubernetes_service(cluster_ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "ports": [
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": API_SERVER_PORT}
            ],
            "sessionAffinity": "None",
        },
    }


def kubernetes_endpoints(
    address: str = API_SERVER_ADDRESS, port: int = API_SERVER_PORT
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [
            {
                "addresses": [{"ip": address}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        ],
    }


def kubernetes_endpoint_slice(address: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }


def _kind(registry: Registry, plural: str) -> ResourceType:
    rt = registry.lookup("", "v1", plural)
    assert rt is not None, f"the {plural} kind must be registered"
    return rt


async def _reconcile(handlers: ResourceHandlers, rt: ResourceType, obj: dict[str, Any]) -> None:
    """Create `obj`, or make the stored one's content (all but metadata) `obj`'s."""
    namespace, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
    try:
        stored = orjson.loads((await handlers.store.get(rt.key(namespace, name))).value)
    except storage.NotFound:
        await _ensure(handlers, rt, obj)
        return
    content = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    if all(stored.get(k) == v for k, v in content.items()):
        return
    meta = {**obj["metadata"], "resourceVersion": stored["metadata"]["resourceVersion"]}
    await _call(handlers, "PUT", rt, obj, orjson.dumps({**obj, "metadata": meta}))


async def _call(
    handlers: ResourceHandlers, method: str, rt: ResourceType, obj: dict[str, Any], body: bytes
) -> None:
    """PUT or DELETE `obj` as the API server itself."""
    namespace, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
    url = f"{_collection_url(rt, namespace)}/{name}"
    request = Request(method, url, {}, _HEADERS, body, API_SERVER_USER)
    path = ResourcePath(rt.group, rt.version, rt.plural, namespace, name)
    if method == "DELETE":
        await handlers.delete(request, rt, path)
    else:
        await handlers.update(request, rt, path)


async def _ensure(handlers: ResourceHandlers, rt: ResourceType, obj: dict[str, Any]) -> None:
    """Create `obj` unless an object of that name exists (checked first: a stored Service
    already holds the address the new one would ask for)."""
    namespace, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
    try:
        await handlers.store.get(rt.key(namespace, name))
        return
    except storage.NotFound:
        pass
    path = ResourcePath(rt.group, rt.version, rt.plural, namespace)
    url = _collection_url(rt, namespace)
    request = Request("POST", url, {}, _HEADERS, orjson.dumps(obj), API_SERVER_USER)
    try:
        await handlers.create(request, rt, path)
    except errors.ApiError as exc:
        if exc.reason != "AlreadyExists":
            raise


_HEADERS = {"user-agent": "unistack-apiserver"}
_ATTEMPTS = 5


def _collection_url(rt: ResourceType, namespace: str | None) -> str:
    root = f"/apis/{rt.api_version}" if rt.group else f"/api/{rt.version}"
    return f"{root}/namespaces/{namespace}/{rt.plural}" if namespace else f"{root}/{rt.plural}"
