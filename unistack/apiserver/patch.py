"""PATCH bodies applied to stored objects: JSON patch, merge patch, strategic merge patch.

The PATCH handler decodes the body and calls one of these pure functions with the stored
object; each returns a new object and leaves its inputs alone. Failures are `ApiError`s with
the codes kube-apiserver gives: a body of the wrong shape is 400, a JSON patch that cannot be
applied is 422, strategic merge patch of a custom resource is 415. Strategic merge patch
follows the merge keys declared in `unistack.apiserver.patchkeys`; server-side apply, the
fourth patch type, is `unistack.apiserver.apply`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer

from unistack.apiserver import errors, patchkeys
from unistack.apiserver.patchkeys import ListRule

Obj = dict[str, Any]
Path = tuple[str, ...]

MAX_JSON_PATCH_OPERATIONS = 10000

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
ORDER_PREFIX = "$setElementOrder/"
DELETE_PREFIX = "$deleteFromPrimitiveList/"

_MISSING: Any = object()
_JSON_PATCH_ERRORS = (
    jsonpatch.JsonPatchException,
    jsonpointer.JsonPointerException,
    TypeError,
    KeyError,
    IndexError,
    ValueError,
)


# --- JSON patch (RFC 6902) -------------------------------------------------------------


def apply_json_patch(obj: Obj, ops: Any) -> Obj:
    """Apply an RFC 6902 patch; `test` ops that fail and bad paths are 422, as in kube."""
    ops = [] if ops is None else ops
    if not isinstance(ops, list):
        raise errors.bad_request(unmarshal_error(ops, "jsonpatch.Patch"))
    for op in ops:
        if not isinstance(op, dict):
            raise errors.bad_request(unmarshal_error(op, "jsonpatch.Operation"))
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise errors.too_large(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
            f"got {len(ops)}"
        )
    try:
        result = jsonpatch.JsonPatch(copy.deepcopy(ops)).apply(obj, in_place=False)
    except _JSON_PATCH_ERRORS as exc:
        raise rejected_patch() from exc
    if not isinstance(result, dict):
        raise rejected_patch()
    return result


def rejected_patch() -> errors.ApiError:
    """kube's answer to a patch that decodes but cannot apply; it drops the detail."""
    return errors.ApiError(
        422, "Invalid", "the server rejected our request due to an error in our request"
    )


def unmarshal_error(value: Any, go_type: str) -> str:
    """Go's message for JSON of the wrong shape, which kube passes on."""
    return f"json: cannot unmarshal {_json_kind(value)} into Go value of type {go_type}"


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    return "string" if isinstance(value, str) else "number"


# --- JSON merge patch (RFC 7386) -------------------------------------------------------


def apply_merge_patch(obj: Obj, patch: Any) -> Obj:
    """Apply an RFC 7386 merge patch: null deletes, objects merge, anything else replaces."""
    if not isinstance(patch, dict):
        raise errors.bad_request("Invalid JSON Patch")
    merged: Obj = _merge_into(copy.deepcopy(obj), patch)
    return merged


def _merge_into(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_into(target.get(key), value)
    return target


# --- Strategic merge patch --------------------------------------------------------------


def supports_strategic_merge(kind_key: str) -> bool:
    """Built-in kinds take strategic merge patch; custom resources get 415 for it."""
    return patchkeys.schema_for(kind_key) is not None


def apply_strategic_merge_patch(obj: Obj, patch: Any, kind_key: str) -> Obj:
    """Apply a Kubernetes strategic merge patch to an object of a built-in kind.

    Lists with a merge key merge item by item, lists of primitives with the merge strategy
    are unioned, other lists are replaced; `$patch`, `$retainKeys`, `$setElementOrder/` and
    `$deleteFromPrimitiveList/` directives are honoured as by k8s.io/apimachinery.
    """
    schema = patchkeys.schema_for(kind_key)
    if schema is None:
        raise strategic_merge_unsupported()
    if not isinstance(patch, dict):
        raise errors.bad_request(unmarshal_error(patch, "map[string]interface {}"))
    merger = _StrategicMerge(schema.lists)
    return merger.merge_map(copy.deepcopy(obj), copy.deepcopy(patch), ())


def strategic_merge_unsupported() -> errors.ApiError:
    accepted = "application/json-patch+json, application/merge-patch+json, "
    return errors.ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + accepted
        + "application/apply-patch+yaml",
    )


class _StrategicMerge:
    """One patch's walk. Works in place on copies the caller made."""

    def __init__(self, lists: Mapping[str, ListRule]) -> None:
        self._lists = lists

    def merge_map(self, original: Obj, patch: Obj, path: Path) -> Obj:
        if DIRECTIVE in patch:
            return self._map_directive(patch, path)
        _retain_keys(original, patch)
        self._apply_element_orders(original, patch, path)
        _delete_from_primitive_lists(original, patch)
        for key, value in patch.items():
            self._merge_field(original, key, value, (*path, key))
        return original

    def _map_directive(self, patch: Obj, path: Path) -> Obj:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            rest = {key: value for key, value in patch.items() if key != DIRECTIVE}
            return self.merge_map({}, rest, path)
        if directive == "delete":
            return {}
        raise errors.bad_request(
            f"unknown patch type: {go_repr(directive)} in map: {go_repr(patch)}"
        )

    def _merge_field(self, original: Obj, key: str, value: Any, path: Path) -> None:
        current = original.get(key, _MISSING)
        if value is None:
            original.pop(key, None)
        elif isinstance(current, dict) and isinstance(value, dict):
            original[key] = self.merge_map(current, value, path)
        elif isinstance(current, list) and isinstance(value, list):
            original[key] = self._merge_list(current, value, path)
        elif isinstance(value, dict) and value.get(DIRECTIVE) == "delete":
            original.pop(key, None)
        else:
            original[key] = self._fresh(value, path)

    def _fresh(self, value: Any, path: Path) -> Any:
        """A patch value with nothing under it to merge with: directives and nulls dropped."""
        if isinstance(value, dict):
            return self.merge_map({}, value, path)
        if isinstance(value, list):
            return self._merge_list([], value, path)
        return value

    def _rule(self, path: Path) -> ListRule | None:
        return self._lists.get(".".join(path))

    def _merge_list(self, current: list[Any], patch: list[Any], path: Path) -> list[Any]:
        rule = self._rule(path)
        if rule is None or not rule.patch_merges:
            return _plain(patch)
        return self._merge_slice(current, patch, rule.merge_key, path)

    def _merge_slice(
        self, original: list[Any], patch: list[Any], merge_key: str | None, path: Path
    ) -> list[Any]:
        if not original and not patch:
            return original
        if _element_type(original + patch) is not dict:
            merged = _dedupe(original + patch)
            patch_items, server_only = _partition(merged, patch, None)
            return _normalize_order(patch_items, server_only, patch, original, None)
        if merge_key is None:
            raise errors.bad_request(f"cannot merge lists without merge key for {path[-1]}")
        original, patch = self._special_elements(original, patch, merge_key, path)
        merged = self._merge_keyed(list(original), patch, merge_key, path)
        patch_items, server_only = _partition(merged, patch, merge_key)
        return _normalize_order(patch_items, server_only, patch, original, merge_key)

    def _special_elements(
        self, original: list[Any], patch: list[Any], merge_key: str, path: Path
    ) -> tuple[list[Any], list[Any]]:
        """Carry out `$patch` items: delete by key, or replace the whole list."""
        plain: list[Any] = []
        replace = False
        for item in patch:
            directive = item.get(DIRECTIVE, _MISSING)
            if directive is _MISSING:
                plain.append(item)
            elif directive == "delete":
                original = _without_key(original, item, merge_key)
            elif directive == "replace":
                replace = True
            elif directive == "merge":
                raise errors.bad_request("merging lists cannot yet be specified in the patch")
            else:
                raise errors.bad_request(
                    f"unknown patch type: {go_repr(directive)} in map: {go_repr(item)}"
                )
        if replace:
            return [self.merge_map({}, item, path) for item in plain], []
        return original, plain

    def _merge_keyed(
        self, original: list[Any], patch: list[Any], merge_key: str, path: Path
    ) -> list[Any]:
        for item in patch:
            if merge_key not in item:
                raise no_merge_key(item, merge_key)
            index = _index(original, item, merge_key)
            if index < 0:
                original.append(self.merge_map({}, item, path))
            else:
                original[index] = self.merge_map(original[index], item, path)
        return original

    def _apply_element_orders(self, original: Obj, patch: Obj, path: Path) -> None:
        for key in [key for key in patch if key.startswith(ORDER_PREFIX)]:
            order = patch.pop(key)
            if not isinstance(order, list):
                raise errors.bad_request("invalid patch format of setElementOrder list")
            self._order_list(original, patch, key[len(ORDER_PREFIX) :], order, path)

    def _order_list(
        self, original: Obj, patch: Obj, field: str, order: list[Any], path: Path
    ) -> None:
        """Merge `field` now and lay it out as `$setElementOrder/<field>` asks."""
        current, patched = original.get(field, _MISSING), patch.pop(field, _MISSING)
        for value in (current, patched):
            if value is not _MISSING and not isinstance(value, list):
                raise errors.bad_request("invalid patch format of setElementOrder list")
        rule = self._rule((*path, field))
        merge_key = rule.merge_key if rule else None
        current_list = [] if current is _MISSING else current
        if patched is not _MISSING:
            _check_order(patched, order, merge_key)
            current_list = self._merge_list(current_list, patched, (*path, field))
        elif current is _MISSING:
            return
        merged = current_list
        if not merged:
            original[field] = merged
            return
        key = merge_key if isinstance(merged[0], dict) else None
        patch_items, server_only = _partition(merged, order, key)
        server_order = [] if current is _MISSING else current
        original[field] = _normalize_order(patch_items, server_only, order, server_order, key)


def _retain_keys(original: Obj, patch: Obj) -> None:
    """`$retainKeys`: clear the original's keys that are not listed."""
    if RETAIN_KEYS not in patch:
        return
    keep = patch.pop(RETAIN_KEYS)
    if not isinstance(keep, list) or not all(isinstance(key, str) for key in keep):
        raise errors.bad_request("invalid patch format of retainKeys")
    for key, value in patch.items():
        if value is None or key.startswith((DELETE_PREFIX, ORDER_PREFIX)):
            continue
        if key not in keep:
            raise errors.bad_request("invalid patch format of retainKeys")
    for key in [key for key in original if key not in keep]:
        del original[key]


def _delete_from_primitive_lists(original: Obj, patch: Obj) -> None:
    for key in [key for key in patch if key.startswith(DELETE_PREFIX)]:
        doomed, field = patch.pop(key), key[len(DELETE_PREFIX) :]
        current = original.get(field)
        if doomed is None:
            original.pop(field, None)
        elif isinstance(current, list) and isinstance(doomed, list):
            if any(isinstance(item, dict | list) for item in doomed + current):
                raise errors.bad_request("invalid patch format of primitive list")
            original[field] = [item for item in current if not _contains(doomed, item)]


def _check_order(patched: list[Any], order: list[Any], merge_key: str | None) -> None:
    """Every patch item must appear in `$setElementOrder`, in the same relative order."""
    items = [item for item in patched if not (isinstance(item, dict) and DIRECTIVE in item)]
    at = 0
    for wanted in order:
        if at < len(items) and _same_key(items[at], wanted, merge_key):
            at += 1
    if at < len(items):
        raise errors.bad_request(
            f"The order in patch list:\n{go_repr(patched)}\n doesn't match "
            f"$setElementOrder list:\n{go_repr(order)}\n"
        )


def _partition(
    merged: list[Any], by: list[Any], merge_key: str | None
) -> tuple[list[Any], list[Any]]:
    """Split merged items into those named in `by` (the patch) and the server-only rest."""
    named: list[Any] = []
    server_only: list[Any] = []
    for item in merged:
        if merge_key is not None and (not isinstance(item, dict) or merge_key not in item):
            raise no_merge_key(item, merge_key)
        (named if _index(by, item, merge_key) >= 0 else server_only).append(item)
    return named, server_only


def _normalize_order(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str | None,
) -> list[Any]:
    """Patch items in patch order, server-only items in server order, interleaved by the
    server order where both sides are known (apimachinery's normalizeElementOrder)."""
    patch_items = sorted(patch_items, key=lambda item: _index(patch_order, item, merge_key))
    server_only = sorted(server_only, key=lambda item: _index(server_order, item, merge_key))
    out: list[Any] = []
    left, right = 0, 0
    while left < len(server_only) or right < len(patch_items):
        if right >= len(patch_items) or (
            left < len(server_only)
            and 0
            <= _index(server_order, server_only[left], merge_key)
            < _index(server_order, patch_items[right], merge_key)
        ):
            out.append(server_only[left])
            left += 1
        else:
            out.append(patch_items[right])
            right += 1
    return out


def _element_type(items: list[Any]) -> type:
    if any(isinstance(item, list) for item in items):
        raise rejected_patch()  # kube: "lists of lists are not supported", a 422
    kinds = {type(item) for item in items}
    if len(kinds) > 1:
        raise errors.bad_request(f"list element types are not identical: {go_repr(items)}")
    return kinds.pop()


def _index(items: list[Any], wanted: Any, merge_key: str | None) -> int:
    """Where `wanted` (or the item with its merge key value) is in `items`, or -1."""
    probe = wanted.get(merge_key, _MISSING) if merge_key is not None else wanted
    for index, item in enumerate(items):
        value = item.get(merge_key, _MISSING) if merge_key is not None else item
        if isinstance(item, dict) == (merge_key is not None) and same_value(value, probe):
            return index
    return -1


def _same_key(item: Any, wanted: Any, merge_key: str | None) -> bool:
    if merge_key is None:
        return same_value(item, wanted)
    for value in (item, wanted):
        if not isinstance(value, dict) or merge_key not in value:
            raise no_merge_key(value, merge_key)
    return same_value(item[merge_key], wanted[merge_key])


def _without_key(original: list[Any], item: Obj, merge_key: str) -> list[Any]:
    if merge_key not in item:
        raise no_merge_key(item, merge_key)
    return [kept for kept in original if _index([kept], item, merge_key) < 0]


def _dedupe(items: list[Any]) -> list[Any]:
    unique: list[Any] = []
    for item in items:
        if not _contains(unique, item):
            unique.append(item)
    return unique


def _contains(items: list[Any], wanted: Any) -> bool:
    return any(same_value(item, wanted) for item in items)


def same_value(left: Any, right: Any) -> bool:
    """Go's `==` on decoded JSON scalars: the same type and value (1 is not 1.0 or true)."""
    return left is not _MISSING and type(left) is type(right) and left == right


def _plain(value: Any) -> Any:
    """A replacing value with its `$patch` maps and null fields dropped (removeDirectives)."""
    if isinstance(value, dict):
        return {
            key: _plain(item)
            for key, item in value.items()
            if item is not None and not (isinstance(item, dict) and DIRECTIVE in item)
        }
    if isinstance(value, list):
        return [
            _plain(item) for item in value if not (isinstance(item, dict) and DIRECTIVE in item)
        ]
    return value


def no_merge_key(item: Any, merge_key: str) -> errors.ApiError:
    return errors.bad_request(
        f"map: {go_repr(item)} does not contain declared merge key: {merge_key}"
    )


def go_repr(value: Any) -> str:
    """A value printed as Go's `%v` prints decoded JSON, for error messages."""
    if isinstance(value, dict):
        inner = " ".join(f"{key}:{go_repr(value[key])}" for key in sorted(value))
        return f"map[{inner}]"
    if isinstance(value, list):
        return "[" + " ".join(go_repr(item) for item in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
