"""The `pods/binding` subresource: a scheduler assigns a Pod to a Node.

`POST /api/v1/namespaces/{ns}/pods/{name}/binding` with a v1 Binding
(`{"metadata": {"name": pod}, "target": {"kind": "Node", "name": node}}`) sets the Pod's
`spec.nodeName` and its `PodScheduled=True` condition, and answers 201 with a Success
Status, as kube-apiserver's BindingREST does. A pod already on a node is a 409 (`pod X is
already assigned to node "Y"`), as is one being deleted or one whose uid differs from the
Binding's; a missing pod is 404; a malformed Binding is 400 or 422. As in kube, it is one
compare-and-swap of the stored pod (`ResourceHandlers.guaranteed_update`, retried when a
concurrent write wins): one write and one watch event per pod scheduled, with no admission
or managed fields, since only these two server-set fields change.
`unistack.apiserver.app` routes the POST here.
"""

from __future__ import annotations

from typing import Any

import orjson

from unistack.apiserver import codec, errors, lifecycle
from unistack.apiserver.handlers import ResourceHandlers
from unistack.apiserver.request import Request
from unistack.apiserver.resources import ResourceType
from unistack.apiserver.responses import Response
from unistack.apiserver.routing import ResourcePath

Obj = dict[str, Any]


def read_binding(req: Request, rp: ResourcePath) -> tuple[str, str | None]:
    """The node a Binding request names and the pod uid it expects, if any; 400 or 422 when
    the Binding is not acceptable."""
    assert rp.name is not None
    body = codec.decode_object(req.body, req.content_type)
    if body.get("kind") not in (None, "Binding"):
        raise errors.bad_request(f"a Binding is expected, not {body.get('kind')!r}")
    meta = body.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if name not in (None, "", rp.name):
        raise errors.bad_request("name in URL does not match name in Binding object")
    target = body.get("target")
    if not isinstance(target, dict):
        problem = errors.required_field("target", "")
        raise errors.invalid("Binding", "", rp.name, [problem])
    uid = meta.get("uid") if isinstance(meta, dict) else None
    return _target_node(target, rp.name), str(uid) if uid else None


def _target_node(target: Obj, pod: str) -> str:
    problems = []
    if target.get("kind") not in (None, "", "Node"):
        problems.append(
            errors.invalid_field("target.kind", target.get("kind"), "must be empty or 'Node'")
        )
    node = target.get("name")
    if not isinstance(node, str) or not node:
        problems.append(errors.required_field("target.name", ""))
    if problems:
        raise errors.invalid("Binding", "", pod, problems)
    assert isinstance(node, str)
    return node


def bind_pod(pod: Obj, node: str, uid: str | None) -> Obj:
    """A copy of `pod` with `spec.nodeName` set; 409 when it cannot be bound."""
    meta = pod["metadata"]
    name = meta["name"]
    if uid and uid != meta.get("uid"):
        why = f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
        why += str(meta.get("uid"))
        raise errors.conflict("pods/binding", "", name, why)
    if meta.get("deletionTimestamp"):
        why = f"pod {name} is being deleted, cannot be assigned to a host"
        raise errors.conflict("pods/binding", "", name, why)
    bound = (pod.get("spec") or {}).get("nodeName")
    if bound:
        why = f'pod {name} is already assigned to node "{bound}"'
        raise errors.conflict("pods/binding", "", name, why)
    return {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node}}


def mark_scheduled(pod: Obj, now: str) -> Obj:
    """A copy of `pod` whose `PodScheduled` condition is True."""
    status = pod.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}
    return {**pod, "status": {**status, "conditions": [*conditions, scheduled]}}


def _success() -> Response:
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    return Response(201, orjson.dumps({**status, "code": 201}))


async def create_binding(
    handlers: ResourceHandlers, req: Request, rt: ResourceType, rp: ResourcePath
) -> Response:
    """Serve `POST .../pods/{name}/binding`."""
    node, uid = read_binding(req, rp)
    now = lifecycle.timestamp(handlers.clock())

    def assign(pod: Obj) -> Obj:
        return mark_scheduled(bind_pod(pod, node, uid), now)

    await handlers.guaranteed_update(req, rt, rp, assign)
    return _success()
