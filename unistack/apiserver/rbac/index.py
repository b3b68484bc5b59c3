"""The RBAC objects in memory, and whose rules apply to a user where.

`RbacIndex` is a `following.Mirror` of `/rbac.authorization.k8s.io/`: every Role,
ClusterRole, RoleBinding and ClusterRoleBinding, parsed once when the store reports it and
never changed afterwards (a change replaces the entry). `rules_for` is upstream's
VisitRulesFor: the rules of every ClusterRoleBinding naming the user, then, in a namespace,
those of every RoleBinding there naming them; a ClusterRole bound by a RoleBinding applies in
that namespace only. A binding whose role does not exist grants nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from unistack import store as storage
from unistack.apiserver.kinds import rbac as kinds
from unistack.apiserver.kinds.objects import dict_of, dicts_in
from unistack.apiserver.rbac.rules import PolicyRule, rules_of
from unistack.apiserver.request import User

PREFIX = f"/{kinds.GROUP}/"


@dataclass(frozen=True, slots=True)
class Subject:
    kind: str
    name: str
    namespace: str = ""

    def names(self, user: User, binding_namespace: str) -> bool:
        if self.kind == "User":
            return user.name == self.name
        if self.kind == "Group":
            return self.name in user.groups
        if self.kind == "ServiceAccount":
            namespace = self.namespace or binding_namespace
            return user.name == f"system:serviceaccount:{namespace}:{self.name}"
        return False


@dataclass(frozen=True, slots=True)
class Binding:
    namespace: str  # "" for a ClusterRoleBinding
    role_kind: str
    role_name: str
    subjects: tuple[Subject, ...]

    def names(self, user: User) -> bool:
        return any(subject.names(user, self.namespace) for subject in self.subjects)


def _decode(value: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _binding(namespace: str, obj: dict[str, Any]) -> Binding:
    ref = dict_of(obj.get("roleRef"))
    subjects = dicts_in(obj.get("subjects"))
    return Binding(
        namespace,
        str(ref.get("kind", "")),
        str(ref.get("name", "")),
        tuple(
            Subject(str(s.get("kind", "")), str(s.get("name", "")), str(s.get("namespace", "")))
            for s in subjects
        ),
    )


class RbacIndex:
    """Roles by (namespace, name), ClusterRoles by name, bindings by namespace."""

    def __init__(self) -> None:
        self.roles: dict[tuple[str, str], tuple[PolicyRule, ...]] = {}
        self.cluster_roles: dict[str, tuple[PolicyRule, ...]] = {}
        self.cluster_role_bindings: dict[str, Binding] = {}
        self.role_bindings: dict[str, dict[str, Binding]] = {}

    # -- following the store -------------------------------------------------------------------

    def replace(self, items: list[storage.Stored]) -> None:
        self.roles, self.cluster_roles = {}, {}
        self.cluster_role_bindings, self.role_bindings = {}, {}
        for item in items:
            self._put(item.key, _decode(item.value))

    def apply(self, event: storage.Event) -> None:
        if event.type is storage.EventType.DELETED:
            self._remove(event.key)
        else:
            self._put(event.key, _decode(event.value))

    def _put(self, key: str, obj: dict[str, Any]) -> None:
        plural, namespace, name = _parse_key(key)
        if plural == kinds.CLUSTER_ROLE.plural:
            self.cluster_roles[name] = rules_of(obj)
        elif plural == kinds.ROLE.plural:
            self.roles[(namespace, name)] = rules_of(obj)
        elif plural == kinds.CLUSTER_ROLE_BINDING.plural:
            self.cluster_role_bindings[name] = _binding("", obj)
        elif plural == kinds.ROLE_BINDING.plural:
            self.role_bindings.setdefault(namespace, {})[name] = _binding(namespace, obj)

    def _remove(self, key: str) -> None:
        plural, namespace, name = _parse_key(key)
        if plural == kinds.CLUSTER_ROLE.plural:
            self.cluster_roles.pop(name, None)
        elif plural == kinds.ROLE.plural:
            self.roles.pop((namespace, name), None)
        elif plural == kinds.CLUSTER_ROLE_BINDING.plural:
            self.cluster_role_bindings.pop(name, None)
        elif plural == kinds.ROLE_BINDING.plural:
            self.role_bindings.get(namespace, {}).pop(name, None)

    # -- answering -----------------------------------------------------------------------------

    def role_rules(self, kind: str, namespace: str, name: str) -> tuple[PolicyRule, ...]:
        """The rules of the role a binding in `namespace` refers to; none when it is absent."""
        if kind == kinds.CLUSTER_ROLE.kind:
            return self.cluster_roles.get(name, ())
        if kind == kinds.ROLE.kind and namespace:
            return self.roles.get((namespace, name), ())
        return ()

    def rules_for(self, user: User, namespace: str) -> Iterator[PolicyRule]:
        """Every rule that applies to `user` in `namespace` ("" for cluster scope)."""
        for binding in self._bindings(namespace):
            if binding.names(user):
                yield from self.role_rules(binding.role_kind, binding.namespace, binding.role_name)

    def _bindings(self, namespace: str) -> Iterator[Binding]:
        yield from self.cluster_role_bindings.values()
        if namespace:
            yield from self.role_bindings.get(namespace, {}).values()


def _parse_key(key: str) -> tuple[str, str, str]:
    """(plural, namespace or "", name) of a key under `PREFIX`."""
    parts = key[len(PREFIX) :].split("/")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return parts[0], "", parts[-1]
