"""User impersonation, as kube-apiserver's impersonation filter: a caller allowed the
`impersonate` verb acts as someone else through the `Impersonate-User`, `Impersonate-Group`
(repeated), `Impersonate-Uid` and `Impersonate-Extra-<key>` headers, which is what
`kubectl --as/--as-group/--as-uid` sends (`kubectl auth can-i --as
system:serviceaccount:NS:NAME` asks what an account may do).

Each part is authorized on its own before the request is: the user as `users` (or, for a
service account's name, `serviceaccounts` in its namespace), each group as `groups`, the uid
as `authentication.k8s.io/uids`, each extra value as `authentication.k8s.io/userextras/<key>`.
A refusal is kube's 403 naming the impersonated resource; groups, uid or extras without a user
are a 400. The impersonated user gets the groups asked for (a service account's own groups
when none are), plus `system:authenticated` (`system:unauthenticated` for
`system:anonymous`), as upstream adds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from unistack.apiserver import auth, errors
from unistack.apiserver.request import User
from unistack.apiserver.serviceaccounts import service_account_user, split_user_name

PREFIX = "impersonate-"
USER_HEADER = "impersonate-user"
GROUP_HEADER = "impersonate-group"
UID_HEADER = "impersonate-uid"
EXTRA_PREFIX = "impersonate-extra-"
AUTHENTICATION_GROUP = "authentication.k8s.io"


@dataclass(frozen=True, slots=True)
class Wanted:
    """Who the caller asks to be, from the headers."""

    user: str = ""
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, str], ...] = ()  # (key, value), a key once per value


def wanted(headers: Iterable[tuple[str, str]]) -> Wanted:
    """The impersonation asked for by the request's headers (lower-cased names, in order)."""
    user, uid = "", ""
    groups: list[str] = []
    extra: list[tuple[str, str]] = []
    for name, value in headers:
        if not name.startswith(PREFIX):
            continue
        if name == USER_HEADER:
            user = value
        elif name == GROUP_HEADER:
            groups.append(value)
        elif name == UID_HEADER:
            uid = value
        elif name.startswith(EXTRA_PREFIX):
            # keys travel percent-encoded (RFC 3986), as client-go writes them
            extra.append((unquote(name.removeprefix(EXTRA_PREFIX)), value))
    return Wanted(user, tuple(groups), uid, tuple(extra))


def _checks(want: Wanted) -> list[tuple[auth.Attributes, str]]:
    """What must be allowed, each with the name it is refused under."""
    checks: list[tuple[auth.Attributes, str]] = []
    account = split_user_name(want.user)
    if account is not None:
        namespace, name = account
        attributes = auth.Attributes(
            "impersonate", "", "", "serviceaccounts", namespace=namespace, name=name
        )
        checks.append((attributes, name))
    else:
        checks.append((auth.Attributes("impersonate", "", "", "users", name=want.user), want.user))
    for group in want.groups:
        checks.append((auth.Attributes("impersonate", "", "", "groups", name=group), group))
    if want.uid:
        uids = auth.Attributes("impersonate", "", AUTHENTICATION_GROUP, "uids", name=want.uid)
        checks.append((uids, want.uid))
    for key, value in want.extra:
        extras = auth.Attributes(
            "impersonate", "", AUTHENTICATION_GROUP, "userextras", key, name=value
        )
        checks.append((extras, value))
    return checks


def impersonate(requester: User, want: Wanted, authorizer: auth.Authorizer) -> User:
    """The user `requester` acts as; raises 400 or 403 as kube-apiserver does."""
    if not want.user:
        parts = [f"{GROUP_HEADER}: {g}" for g in want.groups]
        parts += [f"{UID_HEADER}: {want.uid}"] if want.uid else []
        parts += [f"{EXTRA_PREFIX}{k}: {v}" for k, v in want.extra]
        raise errors.bad_request(f"requested [{' '.join(parts)}] without impersonating a user")
    for attributes, name in _checks(want):
        reason = authorizer.authorize(requester, attributes)
        if reason is not None:
            message = auth.forbidden_message(requester, attributes, reason)
            resource = attributes.resource
            if attributes.subresource:
                resource += f"/{attributes.subresource}"
            raise errors.forbidden_on(resource, attributes.group, name, message)
    groups = list(want.groups)
    account = split_user_name(want.user)
    if not groups and account is not None:  # a service account's own groups
        groups = list(service_account_user(*account, want.uid).groups)
    everyone = "system:unauthenticated" if want.user == "system:anonymous" else auth.AUTHENTICATED
    if everyone not in groups:
        groups.append(everyone)
    return User(want.user, want.uid, tuple(groups))
