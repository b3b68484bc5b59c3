"""Request bodies in, response bodies out.

Request bodies are JSON or YAML (as kube-apiserver accepts). Responses are built from the
stored JSON bytes without re-encoding where possible: a LIST is the stored items joined into
one document. Objects stored under one version of a multi-version kind get their apiVersion
rewritten on the way out (conversion strategy None).
"""

from __future__ import annotations

from typing import Any

import orjson
import yaml

from unistack.apiserver import errors, protobuf
from unistack.apiserver.resources import ResourceType

Obj = dict[str, Any]

_YAML_TYPES = ("application/yaml", "application/apply-patch+yaml", "application/x-yaml")


def decode_body(body: bytes, content_type: str) -> Any:
    """Decode a request body; malformed input is a 400 that names the problem."""
    if not body.strip():
        raise errors.bad_request("the request body is empty")
    if content_type == protobuf.MEDIA_TYPE:  # typed kubectl commands (`create namespace`)
        return protobuf.decode(body)
    try:
        if content_type in _YAML_TYPES:
            return yaml.safe_load(body)
        return orjson.loads(body)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise errors.bad_request(
            f"the body of the request could not be decoded: {_first_line(exc)}"
        ) from None


def decode_object(body: bytes, content_type: str) -> Obj:
    value = decode_body(body, content_type)
    if not isinstance(value, dict):
        raise errors.bad_request(
            f"the body of the request must be a JSON object, not {type(value).__name__}"
        )
    return value


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def check_type(rt: ResourceType, obj: Obj) -> None:
    """The body's kind and apiVersion, when given, must be the endpoint's."""
    kind = obj.get("kind")
    api_version = obj.get("apiVersion")
    if kind is None and api_version is None:
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        return
    if kind != rt.kind or api_version not in (rt.api_version, None):
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({rt.api_version})"
            if kind == rt.kind
            else f"Object 'Kind' is {kind!r} but the endpoint serves {rt.kind!r}"
        )
    obj["apiVersion"] = rt.api_version


def load(value: bytes) -> Obj:
    obj: Obj = orjson.loads(value)
    return obj


def dump(obj: Any) -> bytes:
    return orjson.dumps(obj)


def for_version(rt: ResourceType, value: bytes) -> bytes:
    """The stored bytes as `rt`'s version serves them."""
    if not rt.custom or f'"apiVersion":"{rt.api_version}"'.encode() in value[:200]:
        return value
    obj = orjson.loads(value)
    obj["apiVersion"] = rt.api_version
    return orjson.dumps(obj)


def list_document(
    rt: ResourceType, items: list[bytes], revision: int, continue_token: str, remaining: int
) -> bytes:
    """A `<Kind>List`, built by joining the items' JSON."""
    meta: Obj = {"resourceVersion": str(revision)}
    if continue_token:
        meta["continue"] = continue_token
        if remaining:
            meta["remainingItemCount"] = remaining
    head = orjson.dumps({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta})
    return head[:-1] + b',"items":[' + b",".join(items) + b"]}"
