"""Resource types: what the API server serves, declared rather than coded.

A `ResourceType` names a kind (group, version, plural, scope), says which subresources it has,
how `kubectl get` prints it (`columns`), and how it is defaulted and validated. Built-in kinds
are declared in `unistack.apiserver.kinds`; custom kinds are added to the `Registry` when their
CustomResourceDefinition is created (`unistack.apiserver.crds`). The generic machinery in
`handlers` serves every type the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from unistack.apiserver.errors import FieldError

Obj = dict[str, Any]
Defaulter = Callable[[Obj], None]
# (new object, old object or None for create) -> field errors
Validator = Callable[[Obj, Obj | None], list[FieldError]]


@dataclass(frozen=True, slots=True)
class Column:
    """A `kubectl get` column: a Table column definition and how to read its cell.

    `path` is a JSONPath-like dotted path (`.status.phase`, `.spec.ports[*].port`) or a
    function of the object, for cells computed from several fields.
    """

    name: str
    path: str | Callable[[Obj], Any]
    type: str = "string"
    format: str = ""
    description: str = ""
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Scale:
    """Where a kind keeps its replica counts, for the `scale` subresource."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = ".status.selector"


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    # whether a create keeps the status it is given: only Nodes, so that a kubelet registers
    # with its capacity in one request (kube's node strategy); elsewhere status is reset
    status_on_create: bool = False
    scale: Scale | None = None
    columns: tuple[Column, ...] = ()
    defaulter: Defaulter | None = None
    validator: Validator | None = None
    schema: Obj | None = None  # openAPIV3Schema (custom kinds); None means no schema check
    # metadata.generation, bumped when anything outside metadata and status changes: kube
    # tracks it for the apps kinds, CRDs and custom resources, not for core kinds
    tracks_generation: bool = False
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    extra_subresources: tuple[str, ...] = ()  # e.g. "finalize" for namespaces
    custom: bool = False  # served from a CustomResourceDefinition
    storage_version: bool = True  # the version objects are stored in
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def key_prefix(self) -> str:
        """Where objects of this kind live in the store; the same for every version."""
        return f"/{self.group or 'core'}/{self.plural}/"

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.key_prefix}{namespace}/{name}"
        return f"{self.key_prefix}{name}"

    def prefix(self, namespace: str | None) -> str:
        """The store prefix of a list or watch: every namespace when `namespace` is None."""
        if self.namespaced and namespace:
            return f"{self.key_prefix}{namespace}/"
        return self.key_prefix

    @property
    def subresources(self) -> tuple[str, ...]:
        subs: list[str] = []
        if self.status_subresource:
            subs.append("status")
        if self.scale is not None:
            subs.append("scale")
        return (*subs, *self.extra_subresources)

    @property
    def group_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


class Registry:
    """Every served resource type, looked up by group/version/plural or by kind."""

    def __init__(self) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._group_order: list[str] = []
        self.generation = 0  # bumped on every change, so discovery caches know to rebuild

    def add(self, rt: ResourceType) -> None:
        self._by_path[(rt.group, rt.version, rt.plural)] = rt
        if rt.group not in self._group_order:
            self._group_order.append(rt.group)
        self.generation += 1

    def remove_group_resource(self, group: str, plural: str) -> None:
        for key in [k for k in self._by_path if k[0] == group and k[2] == plural]:
            del self._by_path[key]
        if not any(k[0] == group for k in self._by_path) and group in self._group_order:
            self._group_order.remove(group)
        self.generation += 1

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        for rt in self._by_path.values():
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def versions_of(self, group: str, plural: str) -> list[ResourceType]:
        return [rt for (g, _, p), rt in self._by_path.items() if g == group and p == plural]

    def groups(self) -> list[str]:
        """Group names in the order they were first added ("" is the core group)."""
        return list(self._group_order)

    def versions(self, group: str) -> list[str]:
        """The group's versions, preferred (storage) version first."""
        seen: list[str] = []
        for rt in sorted(self.in_group(group), key=lambda r: not r.storage_version):
            if rt.version not in seen:
                seen.append(rt.version)
        return seen

    def in_group(self, group: str) -> list[ResourceType]:
        return [rt for rt in self._by_path.values() if rt.group == group]

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._by_path.values() if (rt.group, rt.version) == (group, version)]

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._by_path.values()))
