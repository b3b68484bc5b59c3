"""Kubernetes `Status` errors: every failure a client sees is one of these.

Handlers raise `ApiError`; the application turns it into a `Status` body with the matching
HTTP code. Field problems are `FieldError`s, collected by validation and reported as the
causes of one 422 Invalid, worded as kube-apiserver words them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field. `type` is the Kubernetes cause reason, e.g. FieldValueInvalid."""

    type: str
    field: str
    detail: str = ""
    value: Any = None

    def message(self) -> str:
        label = _FIELD_LABELS.get(self.type, "Invalid value")
        if self.type in ("FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong"):
            text = label
        else:
            text = f"{label}: {_render_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def cause(self) -> dict[str, Any]:
        return {"reason": self.type, "message": self.message(), "field": self.field}


def invalid_field(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", field, detail, value)


def required_field(field: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", field, detail)


def unsupported_field(field: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(f'"{s}"' for s in supported)
    return FieldError("FieldValueNotSupported", field, detail, value)


def type_invalid_field(field: str, value: Any, type_name: str) -> FieldError:
    """A value of the wrong JSON type, e.g. a number where a string belongs."""
    return FieldError("FieldValueTypeInvalid", field, f"must be of type {type_name}", value)


def forbidden_field(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, detail)


def duplicate_field(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", field, "", value)


_FIELD_LABELS = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueRequired": "Required value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "FieldValueNotFound": "Not found",
    "FieldValueTypeInvalid": "Invalid value",
}


def _render_value(value: Any) -> str:
    """Go's %#v of a field value; a tuple of strings (never decoded from JSON, so only
    passed on purpose) as a Go `[]string{...}`, as kube reports `spec.clusterIPs`."""
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(orjson.dumps(v).decode() for v in value) + "}"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


class ApiError(Exception):
    """A failed request, as Kubernetes reports it."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _qualified(kind_plural: str, group: str) -> str:
    return f"{kind_plural}.{group}" if group else kind_plural


def _details(name: str, plural: str, group: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    details.update(extra)
    return details


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(plural, group)} "{name}" not found',
        details=_details(name, plural, group),
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(plural, group)} "{name}" already exists',
        details=_details(name, plural, group),
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}',
        details=_details(name, plural, group),
    )


def invalid(kind: str, group: str, name: str, causes: list[FieldError]) -> ApiError:
    summary = ", ".join(f"{c.field}: {c.message()}" for c in causes)
    text = f"[{summary}]" if len(causes) > 1 else summary
    return ApiError(
        422,
        "Invalid",
        f'{_qualified(kind, group)} "{name}" is invalid: {text}',
        details=_details(name, kind, group, causes=[c.cause() for c in causes]),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> ApiError:
    return ApiError(401, "Unauthorized", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def forbidden_on(plural: str, group: str, name: str, why: str) -> ApiError:
    """A 403 about a resource (or, with no `plural`, a path), worded as kube's NewForbidden."""
    if not plural:
        return ApiError(403, "Forbidden", f"forbidden: {why}")
    subject = f'{_qualified(plural, group)} "{name}"' if name else _qualified(plural, group)
    details = _details(name, plural, group)
    if not name:
        del details["name"]
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", details=details)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def not_acceptable(message: str) -> ApiError:
    return ApiError(406, "NotAcceptable", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_large(message: str = "Request entity too large: limit is 3145728") -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", message)


def unsupported_media_type(content_type: str, accepted: tuple[str, ...] = ()) -> ApiError:
    accepted = accepted or (
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
        "application/strategic-merge-patch+json",
    )
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format ({content_type}) - accepted media "
        f"types include: {', '.join(accepted)}",
    )


def internal(message: str = "an internal error occurred") -> ApiError:
    return ApiError(500, "InternalError", message)


def encode_status(error: ApiError) -> bytes:
    return orjson.dumps(error.status())
