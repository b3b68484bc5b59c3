"""NodeRestriction: a node's agent may change only what is its own, as kube's admission plugin.

A user named `system:node:<name>` in group `system:nodes` (each host's agent, `cli.up`) is
granted by RBAC what every node needs (`controlplane.accounts.node_policy`); this narrows
each write to that node's own objects, with upstream's words:

- Nodes: only its own (create, update, status, delete);
- Leases in `kube-node-lease`: only the one named after it;
- pods: updates (status included) and deletions only of pods bound to it
  (`spec.nodeName`); creating a pod only as a mirror pod bound to it (the agent makes none);
- ServiceAccount tokens: only bound to a pod bound to it (`token_refusal`).

Reads are narrowed as upstream's Node authorizer narrows them (`read_refusal`, asked after
RBAC allowed the request): a node gets a Secret, ConfigMap or PersistentVolumeClaim only
when a pod bound to it names it (`unistack.podrefs`), and a PersistentVolume only when its
claim is such a claim; any other get of them is `no relationship found between node
'<name>' and this object`. Upstream keeps a graph of
these edges in memory; here the namespace's pods are read from the store at each such
request (the agent makes one per object when it starts a container). Other kinds are left
to RBAC (the IaaS kinds the agent plumbs are not narrowed).
"""

from __future__ import annotations

from typing import Any

import orjson

from unistack import podrefs
from unistack import store as storage
from unistack.apiserver import errors
from unistack.apiserver.auth import Attributes
from unistack.apiserver.handlers import WriteHooks
from unistack.apiserver.kinds.core_pod import POD
from unistack.apiserver.kinds.core_storage import PERSISTENT_VOLUME
from unistack.apiserver.request import Request, User
from unistack.apiserver.resources import ResourceType
from unistack.apiserver.serviceaccounts import Bound

Obj = dict[str, Any]
NODE_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
LEASE_NAMESPACE = "kube-node-lease"
MIRROR = "kubernetes.io/config.mirror"


def node_of(user: User) -> str | None:
    """The node a user is, when it is one."""
    if user.name.startswith(NODE_PREFIX) and NODE_GROUP in user.groups:
        return user.name[len(NODE_PREFIX) :] or None
    return None


def refusal(node: str, rt: ResourceType, old: Obj | None, new: Obj | None) -> str | None:
    """Why `node` may not write `new` over `old` (a deletion: `new` None); None if it may."""
    obj = new if new is not None else old
    assert obj is not None
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if rt.group == "" and rt.plural == "nodes" and name != node:
        return f'node "{node}" is not allowed to modify node "{name}"'
    lease = rt.group == "coordination.k8s.io" and rt.plural == "leases"
    if lease and meta.get("namespace") == LEASE_NAMESPACE and name != node:
        return "can only access node lease with the same name as the requesting node"
    if rt.group == "" and rt.plural == "pods":
        return _pod_refusal(node, old, new)
    return None


def _pod_refusal(node: str, old: Obj | None, new: Obj | None) -> str | None:
    bound = ((old or new or {}).get("spec") or {}).get("nodeName")
    if old is None and new is not None:  # a create
        if MIRROR not in ((new.get("metadata") or {}).get("annotations") or {}):
            return (
                f'pod does not have "{MIRROR}" annotation, node "{node}" can only create '
                "mirror pods"
            )
        if bound != node:
            return f'node "{node}" can only create pods with spec.nodeName set to itself'
        return None
    if bound != node:
        verb = "delete" if new is None else "update"
        return f'node "{node}" can only {verb} pods with spec.nodeName set to itself'
    return None


class NodeRestriction(WriteHooks):
    async def admit(self, req: Request, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        self._check(req, rt, old, new)

    async def admit_delete(self, req: Request, rt: ResourceType, old: Obj) -> None:
        self._check(req, rt, old, None)

    @staticmethod
    def _check(req: Request, rt: ResourceType, old: Obj | None, new: Obj | None) -> None:
        node = node_of(req.user)
        if node is None:
            return
        why = refusal(node, rt, old, new)
        if why is not None:
            name = str(((new or old or {}).get("metadata") or {}).get("name") or "")
            raise errors.forbidden_on(rt.plural, rt.group, name, why)


def token_refusal(node: str, bound: Bound | None, pod_node: str) -> str | None:
    """Why `node` may not have a ServiceAccount token bound to `bound`, a pod on `pod_node`
    when it is one: as upstream's NodeRestriction, a node's tokens are bound to a pod of its
    own (the token carries the pod's uid, and `tokenrequest` checks the pod runs as the
    account), so none outlives that pod."""
    if bound is None or bound.kind != "Pod":
        return "node requested token not bound to a pod"
    if pod_node != node:
        return "node requested token bound to a pod scheduled on a different node"
    return None


# what a node gets only when a pod bound to it names it (`podrefs.PodReferences.named`)
NAMED_BY_PODS = ("secrets", "configmaps", "persistentvolumeclaims")


async def read_refusal(node: str, attributes: Attributes, store: storage.ObjectStore) -> str | None:
    """Why `node` may not get the object (upstream's Node authorizer): None when a pod bound
    to it names it, or when the request is not such a get (RBAC alone decides the rest)."""
    if attributes.group != "" or attributes.verb != "get" or attributes.subresource:
        return None
    namespace, name = attributes.namespace, attributes.name
    if attributes.resource in NAMED_BY_PODS:
        resource = attributes.resource
    elif attributes.resource == "persistentvolumes":  # through the claim it is bound to
        resource, (namespace, name) = "persistentvolumeclaims", await _claim_of(store, name)
    else:
        return None
    if name and await _used(store, node, namespace, resource, name):
        return None
    return f"no relationship found between node '{node}' and this object"


async def _claim_of(store: storage.ObjectStore, volume: str) -> tuple[str, str]:
    """The namespace and name of the claim a PersistentVolume is bound to (empty: none)."""
    try:
        stored = await store.get(PERSISTENT_VOLUME.key(None, volume))
    except storage.NotFound:
        return "", ""
    ref = (orjson.loads(stored.value).get("spec") or {}).get("claimRef") or {}
    return str(ref.get("namespace") or ""), str(ref.get("name") or "")


async def _used(
    store: storage.ObjectStore, node: str, namespace: str, resource: str, name: str
) -> bool:
    """Whether a pod in `namespace` bound to `node` names the `resource` object `name`.
    Only pods whose stored bytes hold the node's name, and the object's where a pod spells
    it out (`podrefs.SPELLED_OUT`), are decoded: such names (DNS subdomains) appear in JSON
    as they are, so a namespace of thousands of pods costs a byte search each, not a decode."""
    if not namespace:
        return False
    listed = await store.list(POD.prefix(namespace))
    needles = [node.encode()]
    if resource in podrefs.SPELLED_OUT:
        needles.append(name.encode())
    for item in listed.items:
        if not all(needle in item.value for needle in needles):
            continue
        pod = orjson.loads(item.value)
        bound = (pod.get("spec") or {}).get("nodeName") == node
        if bound and name in podrefs.references(pod).named(resource):
            return True
    return False
