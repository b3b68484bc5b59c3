"""Keystone tokens on the Kubernetes API: `kubectl --token <keystone token>`.

`KeystoneAuthenticator` opens a bearer token with the cloud's Fernet keys (`unistack.tokens`,
the key repository the identity service seals with), as every OpenStack service validates
tokens locally, and maps it to a Kubernetes user: the user's name and id, a group
`keystone:role:<name>` per role, `keystone:project:<id>` for a project-scoped token,
`system:authenticated`, and `system:masters` for the `admin` role. An unscoped token carries
no roles and is refused; so is an expired or revoked one (401).

The API server sits below the identity service and cannot read its directory, so it knows
what the token carries and what its own store holds: the user's name and roles as they were
when the token was issued (the identity service seals them in), the expiry, and Keystone's
revocation events, which are objects in this store (`identity.unistack.io` RevocationEvent).
`StoreRevocations` lists them at start and follows them with a store watch (`following`),
so a token that is revoked (`DELETE /v3/auth/tokens`), whose user is disabled, deleted or
changes password, whose project is disabled or deleted, or whose trust is deleted, is refused
at once. A role removed from a user stays in their token until it expires (at most
`[token] expiration`, an hour), as it would in a Kubernetes webhook's token cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from unistack import store as storage
from unistack.apiserver import following
from unistack.apiserver.request import User
from unistack.tokens import Claims, TokenCodec, TokenError, revokes

REVOCATIONS_PREFIX = "/identity.unistack.io/revocationevents/"
ADMIN_ROLE = "admin"


class Revocations(Protocol):
    def revoked(self, claims: Claims) -> bool: ...


class NoRevocations:
    """For a server without the identity objects: only expiry ends a token."""

    def revoked(self, claims: Claims) -> bool:
        return False


def keystone_user(claims: Claims) -> User:
    """The Kubernetes user a Keystone token stands for."""
    groups = [f"keystone:role:{name}" for name in claims.role_names]
    if claims.project_id:
        groups.append(f"keystone:project:{claims.project_id}")
    if ADMIN_ROLE in claims.role_names:
        groups.append("system:masters")
    groups.append("system:authenticated")
    name = claims.user_name or claims.user_id
    if name.startswith("system:"):  # kube's own names are not a Keystone user's to take
        name = f"keystone:{name}"
    return User(name, claims.user_id, tuple(groups))


class KeystoneAuthenticator:
    """Bearer tokens that are Keystone tokens of this cloud."""

    def __init__(
        self,
        codec: TokenCodec,
        revocations: Revocations | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.codec = codec
        self.revocations = revocations or NoRevocations()
        self.clock = clock

    def authenticate(self, authorization: str | None) -> User | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        try:
            claims = self.codec.open(authorization[7:].strip())
        except TokenError:
            return None
        if claims.expires_at <= self.clock() or claims.scope == "unscoped":
            return None
        if self.revocations.revoked(claims):
            return None
        return keystone_user(claims)

    async def start(self) -> None:
        start = getattr(self.revocations, "start", None)
        if start is not None:
            await start()

    def stop(self) -> None:
        stop = getattr(self.revocations, "stop", None)
        if stop is not None:
            stop()


def _spec(value: bytes) -> dict[str, Any]:
    try:
        spec = orjson.loads(value).get("spec")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return spec if isinstance(spec, dict) else {}


class StoreRevocations:
    """Keystone's revocation events as this store holds them, followed by a watch."""

    def __init__(self, store: storage.ObjectStore) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.follower = following.StoreFollower(store, REVOCATIONS_PREFIX, self)

    def revoked(self, claims: Claims) -> bool:
        return any(revokes(event, claims) for event in self.events.values())

    async def start(self) -> None:
        await self.follower.start()

    def stop(self) -> None:
        self.follower.stop()

    def replace(self, items: list[storage.Stored]) -> None:
        self.events = {item.key: _spec(item.value) for item in items}

    def apply(self, event: storage.Event) -> None:
        if event.type is storage.EventType.DELETED:
            self.events.pop(event.key, None)
        else:
            self.events[event.key] = _spec(event.value)
