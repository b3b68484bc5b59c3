"""Access reviews: a client asks what it may do and the authorizer answers.

`SelfSubjectAccessReview` (what `kubectl auth can-i` sends) names either resource attributes
(verb, group, resource, namespace, name) or non-resource ones (verb, path); the answer is the
same review with `status.allowed` and, when refused, the authorizer's reason.
`SelfSubjectRulesReview` (`kubectl auth can-i --list`) names a namespace; the answer lists the
RBAC rules that apply to the caller there, resource and non-resource rules apart, as
upstream's RBAC rule resolver does. `SelfSubjectReview` (`kubectl auth whoami`) answers with
the caller's user info; `TokenReview`, with a bearer token's (what a component that takes
tokens, a webhook or a metrics server, asks about its callers). Nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from unistack.apiserver import auth, codec, errors
from unistack.apiserver.rbac.authorizer import RbacAuthorizer
from unistack.apiserver.request import Request, User
from unistack.apiserver.resources import ResourceType
from unistack.apiserver.responses import Response

Obj = dict[str, Any]


def self_subject_access_review(
    req: Request, rt: ResourceType, authorizer: auth.Authorizer
) -> Response:
    review = codec.decode_object(req.body, req.content_type)
    codec.check_type(rt, review)
    spec = review.get("spec")
    if not isinstance(spec, dict):
        spec = {}
    attributes = _attributes(rt, spec)
    reason = authorizer.authorize(req.user, attributes)
    status: Obj = {"allowed": reason is None}
    if reason:
        status["reason"] = reason
    return _answer(rt, spec, status)


def _answer(rt: ResourceType, spec: Any, status: Obj) -> Response:
    """A review answered: created (201), never stored."""
    answer = {
        "kind": rt.kind,
        "apiVersion": rt.api_version,
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": status,
    }
    return Response(201, orjson.dumps(answer))


def self_subject_rules_review(req: Request, rt: ResourceType, rbac: RbacAuthorizer) -> Response:
    review = codec.decode_object(req.body, req.content_type)
    codec.check_type(rt, review)
    spec = review.get("spec")
    namespace = spec.get("namespace") if isinstance(spec, dict) else None
    if not namespace or not isinstance(namespace, str):
        raise errors.bad_request("no namespace on request")
    rules = rbac.rules_for(req.user, namespace)
    resource_rules = [r.to_json() for r in rules if not r.non_resource_urls]
    non_resource_rules = [r.to_json() for r in rules if r.non_resource_urls]
    status = {
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": False,
    }
    return _answer(rt, spec, status)


def self_subject_review(req: Request, rt: ResourceType) -> Response:
    """Who the caller is, as the authenticator named them (`kubectl auth whoami`)."""
    review = codec.decode_object(req.body, req.content_type)
    codec.check_type(rt, review)
    answer = {
        "kind": rt.kind,
        "apiVersion": rt.api_version,
        "metadata": {"creationTimestamp": None},
        "status": {"userInfo": _user_info(req.user)},
    }
    return Response(201, orjson.dumps(answer))


def token_review(
    req: Request,
    rt: ResourceType,
    review_token: Callable[[str, list[str]], tuple[User | None, list[str]]],
) -> Response:
    """Whose a token is, for the audiences asked (the API server's when none are), as the
    authenticator sees it; an unknown token is answered, not refused."""
    review = codec.decode_object(req.body, req.content_type)
    codec.check_type(rt, review)
    spec = review.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    token, audiences = spec.get("token"), spec.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        problem = errors.invalid_field("spec.audiences", audiences, "must be a list of strings")
        raise errors.invalid(rt.kind, rt.group, "", [problem])
    user, matched = review_token(token, audiences) if isinstance(token, str) else (None, [])
    status: Obj = {"user": {}}
    if user is not None:
        status = {"authenticated": True, "user": _user_info(user), "audiences": matched}
    return _answer(rt, spec, status)


def _user_info(user: User) -> Obj:
    info: Obj = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    return info


def _attributes(rt: ResourceType, spec: Obj) -> auth.Attributes:
    resource = spec.get("resourceAttributes")
    other = spec.get("nonResourceAttributes")
    if isinstance(resource, dict) == isinstance(other, dict):
        raise errors.invalid(
            rt.kind,
            rt.group,
            "",
            [
                errors.invalid_field(
                    "spec.resourceAttributes",
                    resource,
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )
            ],
        )
    if isinstance(resource, dict):
        return auth.Attributes(
            verb=str(resource.get("verb", "")),
            path="",
            group=str(resource.get("group", "")),
            resource=str(resource.get("resource", "")),
            subresource=str(resource.get("subresource", "")),
            namespace=str(resource.get("namespace", "")),
            name=str(resource.get("name", "")),
        )
    assert isinstance(other, dict)
    return auth.Attributes(verb=str(other.get("verb", "")), path=str(other.get("path", "")))
