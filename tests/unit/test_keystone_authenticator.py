"""Keystone tokens on the Kubernetes API, without I/O: who a token is, when it is refused."""

from __future__ import annotations

import dataclasses
from typing import Any

from cryptography.fernet import Fernet

from unistack.apiserver.auth import (
    Attributes,
    PrivilegedGroups,
    UnionAuthenticator,
    UnionAuthorizer,
)
from unistack.apiserver.keystone import KeystoneAuthenticator, keystone_user
from unistack.apiserver.request import User
from unistack.tokens import Claims, TokenCodec, revokes

NOW = 1_800_000_000.0
CODEC = TokenCodec([Fernet.generate_key()])


def claims(**changes: Any) -> Claims:
    base = Claims(
        "u1",
        ("password",),
        NOW - 10,
        NOW + 3600,
        ("audit1",),
        project_id="p1",
        user_name="alice",
        role_names=("member", "reader"),
    )
    return dataclasses.replace(base, **changes)


class Revoked:
    def __init__(self, *events: dict[str, object]) -> None:
        self.events = events

    def revoked(self, token: Claims) -> bool:
        return any(revokes(event, token) for event in self.events)


def bearer(token: Claims, codec: TokenCodec = CODEC) -> str:
    return "Bearer " + codec.seal(token)


def test_a_token_maps_to_its_user_roles_and_project() -> None:
    user = keystone_user(claims())
    assert (user.name, user.uid) == ("alice", "u1")
    assert user.groups == (
        "keystone:role:member",
        "keystone:role:reader",
        "keystone:project:p1",
        "system:authenticated",
    )
    admin = keystone_user(claims(role_names=("admin", "member")))
    assert "system:masters" in admin.groups
    # a Keystone user named like one of kube's (or the supervisor's) is not that user
    posing = keystone_user(claims(user_name="system:unistack:controllers"))
    assert posing.name == "keystone:system:unistack:controllers"


def test_the_authenticator_opens_checks_expiry_and_revocation() -> None:
    auth = KeystoneAuthenticator(CODEC, clock=lambda: NOW)
    assert auth.authenticate(bearer(claims())) == keystone_user(claims())
    assert auth.authenticate(bearer(claims(expires_at=NOW - 1))) is None
    assert auth.authenticate(bearer(claims(project_id=None))) is None  # unscoped: no roles
    other_keys = TokenCodec([Fernet.generate_key()])
    assert auth.authenticate(bearer(claims(), other_keys)) is None
    assert auth.authenticate("Bearer not-a-token") is None
    assert auth.authenticate(None) is None
    revoked = KeystoneAuthenticator(CODEC, Revoked({"audit_id": "audit1"}), clock=lambda: NOW)
    assert revoked.authenticate(bearer(claims())) is None


def test_revocation_events_cover_what_they_name() -> None:
    token = claims(trust_id="t1")
    assert revokes({"audit_id": "audit1"}, token)
    assert revokes({"trust_id": "t1", "issued_before": 0}, token)
    assert revokes({"user_id": "u1", "issued_before": NOW}, token)
    assert not revokes({"user_id": "u1", "issued_before": NOW - 20}, token)  # issued after
    assert revokes({"project_id": "p1", "issued_before": NOW}, token)
    assert not revokes({"user_id": "u2", "issued_before": NOW}, token)


def test_union_asks_each_in_turn() -> None:
    auth = UnionAuthenticator(KeystoneAuthenticator(CODEC, clock=lambda: NOW))
    assert auth.authenticate(bearer(claims())) is not None
    assert UnionAuthenticator().authenticate(bearer(claims())) is None


def test_a_keystone_admin_is_privileged_and_a_member_is_not() -> None:
    """The admin role makes a Keystone user a member of system:masters; a member, or any
    other authenticated user outside it, is refused by the privileged-group authorizer (RBAC
    decides for them)."""
    attributes = Attributes("list", "/api/v1/pods", resource="pods")
    authorizer = UnionAuthorizer(PrivilegedGroups())
    assert authorizer.authorize(keystone_user(claims()), attributes) == ""
    admin = keystone_user(claims(role_names=("admin",)))
    assert authorizer.authorize(admin, attributes) is None
    component = User("someone", groups=("system:authenticated",))
    assert authorizer.authorize(component, attributes) == ""
