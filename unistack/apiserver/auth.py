"""Authentication (who is calling) and the authorization seam (may they?).

`TokenFileAuthenticator` reads kube-apiserver's static token file (`token,user,uid,"g1,g2"`),
which `unistack up` writes with the admin token of the generated kubeconfig. Keystone tokens
and service-account tokens will be further `Authenticator`s. `Authorizer` is the seam RBAC
plugs into; until then `AllowAuthenticated` lets every authenticated user do everything.
"""

from __future__ import annotations

import csv
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from unistack.apiserver.request import User

ANONYMOUS = User("system:anonymous", groups=("system:unauthenticated",))
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
        """None when allowed, else the reason it is not."""


class AllowAuthenticated:
    def authorize(self, user: User, attributes: Attributes) -> str | None:
        if "system:authenticated" in user.groups or "system:masters" in user.groups:
            return None
        return f'User "{user.name}" cannot {attributes.verb} path "{attributes.path}"'


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
