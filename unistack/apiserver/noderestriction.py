"""NodeRestriction: a node's agent may change only what is its own, as kube's admission plugin.

A user named `system:node:<name>` in group `system:nodes` (each host's agent, `cli.up`) is
granted by RBAC what every node needs (`controlplane.accounts.node_policy`); this narrows
each write to that node's own objects, with upstream's words:

- Nodes: only its own (create, update, status, delete);
- Leases in `kube-node-lease`: only the one named after it;
- pods: updates (status included) and deletions only of pods bound to it
  (`spec.nodeName`); creating a pod only as a mirror pod bound to it (the agent makes none).

Other kinds are left to RBAC. Reads are not narrowed: upstream's Node authorizer also limits
which Secrets and ConfigMaps a node reads to those its pods use, which the RBAC rules here
do not (their `get` reaches every namespace's).
"""

from __future__ import annotations

from typing import Any

from unistack.apiserver import errors
from unistack.apiserver.handlers import WriteHooks
from unistack.apiserver.request import Request, User
from unistack.apiserver.resources import ResourceType

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
