"""Request bodies in, response bodies out.

Request bodies are JSON or YAML (as kube-apiserver accepts); YAML is read the way
sigs.k8s.io/yaml reads it, into JSON values only (map keys become strings, timestamps stay
strings), so nothing the store cannot encode gets past decoding. Responses are built from the
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
_APPLY_TYPE = "application/apply-patch+yaml"


class _JsonYamlLoader(yaml.SafeLoader):
    """A SafeLoader that leaves timestamps as strings, as sigs.k8s.io/yaml does."""


_JsonYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def decode_body(body: bytes, content_type: str) -> Any:
    """Decode a request body; malformed input is a 400 that names the problem."""
    if not body.strip():
        raise errors.bad_request("the request body is empty")
    if content_type == protobuf.MEDIA_TYPE:  # typed kubectl commands (`create namespace`)
        return protobuf.decode(body)
    try:
        if content_type in _YAML_TYPES:
            return _json_values(yaml.load(body, Loader=_JsonYamlLoader))
        return orjson.loads(body)
    except (orjson.JSONDecodeError, yaml.YAMLError, _NotJson) as exc:
        if content_type == _APPLY_TYPE:  # kube's wording for a bad apply body
            raise errors.bad_request(f"error decoding YAML: {_first_line(exc)}") from None
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


class _NotJson(ValueError):
    """A YAML value with no JSON form (a binary, a set, a null map key)."""


def _json_values(value: Any) -> Any:
    """The YAML document as JSON values: `8080:` and `on:` are keys too, and become strings."""
    if isinstance(value, dict):
        return {_json_key(key): _json_values(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_values(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(2**63) <= value < 2**64 else float(value)  # as JSON numbers decode
    if value is None or isinstance(value, str | bool | float):
        return value
    raise _NotJson(f"unsupported YAML value of type {type(value).__name__}: {value!r:.80}")


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        return str(int(key)) if key.is_integer() else repr(key)
    raise _NotJson(f"unsupported map key of type {type(key).__name__}: {key!r:.80}")


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


_LIST_GROUP = 200  # items joined per part of a list body


def list_parts(
    rt: ResourceType, items: list[bytes], revision: int, continue_token: str, remaining: int
) -> list[bytes]:
    """A `<Kind>List` as parts that concatenate to its JSON, built from the items' JSON."""
    meta: Obj = {"resourceVersion": str(revision)}
    if continue_token:
        meta["continue"] = continue_token
        if remaining:
            meta["remainingItemCount"] = remaining
    head = orjson.dumps({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta})
    parts = [head[:-1] + b',"items":[']
    for start in range(0, len(items), _LIST_GROUP):
        if start:
            parts.append(b",")
        parts.append(b",".join(items[start : start + _LIST_GROUP]))
    parts.append(b"]}")
    return parts
