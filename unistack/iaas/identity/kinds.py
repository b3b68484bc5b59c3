"""The identity kinds, group `identity.unistack.io`, all cluster-scoped.

`metadata.name` is the OpenStack id (32 hex digits, or `default` for the Default domain); the
OpenStack attributes are in `spec` under their OpenStack names. A role assignment's name is a
digest of what it grants, so granting twice is one object. A revocation event names what it
revokes (an audit id, a trust, or a user's or project's tokens issued before a time). A trust
(OS-TRUST) is a trustor's delegation of some of their roles on a project to a trustee.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from unistack.iaas.crds import Kind

GROUP = "identity.unistack.io"
DEFAULT_DOMAIN_ID = "default"

DOMAINS = Kind(GROUP, "Domain", "domains")
PROJECTS = Kind(GROUP, "Project", "projects")
USERS = Kind(GROUP, "User", "users")
GROUPS = Kind(GROUP, "Group", "groups")
ROLES = Kind(GROUP, "Role", "roles")
ROLE_ASSIGNMENTS = Kind(
    GROUP,
    "RoleAssignment",
    "roleassignments",
    columns=(("Role", ".spec.role_id"), ("User", ".spec.user_id"), ("Project", ".spec.project_id")),
)
REGIONS = Kind(GROUP, "Region", "regions", columns=(("Description", ".spec.description"),))
SERVICES = Kind(GROUP, "Service", "services", columns=(("Type", ".spec.type"),))
ENDPOINTS = Kind(
    GROUP,
    "Endpoint",
    "endpoints",
    columns=(("Interface", ".spec.interface"), ("URL", ".spec.url")),
)
APPLICATION_CREDENTIALS = Kind(GROUP, "ApplicationCredential", "applicationcredentials")
CREDENTIALS = Kind(GROUP, "Credential", "credentials", columns=(("Type", ".spec.type"),))
POLICIES = Kind(GROUP, "Policy", "policies", columns=(("Type", ".spec.type"),))
CONSUMERS = Kind(GROUP, "Consumer", "consumers", columns=(("Description", ".spec.description"),))
ENDPOINT_GROUPS = Kind(GROUP, "EndpointGroup", "endpointgroups")
REVOCATIONS = Kind(
    GROUP,
    "RevocationEvent",
    "revocationevents",
    columns=(("Audit-ID", ".spec.audit_id"), ("User", ".spec.user_id")),
)

TRUSTS = Kind(
    GROUP,
    "Trust",
    "trusts",
    columns=(("Trustor", ".spec.trustor_user_id"), ("Trustee", ".spec.trustee_user_id")),
)

ALL = (
    DOMAINS,
    PROJECTS,
    USERS,
    GROUPS,
    ROLES,
    ROLE_ASSIGNMENTS,
    REGIONS,
    SERVICES,
    ENDPOINTS,
    APPLICATION_CREDENTIALS,
    REVOCATIONS,
    CREDENTIALS,
    POLICIES,
    CONSUMERS,
    ENDPOINT_GROUPS,
    TRUSTS,
)


_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def object_name(openstack_id: str) -> str:
    """The object name for an OpenStack id: the id itself when it is a valid object name (every
    id unistack generates is), else a digest of it (ids chosen by users, such as `RegionOne`,
    which then also go in `spec.id`)."""
    if _DNS_NAME.match(openstack_id):
        return openstack_id
    return "x-" + hashlib.sha256(openstack_id.encode()).hexdigest()[:40]


def spec_of(obj: dict[str, Any] | None) -> dict[str, Any]:
    """An identity object's OpenStack attributes ({} for a missing object)."""
    return (obj or {}).get("spec") or {}


def openstack_id(obj: dict[str, object]) -> str:
    spec = obj.get("spec")
    chosen = spec.get("id") if isinstance(spec, dict) else None
    metadata = obj["metadata"]
    assert isinstance(metadata, dict)
    return str(chosen) if chosen else str(metadata["name"])


def assignment_name(
    role_id: str,
    actor_type: str,
    actor_id: str,
    target_type: str,
    target_id: str,
    inherited: bool = False,
) -> str:
    """The one object name for a grant: the same grant twice is the same object."""
    text = "/".join((role_id, actor_type, actor_id, target_type, target_id, str(inherited)))
    return hashlib.sha256(text.encode()).hexdigest()[:40]
