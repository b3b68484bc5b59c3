"""Field sets: the fields of an object, as server-side apply names and stores them.

A field path is a tuple of elements, each `("f", name)` for a field, `("k", keys)` for an item
of a keyed list, `("v", value)` for an item of a set, `("i", index)` for a list position
(the last is only ever decoded). Scalar key and set values are kept as compact JSON text, so
paths hash and compare as structured-merge-diff's do. This module turns objects into field
sets (`fields_of`), compares and merges objects by field (`compare`, `merge`, `remove`), and
reads and writes the FieldsV1 encoding of `metadata.managedFields` (`encode`, `decode`).
`unistack.apiserver.apply` decides ownership with these; list keys and atomic maps come from
the kind's `unistack.apiserver.patchkeys.KindSchema`.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from unistack.apiserver.patchkeys import KEY_DEFAULTS, KindSchema

Element = tuple[str, Any]
FieldPath = tuple[Element, ...]
Names = tuple[str, ...]

MISSING: Any = object()  # a value absent from its map, unlike a null one


# --- Elements and paths -----------------------------------------------------------------


def go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it: compact, with <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def item_element(item: Any, keys: tuple[str, ...]) -> Element:
    """The element naming a list item: its key fields, or its value for a set."""
    if not keys:
        if isinstance(item, dict | list):
            raise ValueError("set elements must be scalars")
        return ("v", go_json(item))
    if not isinstance(item, dict):
        raise ValueError("associative list with keys may not have non-map elements")
    return ("k", tuple((name, go_json(_key_value(item, name))) for name in sorted(keys)))


def _key_value(item: dict[str, Any], name: str) -> Any:
    if name in item:
        return item[name]
    if name in KEY_DEFAULTS:
        return KEY_DEFAULTS[name]
    raise ValueError(
        f'associative list with keys has an element that omits key field "{name}" '
        "(and doesn't have default value)"
    )


def path_string(path: FieldPath) -> str:
    """`.spec.containers[name="nginx"].image`, as structured-merge-diff prints paths."""
    return "".join(_element_string(element) for element in path)


def _element_string(element: Element) -> str:
    kind, value = element
    if kind == "f":
        return f".{value}"
    if kind == "k":
        return "[" + ",".join(f"{name}={_value_string(text)}" for name, text in value) + "]"
    if kind == "v":
        return f"[={_value_string(value)}]"
    return f"[{value}]"


def _value_string(text: str) -> str:
    value = json.loads(text)
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else text


def _element_order(element: Element) -> tuple[Any, ...]:
    """structured-merge-diff's PathElement order: fields, then keys, values, indexes."""
    kind, value = element
    if kind == "f":
        return (0, value)
    if kind == "k":
        return (1, tuple((name, _scalar_order(text)) for name, text in value))
    if kind == "v":
        return (2, _scalar_order(value))
    return (3, value)


def _scalar_order(text: str) -> tuple[Any, ...]:
    value = json.loads(text)
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (3 if value is not None else 5, text)


def ordered(paths: Iterable[FieldPath]) -> list[FieldPath]:
    """Paths in the order structured-merge-diff iterates a set: members, then children."""
    return list(_iterate(_Node.build(paths), ()))


def _iterate(node: _Node, prefix: FieldPath) -> Iterator[FieldPath]:
    children = sorted(node.children.items(), key=lambda item: _element_order(item[0]))
    for element, child in children:
        if child.member:
            yield (*prefix, element)
    for element, child in children:
        yield from _iterate(child, (*prefix, element))


def with_named_parents(paths: Iterable[FieldPath]) -> set[FieldPath]:
    """The paths plus every field that contains one (EnsureNamedFieldsAreMembers)."""
    out = set(paths)
    for path in list(out):
        out.update(path[:end] for end in range(1, len(path)) if path[end - 1][0] == "f")
    return out


# --- FieldsV1 ---------------------------------------------------------------------------


@dataclass
class _Node:
    member: bool = False
    children: dict[Element, _Node] = field(default_factory=dict)

    @classmethod
    def build(cls, paths: Iterable[FieldPath]) -> _Node:
        root = cls()
        for path in paths:
            node = root
            for element in path:
                node = node.children.setdefault(element, cls())
            node.member = True
        return root


def encode(paths: Iterable[FieldPath]) -> dict[str, Any]:
    """The FieldsV1 form of a field set: `{"f:spec": {"f:replicas": {}}}`.

    Objects written by one client mostly own the same set of fields, so the encoding of a
    frozen set is cached; callers get their own copy to keep."""
    if isinstance(paths, frozenset):
        return _copy_tree(_encode_frozen(paths))
    return _encode_children(_Node.build(paths))


@functools.lru_cache(maxsize=512)
def _encode_frozen(paths: frozenset[FieldPath]) -> dict[str, Any]:
    return _encode_children(_Node.build(paths))


def _copy_tree(tree: dict[str, Any]) -> dict[str, Any]:
    return {key: _copy_tree(child) for key, child in tree.items()}


def _encode_children(node: _Node) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if node.member and node.children:
        out["."] = {}
    for element in sorted(node.children, key=_element_order):
        out[_serialize(element)] = _encode_children(node.children[element])
    return out


def _serialize(element: Element) -> str:
    kind, value = element
    if kind == "k":
        return "k:{" + ",".join(f"{go_json(name)}:{text}" for name, text in value) + "}"
    return f"{kind}:{value}"


def decode(tree: Any, prefix: FieldPath = ()) -> set[FieldPath]:
    """The field set a FieldsV1 tree stores; ValueError when it is not one."""
    if not isinstance(tree, dict):
        raise ValueError("FieldsV1 must be an object")
    out: set[FieldPath] = set()
    for key, child in tree.items():
        if key == ".":
            out.update([prefix] if prefix else [])
        elif child == {}:
            out.add((*prefix, _parse(key)))
        else:
            out |= decode(child, (*prefix, _parse(key)))
    return out


def _parse(text: str) -> Element:
    kind, _, rest = text.partition(":")
    if kind == "f":
        return ("f", rest)
    if kind == "v":
        return ("v", go_json(json.loads(rest)))
    if kind == "i":
        return ("i", int(rest))
    keys = json.loads(rest) if kind == "k" else None
    if not isinstance(keys, dict):
        raise ValueError(f"not a FieldsV1 path element: {text}")
    return ("k", tuple((name, go_json(keys[name])) for name in sorted(keys)))


# --- Walking objects by schema ----------------------------------------------------------


def _list_keys(schema: KindSchema, names: Names) -> tuple[str, ...] | None:
    """The apply keys of the list at `names`; None when apply treats it as atomic."""
    rule = schema.lists.get(".".join(names))
    return None if rule is None else rule.apply_keys


def _is_atomic(schema: KindSchema, names: Names) -> bool:
    return bool(names) and ".".join(names) in schema.atomic


def _is_empty(value: Any) -> bool:
    return value is None or value is MISSING or value == {} or value == []


def fields_of(obj: Any, schema: KindSchema) -> set[FieldPath]:
    """Every field `obj` sets, as apply owns them (structured-merge-diff's ToFieldSet)."""
    out: set[FieldPath] = set()
    _collect(obj, (), (), schema, out)
    return out


def _collect(value: Any, names: Names, path: FieldPath, schema: KindSchema, out: set) -> None:
    if isinstance(value, dict) and not _is_atomic(schema, names):
        for key, child in value.items():
            child_path = (*path, ("f", key))
            if child is None or child == {}:
                out.add(child_path)
            _collect(child, (*names, key), child_path, schema, out)
    elif isinstance(value, list) and _list_keys(schema, names) is not None:
        _collect_items(value, names, path, schema, out)
    elif path:
        out.add(path)


def _collect_items(
    items: list[Any], names: Names, path: FieldPath, schema: KindSchema, out: set
) -> None:
    keys = _list_keys(schema, names) or ()
    elements = [_located_element(item, keys, path, index) for index, item in enumerate(items)]
    repeated = {element for element in elements if elements.count(element) > 1}
    for item, element in zip(items, elements, strict=True):
        item_path = (*path, element)
        out.add(item_path)
        if element not in repeated:
            _collect(item, names, item_path, schema, out)


def _located_element(item: Any, keys: tuple[str, ...], path: FieldPath, index: int) -> Element:
    try:
        return item_element(item, keys)
    except ValueError as exc:
        raise ValueError(f"{path_string(path)}: element {index}: {exc}") from exc


@dataclass
class Comparison:
    """What changed between two objects, by field path."""

    added: set[FieldPath] = field(default_factory=set)
    modified: set[FieldPath] = field(default_factory=set)
    removed: set[FieldPath] = field(default_factory=set)

    def outside(self, fields: Iterable[Names]) -> Comparison:
        """The changes not at or under any of `fields` (kube's ignored, reset fields)."""
        fields = tuple(fields)
        if not fields:
            return self
        return Comparison(
            set(outside(self.added, fields)),
            set(outside(self.modified, fields)),
            set(outside(self.removed, fields)),
        )


def outside(paths: Iterable[FieldPath], fields: Iterable[Names]) -> frozenset[FieldPath]:
    """The paths not at or under any of the named fields (structured-merge-diff's
    RecursiveDifference with a set of fields)."""
    prefixes = [tuple(("f", name) for name in names) for names in fields]
    return frozenset(
        path for path in paths if not any(path[: len(prefix)] == prefix for prefix in prefixes)
    )


def compare(old: Any, new: Any, schema: KindSchema) -> Comparison:
    """Fields added, modified and removed from `old` to `new` (structured-merge-diff)."""
    comparison = Comparison()
    _compare(old, new, (), (), schema, comparison)
    return comparison


def _compare(
    lhs: Any, rhs: Any, names: Names, path: FieldPath, schema: KindSchema, out: Comparison
) -> None:
    shape = _shape(rhs if lhs is MISSING or lhs is None else lhs)
    if shape is dict and _granular(lhs, rhs, dict) and not _is_atomic(schema, names):
        _compare_fields(lhs, rhs, names, path, schema, out)
    elif shape is list and _granular(lhs, rhs, list) and _list_keys(schema, names) is not None:
        _compare_items(lhs, rhs, names, path, schema, out)
    else:
        _compare_leaf(lhs, rhs, path, out)
        return
    if lhs is MISSING:
        out.added.add(path)
    elif rhs is MISSING:
        out.removed.add(path)


def _shape(value: Any) -> type:
    return dict if isinstance(value, dict) else list if isinstance(value, list) else object


def _granular(lhs: Any, rhs: Any, shape: type) -> bool:
    """Both sides are `shape` (or absent, or null) and not both empty: compared piecewise.

    Two empty values compare as one leaf, so `{}` and null stay distinct."""
    return all(
        value is MISSING or value is None or isinstance(value, shape) for value in (lhs, rhs)
    ) and not (_is_empty(lhs) and _is_empty(rhs))


def _compare_leaf(lhs: Any, rhs: Any, path: FieldPath, out: Comparison) -> None:
    if lhs is MISSING:
        out.added.add(path)
    elif rhs is MISSING:
        out.removed.add(path)
    elif not json_equal(lhs, rhs):
        out.modified.add(path)


def _compare_fields(
    lhs: Any, rhs: Any, names: Names, path: FieldPath, schema: KindSchema, out: Comparison
) -> None:
    left = lhs if isinstance(lhs, dict) else {}
    right = rhs if isinstance(rhs, dict) else {}
    for key in {**left, **right}:
        child = (*path, ("f", key))
        _compare(left.get(key, MISSING), right.get(key, MISSING), (*names, key), child, schema, out)


def _compare_items(
    lhs: Any, rhs: Any, names: Names, path: FieldPath, schema: KindSchema, out: Comparison
) -> None:
    """Keyed items compared one to one; a key repeated on either side is one leaf."""
    keys = _list_keys(schema, names) or ()
    left, right = _by_element(lhs, keys), _by_element(rhs, keys)
    for element in {**left, **right}:
        olds, news = left.get(element, []), right.get(element, [])
        item_path = (*path, element)
        if len(olds) <= 1 and len(news) <= 1:
            old, new = (olds or [MISSING])[0], (news or [MISSING])[0]
            _compare(old, new, names, item_path, schema, out)
        elif len(olds) >= 2 and len(news) >= 2:
            if not json_equal(olds, news):
                out.modified.add(item_path)
        elif len(olds) >= 2:
            out.removed.add(item_path)
            if news:
                _compare(MISSING, news[0], names, item_path, schema, out)
        else:
            out.added.add(item_path)
            if olds:
                _compare(olds[0], MISSING, names, item_path, schema, out)


def _by_element(items: Any, keys: tuple[str, ...]) -> dict[Element, list[Any]]:
    grouped: dict[Element, list[Any]] = {}
    for item in items if isinstance(items, list) else []:
        grouped.setdefault(item_element(item, keys), []).append(item)
    return grouped


def json_equal(left: Any, right: Any) -> bool:
    """Equality of decoded JSON: 1 equals 1.0, but true is not 1."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    return type(left) is type(right) and left == right


# --- Merging and removing ----------------------------------------------------------------


def merge(live: dict[str, Any], config: dict[str, Any], schema: KindSchema) -> dict[str, Any]:
    """`config` merged over `live`: maps by field, keyed lists by item, the rest replaced.

    A null in `config` removes the field (the stored object keeps no nulls)."""
    merged: dict[str, Any] = _merge(live, config, (), schema)
    return merged


def _merge(lhs: Any, rhs: Any, names: Names, schema: KindSchema) -> Any:
    if rhs is MISSING:
        return copy.deepcopy(lhs)
    if isinstance(rhs, dict) and not _is_atomic(schema, names):
        left = lhs if isinstance(lhs, dict) else {}
        return _merge_maps(left, rhs, names, schema)
    if isinstance(rhs, list) and _list_keys(schema, names) is not None:
        return _merge_items(lhs if isinstance(lhs, list) else [], rhs, names, schema)
    return _without_nulls(rhs)


def _merge_maps(lhs: dict[str, Any], rhs: dict[str, Any], names: Names, schema: KindSchema) -> Any:
    out: dict[str, Any] = {}
    for key in {**lhs, **rhs}:
        if rhs.get(key, MISSING) is not None:
            out[key] = _merge(lhs.get(key, MISSING), rhs.get(key, MISSING), (*names, key), schema)
    return out


def _merge_items(lhs: list[Any], rhs: list[Any], names: Names, schema: KindSchema) -> list[Any]:
    """Keyed lists merged item by item, ordered as structured-merge-diff orders them:
    applied items in applied order, live-only items where they stood among them."""
    keys = _list_keys(schema, names) or ()
    left = [(item_element(item, keys), item) for item in lhs]
    right = _applied_items(rhs, keys)
    live, applied = dict(reversed(left)), dict(right)
    shared = iter([element for element, _ in right if element in live])
    upcoming = next(shared, None)
    done: set[Element] = set()
    out: list[Any] = []
    at_left = at_right = 0
    while at_left < len(left) or at_right < len(right):
        element = left[at_left][0] if at_left < len(left) else None
        if element is not None and at_right < len(right):
            if element == right[at_right][0]:
                done.add(element)
                out.append(_merge(live[element], applied[element], names, schema))
                at_left, at_right, upcoming = at_left + 1, at_right + 1, next(shared, None)
                continue
            if element in applied and upcoming not in (None, element):
                at_left += 1  # a shared item, merged when the applied list reaches it
                continue
        if element is not None and element not in applied:
            out.append(copy.deepcopy(left[at_left][1]))
            at_left += 1
            continue
        if element is not None and element in done:
            at_left += 1
        if at_right < len(right):
            taken = right[at_right][0]
            done.add(taken)
            out.append(_merge(live.get(taken, MISSING), applied[taken], names, schema))
            at_right += 1
            upcoming = next(shared, None) if upcoming == taken else upcoming
    return out


def _applied_items(items: list[Any], keys: tuple[str, ...]) -> list[tuple[Element, Any]]:
    """The applied list's items by element; an applied list may not repeat a key."""
    pairs = [(item_element(item, keys), item) for item in items]
    seen: set[Element] = set()
    for element, _ in pairs:
        if element in seen:
            raise ValueError(f"duplicate entries for key {path_string((element,))}")
        seen.add(element)
    return pairs


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def remove(obj: dict[str, Any], paths: Iterable[FieldPath], schema: KindSchema) -> dict[str, Any]:
    """`obj` without the fields and items at `paths`, each with all it holds (RemoveItems)."""
    pruned: dict[str, Any] = _remove(obj, _Node.build(paths), (), schema)
    return pruned


def _remove(value: Any, node: _Node, names: Names, schema: KindSchema) -> Any:
    if not node.children:
        return copy.deepcopy(value)
    if isinstance(value, dict) and not _is_atomic(schema, names):
        out: dict[str, Any] = {}
        for key, child in value.items():
            below = node.children.get(("f", key))
            if below is None or not below.member:
                out[key] = _remove(child, below or _Node(), (*names, key), schema)
        return out
    keys = _list_keys(schema, names)
    if isinstance(value, list) and keys is not None:
        kept = []
        for item in value:
            element = _element_or_none(item, keys)
            below = node.children.get(element) if element is not None else None
            if below is None or not below.member:
                kept.append(_remove(item, below or _Node(), names, schema))
        return kept
    return copy.deepcopy(value)


def _element_or_none(item: Any, keys: tuple[str, ...]) -> Element | None:
    try:
        return item_element(item, keys)
    except ValueError:
        return None
