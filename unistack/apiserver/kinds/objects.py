"""Reading and defaulting plain JSON objects without trusting their shape.

Objects reach defaulters and validators straight from request bodies, so any field may be
missing or of the wrong type. These helpers read through such objects safely (`dig`,
`dict_of`, `dicts_in`) and set defaults only where a field is unset (`set_default`,
`ensure_dict`). The kind modules next to this one use them; nothing here knows a kind.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def dig(obj: Any, *keys: str | int) -> Any:
    """The value at `keys` below `obj`, or None when any step is missing or mistyped."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(obj, list) or not -len(obj) <= key < len(obj):
                return None
            obj = obj[key]
        elif isinstance(obj, dict):
            obj = obj.get(key)
        else:
            return None
    return obj


def dict_of(value: Any) -> Obj:
    """`value` when it is a mapping, else an empty one (not attached to anything)."""
    return value if isinstance(value, dict) else {}


def list_of(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def dicts_in(value: Any) -> list[Obj]:
    """The mappings in a list, skipping anything else (the validator reports those)."""
    return [item for item in list_of(value) if isinstance(item, dict)]


def int_of(value: Any, default: int = 0) -> int:
    """An integer field's value; booleans and other types read as `default`."""
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return value


def is_unset(value: Any) -> bool:
    """Go's zero value for optional fields: absent, null or the empty string."""
    return value is None or value == ""


def set_default(parent: Obj, key: str, value: Any) -> None:
    if is_unset(parent.get(key)):
        parent[key] = value


def ensure_dict(parent: Obj, key: str) -> Obj | None:
    """The mapping at `key`, created when unset; None when something else is there."""
    if parent.get(key) is None:
        parent[key] = {}
    value = parent[key]
    return value if isinstance(value, dict) else None


def metadata_of(obj: Obj) -> Obj:
    return dict_of(obj.get("metadata"))
