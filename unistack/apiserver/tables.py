"""`as=Table` responses: what `kubectl get` prints, computed on the server.

The list and get handlers call `to_table` when a client asks for
`application/json;as=Table;g=meta.k8s.io;v=v1`; a single object is a one-row table. Columns come
from the `ResourceType` (`resources.Column`, also built from a CRD's
additionalPrinterColumns); with none declared the table shows Name and Age. Column paths are
the small JSONPath subset that CRD printer columns use, compiled once by `compile_jsonpath`.
Cells are converted as apiextensions-apiserver converts them: `date` columns become ages
("5m", "3d4h") in the words of kube's `duration.HumanDuration`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from unistack.apiserver import errors
from unistack.apiserver.resources import Column, ResourceType

Obj = dict[str, Any]
TABLE_API_VERSION = "meta.k8s.io/v1"
INCLUDE_OBJECT_POLICIES = ("None", "Metadata", "Object")

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
CREATION_TIMESTAMP_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_AGE = Column("Age", ".metadata.creationTimestamp", "date", "", CREATION_TIMESTAMP_DESCRIPTION)

# ---------------------------------------------------------------------------------------------
# Ages


def human_duration(seconds: float) -> str:
    """kube's `duration.HumanDuration`: two or three significant figures of a duration."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return _two_units(minutes, "m", whole % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    return _human_hours(whole // 3600, minutes % 60)


def _human_hours(hours: int, minutes: int) -> str:
    if hours < 8:
        return _two_units(hours, "h", minutes, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _two_units(hours // 24, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        return _two_units(days // 365, "y", days % 365, "d")
    return f"{hours // 24 // 365}y"


def _two_units(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp as kube writes them; naive times are taken as UTC."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(timestamp: Any, now: datetime) -> str:
    """The age of an RFC 3339 timestamp, or `<unknown>`/`<invalid>` as kube shows them."""
    if not timestamp:
        return "<unknown>"
    try:
        then = parse_timestamp(str(timestamp))
    except ValueError:
        return "<invalid>"
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    return human_duration((now - then).total_seconds())


# ---------------------------------------------------------------------------------------------
# JSONPath: `.a.b`, `['a.b']`, `[0]`, `[*]`, `.*`, `[?(@.type=="Ready")]`

Step = Callable[[Any], list[Any]]
_FILTER_RE = re.compile(
    r"\?\(\s*@((?:\.[^\s=!<>)]+)*)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*\)", re.DOTALL
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def _key_step(key: str) -> Step:
    return lambda node: [node[key]] if isinstance(node, dict) and key in node else []


def _wildcard_step(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node.values())
    return list(node) if isinstance(node, list) else []


def _index_step(index: int) -> Step:
    def step(node: Any) -> list[Any]:
        if isinstance(node, list) and -len(node) <= index < len(node):
            return [node[index]]
        return []

    return step


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError(f"unrecognized filter value {text!r}") from None


def _comparable(left: Any, right: Any, operator: str) -> bool:
    try:
        return _COMPARE[operator](left, right)
    except TypeError:
        return False


def _filter_step(expression: str) -> Step:
    match = _FILTER_RE.fullmatch(expression)
    if match is None:
        raise ValueError(f"unrecognized filter {expression!r}")
    inner = compile_jsonpath(match.group(1) or "")
    operator, literal = match.group(2), match.group(3)
    wanted = _literal(literal) if operator else None

    def keep(item: Any) -> bool:
        found = inner(item)
        if not operator:
            return bool(found)
        return any(_comparable(value, wanted, operator) for value in found)

    return lambda node: [item for item in node if keep(item)] if isinstance(node, list) else []


def _bracket_step(body: str) -> Step:
    body = body.strip()
    if body == "*":
        return _wildcard_step
    if body.startswith("?"):
        return _filter_step(body)
    if len(body) >= 2 and body[0] == body[-1] and body[0] in "'\"":
        return _key_step(body[1:-1])
    try:
        return _index_step(int(body))
    except ValueError:
        raise ValueError(f"unrecognized subscript [{body}]") from None


def _closing_bracket(path: str, start: int) -> int:
    depth, quote = 0, ""
    for index in range(start, len(path)):
        char = path[index]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unclosed [ in {path!r}")


def _dotted_name(path: str, start: int) -> tuple[str, int]:
    chars: list[str] = []
    index = start
    while index < len(path) and path[index] not in ".[":
        if path[index] == "\\" and index + 1 < len(path):
            index += 1
        chars.append(path[index])
        index += 1
    return "".join(chars), index


def _steps(path: str) -> list[Step]:
    steps: list[Step] = []
    index = 0
    while index < len(path):
        if path[index] == "[":
            end = _closing_bracket(path, index)
            steps.append(_bracket_step(path[index + 1 : end]))
            index = end + 1
            continue
        if path[index] != ".":
            raise ValueError(f"unrecognized path {path!r}")
        name, index = _dotted_name(path, index + 1)
        if name:
            steps.append(_wildcard_step if name == "*" else _key_step(name))
    return steps


@lru_cache(maxsize=512)
def compile_jsonpath(path: str) -> Callable[[Any], list[Any]]:
    """Compile a printer-column path; the result maps a node to every value found.

    Raises ValueError for paths outside the supported subset, so a CRD can be rejected.
    """
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1].strip()
    steps = _steps(path)

    def evaluate(node: Any) -> list[Any]:
        found = [node]
        for step in steps:
            found = [value for item in found for value in step(item)]
        return found

    return evaluate


# ---------------------------------------------------------------------------------------------
# Cells


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _typed_cell(column_type: str, value: Any, now: datetime) -> Any:
    """apiextensions' `cellForJSONValue`: a cell of the column's type, or None."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if column_type == "integer" and is_number:
        return int(value)
    if column_type == "number" and is_number:
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        return age(value, now)
    return None


def _path_cell(column: Column, path: str, obj: Obj, now: datetime) -> Any:
    try:
        found = [v for v in compile_jsonpath(path)(obj) if v is not None]
    except ValueError:
        return None
    if not found:
        return None
    if column.type == "string":
        return ",".join(_as_text(v) for v in found)
    return _typed_cell(column.type, found[0], now)


def cell(column: Column, obj: Obj, now: datetime) -> Any:
    """One cell: a path is read and converted to the column's type; a callable is trusted."""
    if column is _AGE:  # kube's own Age column, unlike a CRD's, shows <unknown> when unset
        return age((obj.get("metadata") or {}).get("creationTimestamp"), now)
    if callable(column.path):
        return column.path(obj)
    return _path_cell(column, column.path, obj, now)


def _column_definition(column: Column) -> dict[str, Any]:
    description = column.description
    if not description and isinstance(column.path, str):
        description = f"Custom resource definition column (in JSONPath format): {column.path}"
    return {
        "name": column.name,
        "type": column.type,
        "format": column.format,
        "description": description,
        "priority": column.priority,
    }


def columns_of(rt: ResourceType) -> tuple[Column, ...]:
    """The columns after Name: the kind's own, or Age when it declares none."""
    return rt.columns or (_AGE,)


def column_definitions(rt: ResourceType) -> list[dict[str, Any]]:
    name = Column("Name", ".metadata.name", "string", "name", NAME_DESCRIPTION)
    return [_column_definition(c) for c in (name, *columns_of(rt))]


def _row_object(obj: Obj, include_object: str) -> Obj | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    partial = {"kind": "PartialObjectMetadata", "apiVersion": TABLE_API_VERSION}
    return {**partial, "metadata": obj.get("metadata", {})}


def _row(rt: ResourceType, obj: Obj, include_object: str, now: datetime) -> Obj:
    name = (obj.get("metadata") or {}).get("name", "")
    cells = [name, *(cell(c, obj, now) for c in columns_of(rt))]
    return {"cells": cells, "object": _row_object(obj, include_object)}


def to_table(
    rt: ResourceType,
    objects: list[Obj],
    *,
    include_object: str = "Metadata",
    list_meta: Obj,
    now: datetime,
) -> Obj:
    """A `meta.k8s.io/v1` Table of `objects`; a bad `includeObject` is a 400 BadRequest."""
    include_object = include_object or "Metadata"
    if include_object not in INCLUDE_OBJECT_POLICIES:
        raise errors.bad_request(f'unrecognized includeObject value: "{include_object}"')
    return {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": list_meta,
        "columnDefinitions": column_definitions(rt),
        "rows": [_row(rt, obj, include_object, now) for obj in objects],
    }
