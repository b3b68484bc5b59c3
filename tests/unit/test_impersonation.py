"""Impersonation's parsing and checks, with an authorizer that allows a fixed set of
(group, resource, subresource, namespace, name): every part asked for is checked on its own,
the refusal names the impersonated resource, and the user gets upstream's groups."""

from __future__ import annotations

import pytest

from unistack.apiserver import errors
from unistack.apiserver.auth import Attributes
from unistack.apiserver.impersonation import impersonate, wanted
from unistack.apiserver.request import User

ALICE = User("alice", groups=("system:authenticated",))


class Allowing:
    def __init__(self, *allowed: tuple[str, str, str, str, str]) -> None:
        self.allowed = set(allowed)
        self.asked: list[Attributes] = []

    def authorize(self, user: User, attributes: Attributes) -> str | None:
        self.asked.append(attributes)
        key = (
            attributes.group,
            attributes.resource,
            attributes.subresource,
            attributes.namespace,
            attributes.name,
        )
        return None if attributes.verb == "impersonate" and key in self.allowed else ""


def test_headers_in_order_with_repeated_groups_and_encoded_extra_keys() -> None:
    want = wanted(
        [
            ("authorization", "Bearer x"),
            ("impersonate-user", "jane"),
            ("impersonate-group", "devs"),
            ("impersonate-group", "ops"),
            ("impersonate-uid", "u-1"),
            ("impersonate-extra-acme.com%2Fteam", "blue"),
        ]
    )
    assert (want.user, want.groups, want.uid) == ("jane", ("devs", "ops"), "u-1")
    assert want.extra == (("acme.com/team", "blue"),)


def test_each_part_is_checked_and_the_user_gets_the_groups_asked_for() -> None:
    authorizer = Allowing(
        ("", "users", "", "", "jane"),
        ("", "groups", "", "", "devs"),
        ("authentication.k8s.io", "uids", "", "", "u-1"),
        ("authentication.k8s.io", "userextras", "scopes", "", "view"),
    )
    want = wanted(
        [
            ("impersonate-user", "jane"),
            ("impersonate-group", "devs"),
            ("impersonate-uid", "u-1"),
            ("impersonate-extra-scopes", "view"),
        ]
    )
    user = impersonate(ALICE, want, authorizer)
    assert user == User("jane", "u-1", ("devs", "system:authenticated"))
    assert len(authorizer.asked) == 4


def test_a_refused_part_is_a_403_naming_it() -> None:
    authorizer = Allowing(("", "users", "", "", "jane"))
    want = wanted([("impersonate-user", "jane"), ("impersonate-group", "system:masters")])
    with pytest.raises(errors.ApiError) as refused:
        impersonate(ALICE, want, authorizer)
    assert refused.value.code == 403
    assert refused.value.message == (
        'groups "system:masters" is forbidden: User "alice" cannot impersonate resource '
        '"groups" in API group "" at the cluster scope'
    )


def test_a_service_account_is_checked_in_its_namespace_and_gets_its_groups() -> None:
    authorizer = Allowing(("", "serviceaccounts", "", "team", "builder"))
    user = impersonate(
        ALICE, wanted([("impersonate-user", "system:serviceaccount:team:builder")]), authorizer
    )
    assert user.groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:team",
        "system:authenticated",
    )


def test_groups_without_a_user_are_a_bad_request() -> None:
    with pytest.raises(errors.ApiError) as refused:
        impersonate(ALICE, wanted([("impersonate-group", "devs")]), Allowing())
    assert refused.value.code == 400
    assert "without impersonating a user" in refused.value.message


def test_anonymous_is_unauthenticated() -> None:
    authorizer = Allowing(("", "users", "", "", "system:anonymous"))
    user = impersonate(ALICE, wanted([("impersonate-user", "system:anonymous")]), authorizer)
    assert user.groups == ("system:unauthenticated",)
