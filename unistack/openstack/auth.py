"""Who is calling: a token validated locally into an `AuthContext`, and the default policy.

Every service validates tokens itself (DESIGN.md section 6): it opens the Fernet token with the
cloud's keys (`unistack.tokens`) and checks, against the identity objects in memory
(`Directory`), what may have changed since it was issued — as Keystone's fernet provider does
on each validation:
- it has not expired and no revocation event covers it (its audit id, or the user's or the
  project's tokens issued before a time);
- the user, their domain, and the scope's project or domain still exist and are enabled;
- the user still has a role on the scope (recomputed now, so a removed assignment takes the
  role away at once); an application credential token keeps only the credential's roles, a
  trust-scoped token only the trust's (`Directory.trust_roles`).

`Policy` is OpenStack's default policy in its simplest faithful form: the `admin` role is the
cloud administrator (Keystone's `admin_required`; with reader ⊂ member ⊂ admin implied),
`reader` and `member` act within their own scope, and a user may always act on themselves
(their password, application credentials, projects). A refusal names the rule, as oslo.policy
does: "You are not authorized to perform the requested action: identity:list_users."
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from unistack.iaas.identity import kinds
from unistack.iaas.identity.directory import Directory
from unistack.iaas.identity.kinds import spec_of
from unistack.openstack.web import OpenStackError, forbidden, not_found, unauthorized
from unistack.tokens import Claims, TokenCodec, TokenError, revokes

Obj = dict[str, object]
ADMIN_ROLE = "admin"
MEMBER_ROLE = "member"
READER_ROLE = "reader"


class InvalidToken(Exception):
    """The token does not (or no longer does) stand for anyone."""


@dataclass(frozen=True)
class AuthContext:
    """A validated token: the user, the scope and the roles the user has on it now."""

    token: str
    claims: Claims
    user: dict  # the User object
    roles: tuple[dict, ...]  # Role objects, implied ones included
    project: dict | None = None
    domain: dict | None = None  # the scope's domain, for a domain-scoped token
    role_names: frozenset[str] = field(default=frozenset())

    @property
    def user_id(self) -> str:
        return self.claims.user_id

    @property
    def project_id(self) -> str | None:
        return self.claims.project_id

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.role_names

    @property
    def is_system(self) -> bool:
        return self.claims.system is not None

    def has_role(self, name: str) -> bool:
        return name in self.role_names


def _enabled(obj: dict | None) -> bool:
    return obj is not None and spec_of(obj).get("enabled", True) is not False


class TokenValidator:
    """Opens tokens and checks them against the directory, as described above."""

    def __init__(self, codec: TokenCodec, directory: Directory) -> None:
        self.codec = codec
        self.directory = directory

    def validate(self, token: str, now: float | None = None) -> AuthContext:
        try:
            claims = self.codec.open(token)
        except TokenError as exc:
            raise InvalidToken(str(exc)) from exc
        now = time.time() if now is None else now
        if claims.expires_at <= now:
            raise InvalidToken("token expired")
        if self._revoked(claims):
            raise InvalidToken("token revoked")
        directory = self.directory
        user = directory.get(kinds.USERS, claims.user_id)
        if not _enabled(user) or not _enabled(
            directory.get(kinds.DOMAINS, spec_of(user).get("domain_id"))
        ):
            raise InvalidToken("user gone or disabled")
        assert user is not None
        project = domain = None
        if claims.project_id:
            project = directory.get(kinds.PROJECTS, claims.project_id)
            project_domain = directory.get(kinds.DOMAINS, spec_of(project).get("domain_id"))
            if not _enabled(project) or not _enabled(project_domain):
                raise InvalidToken("project gone or disabled")
        elif claims.domain_id:
            domain = directory.get(kinds.DOMAINS, claims.domain_id)
            if not _enabled(domain):
                raise InvalidToken("domain gone or disabled")
        roles: tuple[dict, ...] = ()
        if claims.scope != "unscoped":
            found = (
                directory.trust_roles(claims.trust_id, now)
                if claims.trust_id
                else directory.effective_roles(
                    claims.user_id, claims.project_id, claims.domain_id, claims.system
                )
            )
            if claims.app_cred_id:
                found = self._credential_roles(claims, found, now)
            if not found:
                raise InvalidToken("no role on the scope any more")
            roles = tuple(found)
        names = frozenset(str(spec_of(role).get("name")) for role in roles)
        return AuthContext(token, claims, user, roles, project, domain, names)

    def _credential_roles(self, claims: Claims, found: list[dict], now: float) -> list[dict]:
        credential = self.directory.get(kinds.APPLICATION_CREDENTIALS, claims.app_cred_id)
        if credential is None:
            raise InvalidToken("application credential gone")
        expires = spec_of(credential).get("expires_at_epoch")
        if expires is not None and float(expires) <= now:
            raise InvalidToken("application credential expired")
        allowed = set(spec_of(credential).get("role_ids") or [])
        granted = self.directory.implied_closure(allowed)
        have = {role["metadata"]["name"] for role in found}
        return [role for role in granted if role["metadata"]["name"] in have]

    def _revoked(self, claims: Claims) -> bool:
        return any(
            revokes(spec_of(event), claims) for event in self.directory.all(kinds.REVOCATIONS)
        )

    def authenticate(self, token: str | None) -> AuthContext:
        """The caller of a request (its X-Auth-Token); 401 when it names nobody."""
        if not token:
            raise unauthorized()
        try:
            return self.validate(token)
        except InvalidToken as exc:
            raise unauthorized() from exc

    def subject(self, token: str | None) -> AuthContext:
        """The token a request asks about (X-Subject-Token); 404 when it is not valid."""
        if not token:
            raise not_found("Could not find token: none given.")
        try:
            return self.validate(token)
        except InvalidToken as exc:
            raise not_found(f"Could not find token: {token[:16]}...") from exc


def deny(rule: str) -> OpenStackError:
    return forbidden(f"You are not authorized to perform the requested action: {rule}.")


def require_admin(context: AuthContext, rule: str) -> None:
    if not context.is_admin:
        raise deny(rule)


def require_admin_or_self(context: AuthContext, user_id: str, rule: str) -> None:
    if not context.is_admin and context.user_id != user_id:
        raise deny(rule)


# --- project-scoped services (compute, image, network, volume) ---------------------------


def wants_all_projects(context: AuthContext, flag: str | None) -> bool:
    """Whether a list covers every project: only for an admin who asks (`all_tenants=1`,
    `all_projects=true`); Nova and Cinder ignore the flag from others."""
    return context.is_admin and flag is not None and flag.lower() not in ("0", "false", "no", "off")


def may_see(context: AuthContext, project_id: str | None) -> bool:
    """An admin sees everything; others see what their project owns."""
    return context.is_admin or (project_id is not None and project_id == context.project_id)


def require_project(context: AuthContext) -> str:
    """The project of a project-scoped token; 403 for other scopes (no project to act in)."""
    if context.project_id is None:
        raise forbidden("A project-scoped token is required for this request.")
    return context.project_id


def require_member(context: AuthContext, rule: str) -> None:
    """Writes need `member` (or `admin`, which implies it); `reader` may only look."""
    if not (context.has_role(MEMBER_ROLE) or context.is_admin):
        raise deny(rule)
