"""`keystone-manage bootstrap` for unistack: what an empty cloud needs before anyone can log in.

The Default domain (id `default`), the roles `admin`, `manager`, `member`, `reader` with
admin ⇒ manager ⇒ member ⇒ reader (as Keystone 2024.1+ bootstraps them), and `service`; the
`admin` project and user with the admin role on the project and on the system; the region;
and the catalog entries of the services given (type, name, URL; one endpoint per interface).
Every object gets an id derived from what it is (uuid5 of its name), so several workers
bootstrapping at once, or a restart, create each thing once. An existing admin user keeps its
password (hashing again costs a few hundred ms per start). An existing role gains the default
implications it lacks (as `keystone-manage bootstrap` adds the implied-role rules to roles made
before them), keeping any others an operator added.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from unistack.client.api import AlreadyExists, Client, Conflict, NotFound
from unistack.concurrency import at_once
from unistack.iaas.crds import Kind
from unistack.iaas.identity import kinds, passwords
from unistack.iaas.records import new_object

Obj = dict[str, Any]
NAMESPACE = uuid.UUID("9b5c6f2e-0d7a-4c1e-9f3b-6a1d2e4c8b70")
INTERFACES = ("public", "internal", "admin")


def stable_id(*parts: str) -> str:
    return uuid.uuid5(NAMESPACE, "/".join(parts)).hex


@dataclass(frozen=True)
class CatalogEntry:
    type: str
    name: str
    url: str


@dataclass(frozen=True)
class BootstrapSettings:
    admin_password: str
    region: str = "RegionOne"
    admin_user: str = "admin"
    admin_project: str = "admin"
    services: Sequence[CatalogEntry] = field(default_factory=tuple)
    hash_rounds: int = passwords.DEFAULT_ROUNDS


async def _ensure(client: Client, kind: Kind, name: str, spec: Obj) -> None:
    with contextlib.suppress(AlreadyExists):
        await client.create(kind.ref, new_object(kind, name, None, spec, None))


def missing_implications(have: Sequence[str], wanted: Sequence[str]) -> list[str]:
    return [role_id for role_id in wanted if role_id not in have]


async def _ensure_implies(client: Client, role_id: str, wanted: Sequence[str]) -> None:
    """The role implies at least `wanted` (retried when someone else writes it meanwhile)."""
    for _ in range(5):
        role = await client.get(kinds.ROLES.ref, role_id)
        spec = role.setdefault("spec", {})
        missing = missing_implications(spec.get("implies") or [], wanted)
        if not missing:
            return
        spec["implies"] = [*(spec.get("implies") or []), *missing]
        with contextlib.suppress(Conflict):
            await client.update(kinds.ROLES.ref, role)
            return
    raise RuntimeError(f"role {role_id} kept changing while bootstrap updated it")


async def _ensure_user(client: Client, settings: BootstrapSettings, user_id: str) -> None:
    try:
        await client.get(kinds.USERS.ref, user_id)
        return
    except NotFound:
        pass
    hashed = await asyncio.to_thread(
        passwords.hash_password, settings.admin_password, settings.hash_rounds
    )
    spec = {
        "name": settings.admin_user,
        "domain_id": kinds.DEFAULT_DOMAIN_ID,
        "enabled": True,
        "password_hash": hashed,
        "password_created_at": None,
        "default_project_id": stable_id("project", settings.admin_project),
    }
    await _ensure(client, kinds.USERS, user_id, spec)


async def bootstrap(client: Client, settings: BootstrapSettings) -> None:
    """Every object at once: none needs another to exist first, and at a restart (each API
    pod bootstraps as it starts) each call is one answer of "already exists"."""
    domain = kinds.DEFAULT_DOMAIN_ID
    names = ("admin", "manager", "member", "reader", "service")
    role_ids = {name: stable_id("role", name) for name in names}
    implies = {"admin": ["manager"], "manager": ["member"], "member": ["reader"]}
    project_id = stable_id("project", settings.admin_project)
    user_id = stable_id("user", settings.admin_user)
    admin = role_ids["admin"]
    grants: dict[str, Obj] = {}
    for target_type, target in (("project", project_id), ("system", "all")):
        grant: Obj = {"role_id": admin, "user_id": user_id, "inherited": False}
        grant[f"{target_type}_id" if target_type != "system" else "system"] = target
        grants[kinds.assignment_name(admin, "user", user_id, target_type, target)] = grant
    domain_spec = {"name": "Default", "description": "The default domain", "enabled": True}
    project = {
        "name": settings.admin_project,
        "domain_id": domain,
        "parent_id": domain,
        "description": "Bootstrap project for initializing the cloud.",
        "enabled": True,
        "tags": [],
    }
    region = {"id": settings.region, "description": "", "parent_region_id": None}
    await at_once(
        _ensure(client, kinds.DOMAINS, domain, domain_spec),
        *(
            _ensure_role(client, name, role_id, [role_ids[i] for i in implies.get(name, [])])
            for name, role_id in role_ids.items()
        ),
        _ensure(client, kinds.PROJECTS, project_id, project),
        _ensure_user(client, settings, user_id),
        *(_ensure(client, kinds.ROLE_ASSIGNMENTS, name, grant) for name, grant in grants.items()),
        _ensure(client, kinds.REGIONS, kinds.object_name(settings.region), region),
        *(register_service(client, entry, settings.region) for entry in settings.services),
    )


async def _ensure_role(client: Client, name: str, role_id: str, implied: list[str]) -> None:
    spec = {"name": name, "domain_id": None, "description": None, "implies": implied}
    await _ensure(client, kinds.ROLES, role_id, spec)
    if implied:
        await _ensure_implies(client, role_id, implied)


async def register_service(client: Client, entry: CatalogEntry, region: str) -> None:
    """The service and one endpoint per interface at its URL (idempotent)."""
    service_id = stable_id("service", entry.type)
    spec = {"type": entry.type, "name": entry.name, "enabled": True, "description": None}
    endpoints = {
        stable_id("endpoint", entry.type, interface): {
            "service_id": service_id,
            "interface": interface,
            "url": entry.url,
            "region_id": region,
            "enabled": True,
        }
        for interface in INTERFACES
    }
    await at_once(
        _ensure(client, kinds.SERVICES, service_id, spec),
        *(_ensure(client, kinds.ENDPOINTS, name, body) for name, body in endpoints.items()),
    )
