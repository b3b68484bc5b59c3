"""The identity objects as one read-only view: lookups by id and by name, and effective roles.

`Directory` holds one informer per identity kind (shared with whoever else in the process
reads them), indexed the ways Keystone looks things up: users, projects and groups by
(domain, name), roles by name, assignments by actor and by target, group memberships by user.
Every read is from memory, so validating a token or answering `GET /v3/projects` costs no
round trip to the store (each read is noted for `client.freshness`); writers go through
`Records` over the same informers, which answer only once the cache shows the write
(read-your-writes).

`effective_roles` is Keystone's role resolution for a scope: the user's own assignments and
those of their groups on the target; for a project also the `inherited` assignments on its
domain and on its parent projects (OS-INHERIT); then every role those imply, transitively
(reader ⊂ member ⊂ admin).

`trust_roles` is what a trust-scoped token may do: the trust's roles and those they imply,
as long as the trust is there and unexpired, both users are enabled, and the trustor still
has each role on the trust's project (Keystone checks the same at every validation).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from unistack.client import freshness
from unistack.client.api import Client
from unistack.iaas.crds import Kind
from unistack.iaas.identity import kinds
from unistack.iaas.identity.kinds import spec_of
from unistack.runtime.informer import IndexFunc, Informer, SharedInformers

Obj = dict[str, Any]


def _by_domain_name(obj: Obj) -> list[str]:
    spec = spec_of(obj)
    return [f"{spec.get('domain_id')}/{spec.get('name')}"]


def _by_name(obj: Obj) -> list[str]:
    return [str(spec_of(obj).get("name"))]


def _by_actor(obj: Obj) -> list[str]:
    spec = spec_of(obj)
    return [f"user/{spec['user_id']}"] if spec.get("user_id") else [f"group/{spec['group_id']}"]


def _by_target(obj: Obj) -> list[str]:
    spec = spec_of(obj)
    if spec.get("project_id"):
        return [f"project/{spec['project_id']}"]
    if spec.get("domain_id"):
        return [f"domain/{spec['domain_id']}"]
    return [f"system/{spec.get('system', 'all')}"]


def _by_member(obj: Obj) -> list[str]:
    return [str(user) for user in spec_of(obj).get("users") or []]


def _by_user(obj: Obj) -> list[str]:
    return [str(spec_of(obj).get("user_id"))]


def _by_trustor(obj: Obj) -> list[str]:
    return [str(spec_of(obj).get("trustor_user_id"))]


def _by_trustee(obj: Obj) -> list[str]:
    return [str(spec_of(obj).get("trustee_user_id"))]


def _by_parent(obj: Obj) -> list[str]:
    return [str(spec_of(obj).get("parent_id") or spec_of(obj).get("domain_id"))]


_INDEXERS: dict[Kind, dict[str, IndexFunc]] = {
    kinds.PROJECTS: {"domain_name": _by_domain_name, "parent": _by_parent},
    kinds.USERS: {"domain_name": _by_domain_name},
    kinds.GROUPS: {"domain_name": _by_domain_name, "member": _by_member},
    kinds.ROLES: {"name": _by_name},
    kinds.ROLE_ASSIGNMENTS: {"actor": _by_actor, "target": _by_target},
    kinds.APPLICATION_CREDENTIALS: {"user": _by_user},
    kinds.REVOCATIONS: {"user": _by_user},
    kinds.TRUSTS: {"trustor": _by_trustor, "trustee": _by_trustee},
}


class Directory:
    """Read-only identity lookups over the informers' caches."""

    def __init__(self, client: Client, informers: SharedInformers | None = None) -> None:
        self.client = client
        shared = informers or SharedInformers(client)
        self.shared = shared  # writers build their `Records` over the same caches
        self.informers: dict[Kind, Informer] = {
            kind: shared.informer(kind.ref, _INDEXERS.get(kind)) for kind in kinds.ALL
        }

    async def start(self, timeout: float = 30.0) -> None:
        for informer in self.informers.values():
            informer.start()
        for informer in self.informers.values():
            await informer.wait_synced(timeout)

    async def stop(self) -> None:
        for informer in self.informers.values():
            await informer.stop()

    # --- lookups --------------------------------------------------------------------------

    def get(self, kind: Kind, object_id: str | None) -> Obj | None:
        if not object_id:
            return None
        return self._read(kind).cache.get(kinds.object_name(object_id))

    def all(self, kind: Kind) -> list[Obj]:
        return self._read(kind).cache.list()

    def indexed(self, kind: Kind, index: str, value: str) -> list[Obj]:
        return self._read(kind).cache.by_index(index, value)

    def _read(self, kind: Kind) -> Informer:
        informer = self.informers[kind]
        freshness.note_read(informer)
        return informer

    def by_name(self, kind: Kind, name: str, domain_id: str | None) -> Obj | None:
        """A user, project or group by name in a domain; a role by name (global roles)."""
        if kind is kinds.ROLES:
            found = [r for r in self.indexed(kind, "name", name) if not spec_of(r).get("domain_id")]
        else:
            found = self.indexed(kind, "domain_name", f"{domain_id}/{name}")
        return found[0] if found else None

    def domain_by_name(self, name: str) -> Obj | None:
        return next((d for d in self.all(kinds.DOMAINS) if spec_of(d).get("name") == name), None)

    def groups_of(self, user_id: str) -> list[Obj]:
        return self.indexed(kinds.GROUPS, "member", user_id)

    def assignments_on(self, target: str) -> list[Obj]:
        """Assignments on "project/ID", "domain/ID" or "system/all"."""
        return self.indexed(kinds.ROLE_ASSIGNMENTS, "target", target)

    def assignments_of(self, actor: str) -> list[Obj]:
        """Assignments of "user/ID" or "group/ID"."""
        return self.indexed(kinds.ROLE_ASSIGNMENTS, "actor", actor)

    def project_chain(self, project_id: str) -> Iterator[Obj]:
        """The project's parents, nearest first (not the project itself)."""
        seen = {project_id}
        project = self.get(kinds.PROJECTS, project_id)
        while project is not None:
            parent_id = spec_of(project).get("parent_id")
            if not parent_id or parent_id in seen:
                return
            seen.add(parent_id)
            project = self.get(kinds.PROJECTS, parent_id)
            if project is not None:
                yield project

    # --- roles ----------------------------------------------------------------------------

    def actors(self, user_id: str) -> list[str]:
        return [
            f"user/{user_id}",
            *(f"group/{g['metadata']['name']}" for g in self.groups_of(user_id)),
        ]

    def direct_role_ids(
        self,
        user_id: str,
        project_id: str | None = None,
        domain_id: str | None = None,
        system: str | None = None,
    ) -> set[str]:
        """Roles granted on the scope to the user or their groups (inheritance followed)."""
        actors = set(self.actors(user_id))
        targets: list[tuple[str, bool | None]]  # (target, inherited wanted: None for any)
        if project_id:
            project = self.get(kinds.PROJECTS, project_id)
            targets = [(f"project/{project_id}", False)]
            targets += [
                (f"project/{p['metadata']['name']}", True) for p in self.project_chain(project_id)
            ]
            if project is not None:
                targets.append((f"domain/{spec_of(project).get('domain_id')}", True))
        elif domain_id:
            targets = [(f"domain/{domain_id}", False)]
        elif system:
            targets = [(f"system/{system}", None)]
        else:
            return set()
        roles: set[str] = set()
        for target, inherited in targets:
            for assignment in self.assignments_on(target):
                spec = spec_of(assignment)
                actor = (
                    f"user/{spec['user_id']}"
                    if spec.get("user_id")
                    else f"group/{spec.get('group_id')}"
                )
                if actor in actors and (
                    inherited is None or bool(spec.get("inherited")) == inherited
                ):
                    roles.add(spec["role_id"])
        return roles

    def implied_closure(self, role_ids: Iterable[str]) -> list[Obj]:
        """The roles and every role they imply, transitively, in a stable order."""
        found: dict[str, Obj] = {}
        pending = list(role_ids)
        while pending:
            role_id = pending.pop()
            if role_id in found:
                continue
            role = self.get(kinds.ROLES, role_id)
            if role is None:
                continue
            found[role_id] = role
            pending.extend(spec_of(role).get("implies") or [])
        return sorted(found.values(), key=lambda r: str(spec_of(r).get("name")))

    def effective_roles(
        self,
        user_id: str,
        project_id: str | None = None,
        domain_id: str | None = None,
        system: str | None = None,
    ) -> list[Obj]:
        """The global roles the user has on the scope. Domain-specific roles only lend the
        roles they imply, as in Keystone: they never appear in a token themselves."""
        found = self.implied_closure(self.direct_role_ids(user_id, project_id, domain_id, system))
        return [role for role in found if not spec_of(role).get("domain_id")]

    def trust_roles(self, trust_id: str, now: float) -> list[Obj]:
        """The roles a token scoped to this trust has now; [] when the trust gives none."""
        spec = spec_of(self.get(kinds.TRUSTS, trust_id))
        expires = spec.get("expires_at_epoch")
        if not spec or (expires is not None and float(expires) <= now):
            return []
        for user_id in (spec.get("trustor_user_id"), spec.get("trustee_user_id")):
            user = self.get(kinds.USERS, user_id)
            if user is None or spec_of(user).get("enabled", True) is False:
                return []
        held = {
            role["metadata"]["name"]
            for role in self.effective_roles(spec["trustor_user_id"], spec.get("project_id"))
        }
        delegated = spec.get("role_ids") or []
        if not delegated or not set(delegated) <= held:
            return []
        granted = self.implied_closure(delegated)
        return [role for role in granted if not spec_of(role).get("domain_id")]
