"""Kubernetes protobuf request bodies, decoded into the JSON objects they stand for.

kubectl's typed commands (`create namespace`, `create secret`, `create deployment`, ...) send
`application/vnd.kubernetes.protobuf`: the magic `k8s\\x00`, then a `runtime.Unknown` envelope
holding the body's apiVersion, kind and the object's own bytes. `decode` turns such a body into
the dict the same Go object serialises to as JSON (camelCase names, zero values left out as
`omitempty` leaves them out, bytes as base64, times as RFC 3339, IntOrString as a number or a
string, quantities as strings), so `codec` hands handlers one form whatever the client sent.

Which field number means what is data, in the `protobuf_schema*` tables; this module is the
wire-format reader that walks them and the JSON forms of the value types. A malformed body is a
400, a kind without a table a 415; a field the tables leave out is a 400 when the body sets it,
so nothing a client sends is dropped silently.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from unistack.apiserver import (
    errors,
    protobuf_schema,
    protobuf_schema_apps,
    protobuf_schema_authentication,
    protobuf_schema_authorization,
    protobuf_schema_batch,
    protobuf_schema_core,
    protobuf_schema_pod,
    protobuf_schema_rbac,
)

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_SCHEMA = protobuf_schema.compile_schema(
    protobuf_schema.RUNTIME,
    protobuf_schema.VALUES,
    protobuf_schema.META,
    protobuf_schema_core.CORE,
    protobuf_schema_pod.POD,
    protobuf_schema_apps.APPS,
    protobuf_schema_authentication.AUTHENTICATION,
    protobuf_schema_authorization.AUTHORIZATION,
    protobuf_schema_batch.BATCH,
    protobuf_schema_rbac.RBAC,
)

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_WIRE_TYPES = {"int32": _VARINT, "int64": _VARINT, "bool": _VARINT, "double": _FIXED64}
_ZERO_VALUES: dict[int, int | bytes] = {
    _VARINT: 0,
    _FIXED64: bytes(8),
    _BYTES: b"",
    _FIXED32: bytes(4),
}

Value = int | bytes
Obj = dict[str, Any]


def decode(body: bytes) -> Obj:
    """The JSON form of a protobuf request body; raises `ApiError` when it has none."""
    if not body.startswith(MAGIC):
        raise errors.bad_request(
            'the protobuf body does not start with the Kubernetes magic number "k8s\\x00"'
        )
    envelope = _decode_message(body[len(MAGIC) :], protobuf_schema.ENVELOPE, "")
    _check_payload_format(envelope)
    type_meta = envelope.get("typeMeta", {})
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    obj: Obj = {"kind": kind, "apiVersion": api_version}
    obj.update(_decode_message(envelope.get("raw", b""), _message_for(api_version, kind), ""))
    return obj


def _check_payload_format(envelope: Obj) -> None:
    encoding = envelope.get("contentEncoding", "")
    if encoding:
        raise errors.bad_request(
            f"protobuf bodies with content encoding {encoding!r} are not supported"
        )
    content_type = envelope.get("contentType", "")
    if content_type not in ("", MEDIA_TYPE):
        raise errors.bad_request(f"protobuf bodies wrapping {content_type!r} are not supported")


def _message_for(api_version: str, kind: str) -> str:
    if not kind:
        raise errors.bad_request("the protobuf body does not say what kind of object it holds")
    message = protobuf_schema.KINDS.get((api_version, kind))
    message = message or protobuf_schema.KINDS_IN_EVERY_VERSION.get(kind)
    if message is None:
        raise errors.unsupported_media_type(
            f"{MEDIA_TYPE}; kind={kind}, apiVersion={api_version}",
            ("application/json", "application/yaml"),
        )
    return message


# Messages


def _decode_message(buf: bytes, message: str, path: str) -> Obj:
    fields = _SCHEMA[message]
    obj: Obj = {}
    for number, wire, value in _read_fields(buf):
        field = fields.get(number)
        if field is None:
            _check_unknown(message, number, wire, value, path)
        else:
            _store(obj, field, wire, value, _join(path, field.name))
    return obj


def _store(obj: Obj, field: protobuf_schema.Field, wire: int, value: Value, path: str) -> None:
    if field.flag == "map":
        key, item = _map_entry(field.type, _as_bytes(value, path), path)
        obj.setdefault(field.name, {})[key] = item
    elif field.flag == "repeated":
        obj.setdefault(field.name, []).extend(_repeated_items(field.type, wire, value, path))
    elif field.flag == "inline":
        obj.update(_decode_value(field.type, wire, value, path))
    else:
        item = _decode_value(field.type, wire, value, path)
        if item or field.flag == "keep" or field.is_message:
            obj[field.name] = item
        else:
            obj.pop(field.name, None)


def _map_entry(value_type: str, entry: bytes, path: str) -> tuple[str, Any]:
    key, item, found = "", None, False
    for number, wire, value in _read_fields(entry):
        if number == 1:
            key = _decode_value("string", wire, value, path)
        elif number == 2:
            item, found = _decode_value(value_type, wire, value, path), True
    if not found:
        wire = _WIRE_TYPES.get(value_type, _BYTES)
        item = _decode_value(value_type, wire, _ZERO_VALUES[wire], path)
    return key, item


def _repeated_items(item_type: str, wire: int, value: Value, path: str) -> list[Any]:
    packed = wire == _BYTES and _WIRE_TYPES.get(item_type) == _VARINT
    if not packed:
        return [_decode_value(item_type, wire, value, path)]
    buf, pos, items = _as_bytes(value, path), 0, []
    while pos < len(buf):
        number, pos = _read_varint(buf, pos)
        items.append(_decode_value(item_type, _VARINT, number, path))
    return items


def _check_unknown(message: str, number: int, wire: int, value: Value, path: str) -> None:
    """A zero a Go client wrote for a field we leave out is harmless; anything else is refused."""
    if value == _ZERO_VALUES[wire]:
        return
    where = f" at {path}" if path else ""
    raise errors.bad_request(
        f"the protobuf body sets field {number} of {message}{where}, which this server cannot "
        "decode; send the object as application/json"
    )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path and name else path or name


# Values


def _decode_value(value_type: str, wire: int, value: Value, path: str) -> Any:
    expected = _WIRE_TYPES.get(value_type, _BYTES)
    if wire != expected:
        raise _malformed(f"{path or value_type} has wire type {wire}, expected {expected}")
    scalar = _SCALARS.get(value_type)
    if scalar is not None:
        return scalar(value, path)
    fields = _decode_message(_as_bytes(value, path), value_type, path)
    json_form = _JSON_FORMS.get(value_type)
    return json_form(fields, path) if json_form else fields


def _signed(value: Value, bits: int, path: str) -> int:
    number = _as_int(value, path) & ((1 << bits) - 1)
    return number - (1 << bits) if number >> (bits - 1) else number


def _as_int(value: Value, path: str) -> int:
    if not isinstance(value, int):
        raise _malformed(f"{path} is not a varint")
    return value


def _as_bytes(value: Value, path: str) -> bytes:
    if not isinstance(value, bytes):
        raise _malformed(f"{path} is not length-delimited")
    return value


_SCALARS: dict[str, Callable[[Value, str], Any]] = {
    "string": lambda value, path: _as_bytes(value, path).decode("utf-8", "replace"),
    "bytes": lambda value, path: base64.b64encode(_as_bytes(value, path)).decode("ascii"),
    "raw": _as_bytes,
    "int32": lambda value, path: _signed(value, 32, path),
    "int64": lambda value, path: _signed(value, 64, path),
    "bool": lambda value, path: _as_int(value, path) != 0,
    "double": lambda value, path: struct.unpack("<d", _as_bytes(value, path))[0],
}


def _time(fields: Obj, path: str) -> str | None:
    """metav1.Time: RFC 3339 in UTC to the second; an empty message is the zero time, null."""
    if not fields:
        return None
    try:
        moment = datetime.fromtimestamp(fields.get("seconds", 0), tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise _malformed(f"{path} is not a representable time") from None
    return moment.isoformat().replace("+00:00", "Z")


def _int_or_string(fields: Obj, path: str) -> int | str:
    if fields.get("type", 0) == 1:
        return str(fields.get("strVal", ""))
    return int(fields.get("intVal", 0))


def _quantity(fields: Obj, path: str) -> str:
    return str(fields.get("string") or "0")


def _fields_v1(fields: Obj, path: str) -> Any:
    raw = fields.get("Raw", b"")
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _malformed(f"{path} does not hold JSON") from None


_JSON_FORMS: dict[str, Callable[[Obj, str], Any]] = {
    "meta/v1.Time": _time,
    "intstr.IntOrString": _int_or_string,
    "resource.Quantity": _quantity,
    "meta/v1.FieldsV1": _fields_v1,
}


# Wire format: a message is a run of (key varint, value); key = field number << 3 | wire type.


def _read_fields(buf: bytes) -> Iterator[tuple[int, int, Value]]:
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _malformed("a field has number 0")
        value, pos = _read_value(buf, pos, wire)
        yield number, wire, value


def _read_value(buf: bytes, pos: int, wire: int) -> tuple[Value, int]:
    if wire == _VARINT:
        return _read_varint(buf, pos)
    if wire == _BYTES:
        length, pos = _read_varint(buf, pos)
        return _take(buf, pos, length)
    if wire == _FIXED64:
        return _take(buf, pos, 8)
    if wire == _FIXED32:
        return _take(buf, pos, 4)
    raise _malformed(f"wire type {wire} is not supported")


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise _malformed("a varint is cut short")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
    raise _malformed("a varint is longer than 10 bytes")


def _take(buf: bytes, pos: int, length: int) -> tuple[bytes, int]:
    end = pos + length
    if end > len(buf):
        raise _malformed("a field runs past the end of its message")
    return buf[pos:end], end


def _malformed(detail: str) -> errors.ApiError:
    return errors.bad_request(f"the body of the request could not be decoded: protobuf: {detail}")
