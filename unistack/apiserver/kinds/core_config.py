"""ConfigMap, Secret and ServiceAccount: columns, defaulting and validation.

Data keys must be valid config keys (`[-._a-zA-Z0-9]+`), Secret `data` values base64, and a
Secret of a well-known `type` must carry that type's keys. A Secret's `stringData` is folded
into `data` on the way in, as upstream's conversion does. `immutable: true` freezes the data.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from unistack.apiserver.errors import FieldError, forbidden_field, invalid_field, required_field
from unistack.apiserver.kinds import cells
from unistack.apiserver.kinds.checks import check_immutable, config_key_problems, type_error
from unistack.apiserver.kinds.objects import Obj, dict_of, dig
from unistack.apiserver.resources import Column, ResourceType

MAX_DATA_SIZE = 1024 * 1024
REDACTED = "<secret contents redacted>"
IMMUTABLE_WHEN_SET = "field is immutable when `immutable` is set"
_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}
_JSON_KEYS = {
    "kubernetes.io/dockercfg": ".dockercfg",
    "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
}


def check_data_keys(data: Any, path: str) -> list[FieldError]:
    """Each key of a data map is a config key; values are strings."""
    if data is None:
        return []
    if not isinstance(data, dict):
        return [type_error(path, data, "object")]
    errs: list[FieldError] = []
    for key, value in data.items():
        field = f"{path}[{key}]"
        errs += [invalid_field(field, key, p) for p in config_key_problems(str(key))]
        if not isinstance(value, str):
            errs.append(type_error(field, value, "string"))
    return errs


def _check_base64(data: Any, path: str, *, redact: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    for key, value in dict_of(data).items():
        if isinstance(value, str) and (problem := base64_problem(value)):
            errs.append(invalid_field(f"{path}[{key}]", REDACTED if redact else value, problem))
    return errs


def base64_problem(text: str) -> str:
    """Go's decoder error for invalid standard base64, or "" when it decodes."""
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return f"illegal base64 data at input byte {_first_bad_byte(text)}"
    return ""


def _first_bad_byte(text: str) -> int:
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    for i, char in enumerate(text):
        if char not in alphabet:
            return i
    return len(text) - len(text) % 4


def _data_size(obj: Obj, *fields: str) -> int:
    return sum(len(str(k)) + len(str(v)) for f in fields for k, v in dict_of(obj.get(f)).items())


def _check_size(obj: Obj, *fields: str) -> list[FieldError]:
    if _data_size(obj, *fields) <= MAX_DATA_SIZE:
        return []
    return [FieldError("FieldValueTooLong", "", f"must have at most {MAX_DATA_SIZE} bytes")]


def _check_frozen(new: Obj, old: Obj | None, *fields: str) -> list[FieldError]:
    """Once `immutable` is true, it stays true and the data stays as it is."""
    if old is None or old.get("immutable") is not True:
        return []
    errs = (
        [] if new.get("immutable") is True else [forbidden_field("immutable", IMMUTABLE_WHEN_SET)]
    )
    for field in fields:
        if new.get(field) != old.get(field):
            errs.append(forbidden_field(field, IMMUTABLE_WHEN_SET))
    return errs


def validate_config_map(config_map: Obj, old: Obj | None) -> list[FieldError]:
    errs = check_data_keys(config_map.get("data"), "data")
    errs += check_data_keys(config_map.get("binaryData"), "binaryData")
    errs += _check_base64(config_map.get("binaryData"), "binaryData", redact=False)
    for key in dict_of(config_map.get("binaryData")):
        if key in dict_of(config_map.get("data")):
            detail = "duplicate of key present in binaryData"
            errs.append(invalid_field(f"data[{key}]", key, detail))
    errs += _check_size(config_map, "data", "binaryData")
    return errs + _check_frozen(config_map, old, "data", "binaryData")


CONFIG_MAP = ResourceType(
    group="",
    version="v1",
    kind="ConfigMap",
    plural="configmaps",
    singular="configmap",
    namespaced=True,
    short_names=("cm",),
    columns=(
        Column("Data", cells.length_of("data", "binaryData"), description="Number of keys."),
        cells.AGE_COLUMN,
    ),
    validator=validate_config_map,
)


def default_secret(secret: Obj) -> None:
    """Type Opaque; `stringData` entries base64-encoded into `data` and then dropped."""
    if secret.get("type") in (None, ""):
        secret["type"] = "Opaque"
    string_data = secret.get("stringData")
    if not isinstance(string_data, dict):
        return
    if secret.get("data") is None:
        secret["data"] = {}
    data = secret["data"]
    if isinstance(data, dict):
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        del secret["stringData"]


def validate_secret(secret: Obj, old: Obj | None) -> list[FieldError]:
    errs = check_data_keys(secret.get("data"), "data")
    errs += _check_base64(secret.get("data"), "data", redact=True)
    errs += _check_secret_type(secret, str(secret.get("type") or ""))
    errs += _check_size(secret, "data")
    if old is not None:
        errs += check_immutable("type", secret.get("type"), old.get("type"))
    return errs + _check_frozen(secret, old, "data")


def _check_secret_type(secret: Obj, kind: str) -> list[FieldError]:
    data = dict_of(secret.get("data"))
    if kind == "kubernetes.io/service-account-token":
        key = "kubernetes.io/service-account.name"
        if not dig(secret, "metadata", "annotations", key):
            return [required_field(f"metadata.annotations[{key}]")]
        return []
    if kind == "kubernetes.io/basic-auth" and "username" not in data and "password" not in data:
        return [required_field("data[username]"), required_field("data[password]")]
    errs = [
        required_field(f"data[{key}]") for key in _REQUIRED_KEYS.get(kind, ()) if key not in data
    ]
    json_key = _JSON_KEYS.get(kind)
    if json_key and json_key in data and not errs:
        errs += _check_json_value(f"data[{json_key}]", data[json_key])
    return errs


def _check_json_value(field: str, encoded: Any) -> list[FieldError]:
    try:
        json.loads(base64.b64decode(str(encoded), validate=True))
    except (binascii.Error, ValueError) as exc:
        return [invalid_field(field, REDACTED, str(exc))]
    return []


SECRET = ResourceType(
    group="",
    version="v1",
    kind="Secret",
    plural="secrets",
    singular="secret",
    namespaced=True,
    columns=(
        Column(
            "Type",
            cells.text_at("type"),
            description="Used to facilitate programmatic handling of secret data.",
        ),
        Column("Data", cells.length_of("data"), description="Number of keys."),
        cells.AGE_COLUMN,
    ),
    defaulter=default_secret,
    validator=validate_secret,
)

SERVICE_ACCOUNT = ResourceType(
    group="",
    version="v1",
    kind="ServiceAccount",
    plural="serviceaccounts",
    singular="serviceaccount",
    namespaced=True,
    short_names=("sa",),
    extra_subresources=("token",),  # tokenrequest.token_request: TokenRequest
    columns=(
        Column("Secrets", cells.length_of("secrets"), description="Number of secrets."),
        cells.AGE_COLUMN,
    ),
)
