"""The `serviceaccounts/<name>/token` subresource: TokenRequest, a token for a ServiceAccount.

`POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token` (what `kubectl create token` and
the agent, for a pod's projected token, send; JSON or kubectl's protobuf) answers 201 with a
token `serviceaccounts.TokenIssuer` signed and its expiry. As upstream: audiences default to
the API server's, `expirationSeconds` to one hour and no fewer than ten minutes; a bound
object (a Pod, a Secret or a Node) must exist, with the uid given if any (409 otherwise); a
Pod must run as that ServiceAccount (400). Nothing is stored. `unistack.apiserver.app` routes
the POST here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from unistack import store as storage
from unistack.apiserver import codec, errors, lifecycle, noderestriction
from unistack.apiserver.request import Request
from unistack.apiserver.resources import ResourceType
from unistack.apiserver.responses import Response
from unistack.apiserver.routing import ResourcePath
from unistack.apiserver.serviceaccounts import (
    BOUND_KINDS,
    DEFAULT_EXPIRATION,
    MAX_EXPIRATION,
    MIN_EXPIRATION,
    Bound,
    TokenIssuer,
)

Obj = dict[str, Any]


async def token_request(
    req: Request, rt: ResourceType, rp: ResourcePath, store: storage.ObjectStore,
    issuer: TokenIssuer,
) -> Response:  # fmt: skip
    """`serviceaccounts/<name>/token`: a token for the ServiceAccount, 201 with it."""
    assert rp.name is not None and rp.namespace is not None
    body = codec.decode_object(req.body, req.content_type)
    if body.get("kind") not in (None, "TokenRequest"):
        raise errors.bad_request(f"a TokenRequest is expected, not {body.get('kind')!r}")
    spec = body.get("spec")
    spec = dict(spec) if isinstance(spec, dict) else {}
    audiences = _audiences(spec, rp.name, issuer)
    expiration = _expiration(spec, rp.name)
    account = await _get(store, rt, rp.namespace, rp.name)
    bound, node = await _bound(spec.get("boundObjectRef"), rp, store, account)
    requester = noderestriction.node_of(req.user)
    if requester is not None:  # a node's token outlives none of its own pods
        why = noderestriction.token_refusal(requester, bound, node)
        if why is not None:
            raise errors.forbidden_on(rt.plural, rt.group, rp.name, why)
    token, expires = issuer.issue(rp.namespace, account, audiences, expiration, bound, node)
    spec.update(audiences=audiences, expirationSeconds=expiration)
    meta = account["metadata"]
    answer = {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": rp.namespace,
            "creationTimestamp": lifecycle.timestamp(datetime.now(UTC)),
        },
        "spec": spec,
        "status": {
            "token": token,
            "expirationTimestamp": lifecycle.timestamp(datetime.fromtimestamp(expires, UTC)),
        },
    }
    return Response(201, orjson.dumps(answer))


def _invalid(name: str, field: str, value: Any, detail: str) -> errors.ApiError:
    problem = errors.invalid_field(field, value, detail)
    return errors.invalid("TokenRequest", "authentication.k8s.io", name, [problem])


def _audiences(spec: Obj, name: str, issuer: TokenIssuer) -> list[str]:
    audiences = spec.get("audiences")
    if audiences in (None, []):
        return list(issuer.audiences)
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        raise _invalid(name, "spec.audiences", audiences, "must be a list of non-empty strings")
    return audiences


def _expiration(spec: Obj, name: str) -> int:
    seconds = spec.get("expirationSeconds")
    if seconds is None:
        return DEFAULT_EXPIRATION
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise _invalid(name, "spec.expirationSeconds", seconds, "must be an integer")
    if seconds < MIN_EXPIRATION:
        detail = "may not specify a duration less than 10 minutes"
        raise _invalid(name, "spec.expirationSeconds", seconds, detail)
    if seconds > MAX_EXPIRATION:
        detail = "may not specify a duration larger than 2^32 seconds"
        raise _invalid(name, "spec.expirationSeconds", seconds, detail)
    return seconds


async def _get(store: storage.ObjectStore, rt: ResourceType, namespace: str, name: str) -> Obj:
    try:
        stored = await store.get(rt.key(namespace, name))
    except storage.NotFound:
        raise errors.not_found(rt.plural, rt.group, name) from None
    obj: Obj = orjson.loads(stored.value)
    return obj


async def _bound(
    ref: Any, rp: ResourcePath, store: storage.ObjectStore, account: Obj
) -> tuple[Bound | None, str]:
    """The object a token is bound to, checked, and the node a bound pod runs on."""
    if ref is None:
        return None, ""
    assert rp.name is not None and rp.namespace is not None
    if not isinstance(ref, dict):
        raise _invalid(rp.name, "spec.boundObjectRef", ref, "must be an object")
    kind = ref.get("kind")
    if kind not in BOUND_KINDS:
        supported = ", ".join(f'"{k}"' for k in BOUND_KINDS)
        detail = f"supported values: {supported}"
        raise _invalid(rp.name, "spec.boundObjectRef.kind", kind, detail)
    if ref.get("apiVersion") not in (None, "", "v1"):
        detail = 'supported values: "v1"'
        raise _invalid(rp.name, "spec.boundObjectRef.apiVersion", ref.get("apiVersion"), detail)
    name = ref.get("name")
    if not isinstance(name, str) or not name:
        problem = errors.required_field("spec.boundObjectRef.name")
        raise errors.invalid("TokenRequest", "authentication.k8s.io", rp.name, [problem])
    bound_rt = BOUND_KINDS[kind]
    obj = await _get(store, bound_rt, rp.namespace, name)
    uid = str(obj["metadata"].get("uid", ""))
    if ref.get("uid") and ref["uid"] != uid:
        why = (
            f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
            "record. The object might have been deleted and then recreated"
        )
        raise errors.conflict(bound_rt.plural, bound_rt.group, name, why)
    node = ""
    if kind == "Pod":
        spec = obj.get("spec") or {}
        if spec.get("serviceAccountName", "default") != account["metadata"]["name"]:
            raise errors.bad_request(
                f'cannot bind token for serviceaccount "{rp.name}" to pod running with '
                "different serviceaccount name."
            )
        node = str(spec.get("nodeName") or "")
    return Bound(kind, name, uid), node
