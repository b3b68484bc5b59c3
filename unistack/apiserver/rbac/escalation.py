"""Escalation prevention: nobody grants, by a role or a binding, what they do not hold.

As upstream's RBAC storage does, for a client's create or update (`handlers.WriteHooks.admit`)
by anyone outside system:masters:

- a Role or ClusterRole is refused (403) unless its author holds every rule it grants where
  it applies (a Role in its namespace, a ClusterRole cluster-wide) or may `escalate` it; an
  aggregationRule gathers anything, so it takes holding everything;
- a RoleBinding or ClusterRoleBinding is refused unless its author may `bind` the role it
  refers to, or holds every rule of that role where the binding applies. The role is read
  from the store, so one created just before is found; a missing role is a 404.

An update that leaves what is granted alone (neither the rules, the aggregationRule, the
role reference, the subjects nor the labels change) is not checked; taking an aggregationRule
away takes holding everything too. The author's rules
come from the RBAC authorizer's index; `escalate` and `bind` are asked of the whole chain.
"""

from __future__ import annotations

from typing import Any

from unistack import store as storage
from unistack.apiserver import auth, codec, errors
from unistack.apiserver.handlers import WriteHooks
from unistack.apiserver.kinds import rbac as kinds
from unistack.apiserver.kinds.objects import metadata_of
from unistack.apiserver.rbac import rules
from unistack.apiserver.rbac.authorizer import RbacAuthorizer
from unistack.apiserver.request import Request, User
from unistack.apiserver.resources import ResourceType

Obj = dict[str, Any]
EVERYTHING = (
    rules.PolicyRule(("*",), ("*",), ("*",)),
    rules.PolicyRule(("*",), non_resource_urls=("*",)),
)
_ROLES = (kinds.ROLE.kind, kinds.CLUSTER_ROLE.kind)
_BINDINGS = (kinds.ROLE_BINDING.kind, kinds.CLUSTER_ROLE_BINDING.kind)


class EscalationCheck(WriteHooks):
    def __init__(
        self, rbac: RbacAuthorizer, authorizer: auth.Authorizer, store: storage.ObjectStore
    ) -> None:
        self.rbac = rbac
        self.authorizer = authorizer
        self.store = store

    async def admit(self, req: Request, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        if rt.group != kinds.GROUP or auth.MASTERS in req.user.groups:
            return
        if rt.kind in _ROLES and not _same_grant(old, new, "rules", "aggregationRule"):
            self.check_role(req.user, rt, new, old)
        elif rt.kind in _BINDINGS and not _same_grant(old, new, "roleRef", "subjects"):
            await self.check_binding(req.user, rt, new)

    def check_role(self, user: User, rt: ResourceType, role: Obj, old: Obj | None) -> None:
        namespace, name = _where(role)
        if self._may(user, "escalate", rt.plural, namespace, name if old is not None else ""):
            return
        self._refuse_unheld(user, rt, name, namespace, rules.rules_of(role))
        aggregates = rt.kind == kinds.CLUSTER_ROLE.kind and any(
            obj is not None and obj.get("aggregationRule") is not None for obj in (role, old)
        )
        if aggregates and rules.uncovered(self.rbac.rules_for(user, ""), EVERYTHING):
            why = "must have cluster-admin privileges to use the aggregationRule"
            raise errors.forbidden_on(rt.plural, rt.group, name, why)

    async def check_binding(self, user: User, rt: ResourceType, binding: Obj) -> None:
        namespace, name = _where(binding)
        ref = binding.get("roleRef") or {}
        role_rt = kinds.CLUSTER_ROLE if ref.get("kind") == "ClusterRole" else kinds.ROLE
        if self._may(user, "bind", role_rt.plural, namespace, str(ref.get("name", ""))):
            return
        granted = await self._role_rules(role_rt, namespace, str(ref.get("name", "")))
        self._refuse_unheld(user, rt, name, namespace, granted)

    def _may(self, user: User, verb: str, plural: str, namespace: str, name: str) -> bool:
        attributes = auth.Attributes(verb, "", kinds.GROUP, plural, "", namespace, name)
        return self.authorizer.authorize(user, attributes) is None

    def _refuse_unheld(
        self,
        user: User,
        rt: ResourceType,
        name: str,
        namespace: str,
        granted: tuple[rules.PolicyRule, ...],
    ) -> None:
        missing = rules.uncovered(self.rbac.rules_for(user, namespace), granted)
        if missing:
            groups = " ".join(f'"{g}"' for g in user.groups)
            why = (
                f'user "{user.name}" (groups=[{groups}]) is attempting to grant RBAC '
                "permissions not currently held:\n" + "\n".join(str(rule) for rule in missing)
            )
            raise errors.forbidden_on(rt.plural, rt.group, name, why)

    async def _role_rules(
        self, rt: ResourceType, namespace: str, name: str
    ) -> tuple[rules.PolicyRule, ...]:
        try:
            stored = await self.store.get(rt.key(namespace or None, name))
        except storage.NotFound:
            raise errors.not_found(rt.plural, rt.group, name) from None
        return rules.rules_of(codec.load(stored.value))


def _where(obj: Obj) -> tuple[str, str]:
    meta = metadata_of(obj)
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _same_grant(old: Obj | None, new: Obj, *fields: str) -> bool:
    """Whether an update leaves what the object grants alone: its `fields` and its labels
    (a ClusterRole's labels choose the aggregated roles it joins) unchanged."""
    if old is None or any(old.get(f) != new.get(f) for f in fields):
        return False
    return metadata_of(old).get("labels") == metadata_of(new).get("labels")
