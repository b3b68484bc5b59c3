"""Authentication (who is calling) and authorization (may they?).

`TokenFileAuthenticator` reads kube-apiserver's static token file (`token,user,uid,"g1,g2"`),
which `unistack up` writes with the admin token of the generated kubeconfig; Keystone tokens
are `keystone.KeystoneAuthenticator`'s, and `UnionAuthenticator` asks each in turn, as
kube-apiserver's union of authenticators does. Service-account tokens
(`serviceaccounts.ServiceAccountAuthenticator`) are asked first, by the API server itself.

An `Authorizer` answers None (allowed) or a reason ("" when the attributes say it all);
`UnionAuthorizer` allows what any of its authorizers allows, as kube-apiserver's
`--authorization-mode` chain does. The API server's chain (`app.ApiServer`) is
`PrivilegedGroups` (system:masters may do everything), then RBAC (`rbac.authorizer`).
unistack's own components use the admin token of `unistack up`, a member of system:masters;
everyone else — other static-token users, Keystone users (every tenant of the cloud has a
Keystone token) — gets what RBAC bindings grant. `forbidden_message` words a refusal as
kube-apiserver does.
"""

from __future__ import annotations

import csv
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from unistack.apiserver.request import User

AUTHENTICATED = "system:authenticated"
ANONYMOUS = User("system:anonymous", groups=("system:unauthenticated",))
MASTERS = "system:masters"
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version", "/version/"})


class Authenticator(Protocol):
    def authenticate(self, authorization: str | None) -> User | None:
        """The caller named by an Authorization header, or None when it names nobody."""


@dataclass(frozen=True, slots=True)
class Attributes:
    verb: str
    path: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


class Authorizer(Protocol):
    def authorize(self, user: User, attributes: Attributes) -> str | None:
        """None when allowed, else the reason it is not ("" when there is nothing to add)."""


class PrivilegedGroups:
    """system:masters may do everything, whatever RBAC says (kube's privileged group)."""

    def authorize(self, user: User, attributes: Attributes) -> str | None:
        return None if MASTERS in user.groups else ""


class UnionAuthorizer:
    """Allowed when any authorizer allows; refused with their reasons otherwise."""

    def __init__(self, *authorizers: Authorizer) -> None:
        self.authorizers = authorizers

    def authorize(self, user: User, attributes: Attributes) -> str | None:
        reasons = []
        for authorizer in self.authorizers:
            reason = authorizer.authorize(user, attributes)
            if reason is None:
                return None
            reasons.append(reason)
        return "\n".join(r for r in reasons if r)


def forbidden_message(user: User, attributes: Attributes, reason: str = "") -> str:
    """kube-apiserver's words for a refused request, with the authorizer's reason if any."""
    who = f'User "{user.name}" cannot {attributes.verb}'
    if not attributes.resource:
        message = f'{who} path "{attributes.path}"'
    else:
        resource = attributes.resource
        if attributes.subresource:
            resource += f"/{attributes.subresource}"
        where = f'resource "{resource}" in API group "{attributes.group}"'
        scope = (
            f'in the namespace "{attributes.namespace}"'
            if attributes.namespace
            else "at the cluster scope"
        )
        message = f"{who} {where} {scope}"
    return f"{message}: {reason}" if reason else message


class UnionAuthenticator:
    """The first authenticator that knows the caller decides who they are."""

    def __init__(self, *authenticators: Authenticator) -> None:
        self.authenticators = authenticators

    def authenticate(self, authorization: str | None) -> User | None:
        for authenticator in self.authenticators:
            user = authenticator.authenticate(authorization)
            if user is not None:
                return user
        return None

    async def start(self) -> None:
        for authenticator in self.authenticators:
            start = getattr(authenticator, "start", None)
            if start is not None:
                await start()

    def stop(self) -> None:
        for authenticator in self.authenticators:
            stop = getattr(authenticator, "stop", None)
            if stop is not None:
                stop()


class TokenFileAuthenticator:
    """Bearer tokens from a static token CSV file."""

    def __init__(self, path: str | Path) -> None:
        self._users: dict[str, User] = {}
        with open(path, newline="") as handle:
            for row in csv.reader(handle):
                if len(row) >= 2 and row[0] and not row[0].startswith("#"):
                    groups = tuple(g for g in (row[3] if len(row) > 3 else "").split(",") if g)
                    uid = row[2] if len(row) > 2 else ""
                    self._users[row[0]] = User(row[1], uid, (*groups, "system:authenticated"))

    def authenticate(self, authorization: str | None) -> User | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        token = authorization[7:].strip()
        for known, user in self._users.items():
            if hmac.compare_digest(known, token):
                return user
        return None


class TrustEveryone:
    """In-process use only (tests, embedded callers): every request is the cluster admin."""

    ADMIN = User("system:admin", groups=("system:masters", "system:authenticated"))

    def authenticate(self, authorization: str | None) -> User | None:
        return self.ADMIN
