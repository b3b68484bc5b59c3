"""Objects every cluster starts with: the system namespaces, as kube-apiserver creates them.

They are written through the ordinary create path, so they are defaulted and validated like
any client's object; one that already exists is left alone.
"""

from __future__ import annotations

import orjson

from unistack.apiserver import errors
from unistack.apiserver.handlers import ResourceHandlers
from unistack.apiserver.request import Request
from unistack.apiserver.resources import Registry
from unistack.apiserver.routing import ResourcePath

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


async def ensure_system_namespaces(handlers: ResourceHandlers, registry: Registry) -> None:
    rt = registry.lookup("", "v1", "namespaces")
    assert rt is not None, "the Namespace kind must be registered"
    path = ResourcePath("", "v1", "namespaces")
    for name in SYSTEM_NAMESPACES:
        body = orjson.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        req = Request("POST", "/api/v1/namespaces", {}, {"user-agent": "unistack-apiserver"}, body)
        try:
            await handlers.create(req, rt, path)
        except errors.ApiError as exc:
            if exc.reason != "AlreadyExists":
                raise
