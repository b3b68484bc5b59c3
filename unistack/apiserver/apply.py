"""Server-side apply and field ownership: which manager owns which fields of an object.

`server_side_apply` merges an applied configuration into the live object as kube-apiserver's
field manager does: fields another manager owns with a different value are a 409 Conflict
unless forced, and fields the applier applied before but no longer applies are removed when
nobody else owns them. `track_update` records, for a create, update or non-apply patch, that
the writer now owns what it changed. Both keep `metadata.managedFields` in kube's FieldsV1
encoding. The field-by-field work is `unistack.apiserver.fieldsets`; list keys come from
`unistack.apiserver.patchkeys`. The PATCH and write handlers call these; nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from unistack.apiserver import errors, fieldsets, patch, patchkeys
from unistack.apiserver.fieldsets import FieldPath
from unistack.apiserver.patchkeys import KindSchema

Obj = dict[str, Any]

BEFORE_FIRST_APPLY = "before-first-apply"

# Fields nobody owns: the object's identity and the server's bookkeeping (kube's stripMeta).
_UNOWNED: frozenset[FieldPath] = frozenset(
    {(("f", "apiVersion"),), (("f", "kind"),), (("f", "metadata"),)}
    | {
        (("f", "metadata"), ("f", name))
        for name in (
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        )
    }
)


@dataclass(frozen=True, slots=True)
class ManagerId:
    """Who owns fields. Appliers are one manager whatever API version they apply with."""

    manager: str
    operation: str
    api_version: str
    subresource: str = ""

    @classmethod
    def of(cls, manager: str, operation: str, api_version: str, subresource: str) -> ManagerId:
        version = "" if operation == "Apply" else api_version
        return cls(manager, operation, version, subresource)

    def identifier(self) -> str:
        """kube's manager identifier: the entry's JSON without fields or time."""
        entry = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "subresource": self.subresource,
        }
        return json.dumps({k: v for k, v in entry.items() if v}, separators=(",", ":"))

    def described(self) -> str:
        """`"kubectl-edit" using apps/v1`, as conflict messages name a manager."""
        text = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        return f"{text} using {self.api_version}" if self.operation == "Update" else text


@dataclass(frozen=True, slots=True)
class Ownership:
    """One managedFields entry: the fields a manager owns, and when it last changed them."""

    fields: frozenset[FieldPath]
    api_version: str
    time: str | None = None


Managers = dict[ManagerId, Ownership]

# The write being recorded, before its fields join its manager's (kube's "current-operation").
_CURRENT_OPERATION = ManagerId("current-operation", "Update", "")


# --- Server-side apply --------------------------------------------------------------------


def server_side_apply(
    live: Obj | None,
    applied: Obj,
    manager: str,
    force: bool,
    kind_key: str,
    now: str,
    *,
    subresource: str = "",
    ignored_fields: Iterable[str] = (),
) -> Obj:
    """The object after `manager` applies `applied` to `live` (None: it does not exist yet).

    Raises 409 Conflict, one cause per field, when another manager owns a field this apply
    changes and `force` is false; with `force` the ownership moves to `manager`.
    `ignored_fields` are dotted paths the endpoint resets, such as `status` on the main
    resource (kube's ResetFields): nobody comes to own them and they never conflict.
    """
    _check_applied(applied)
    schema = patchkeys.schema_for(kind_key) or patchkeys.EMPTY
    ignored = _field_names(ignored_fields)
    base = without_managed_fields(live) if live is not None else {}
    managers = _managers_before_apply(live, base, schema, now, subresource)
    me = ManagerId.of(manager, "Apply", "", subresource)
    previous = managers.get(me)
    try:
        applied_fields = fieldsets.outside(fieldsets.fields_of(applied, schema), ignored)
        merged = fieldsets.merge(base, applied, schema)
        managers[me] = Ownership(applied_fields, str(applied.get("apiVersion", "")))
        merged = _prune(merged, managers, previous, schema)
        comparison = fieldsets.compare(base, merged, schema).outside(ignored)
    except ValueError as exc:
        raise errors.internal(
            f"failed to create typed patch object ({_gvknn(applied)}): {exc}"
        ) from exc
    _take_over(managers, me, comparison, force)
    changed = not fieldsets.json_equal(base, merged)
    _finish_own_entry(managers, me, now if changed or previous is None else previous.time)
    return with_managed_fields(merged, managers)


def _gvknn(obj: Obj) -> str:
    """`default/web; apps/v1, Kind=Deployment`, as kube names an object in apply errors."""
    metadata = _metadata(obj)
    where = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
    return f"{where}; {obj.get('apiVersion', '')}, Kind={obj.get('kind', '')}"


def _check_applied(applied: Any) -> None:
    if not isinstance(applied, dict):
        reason = patch.unmarshal_error(applied, "map[string]interface {}")
        raise errors.bad_request(f"error decoding YAML: {reason}")
    metadata = applied.get("metadata")
    if isinstance(metadata, dict) and metadata.get("managedFields") is not None:
        raise errors.bad_request("metadata.managedFields must be nil")


def _managers_before_apply(
    live: Obj | None, base: Obj, schema: KindSchema, now: str, subresource: str
) -> Managers:
    """The live object's managers; one that never had any gets `before-first-apply`, owner
    of everything already set, so the first applier cannot silently take it over."""
    if live is None:
        return {}
    managers = decode_managers(live)
    if managers:
        return managers
    api_version = str(live.get("apiVersion", ""))
    me = ManagerId.of(BEFORE_FIRST_APPLY, "Update", api_version, subresource)
    _record_update(managers, me, fieldsets.compare(dict(schema.zero), base, schema), now)
    return managers


def _prune(merged: Obj, managers: Managers, previous: Ownership | None, schema: KindSchema) -> Obj:
    """Remove what the applier applied last time, dropped now, and nobody else owns.

    The three removals are structured-merge-diff's prune, addBackOwnedItems and
    addBackDanglingItems, written as set operations over named fields."""
    if previous is None or not previous.fields:
        return merged
    named = fieldsets.with_named_parents
    last = named(previous.fields)
    merged_fields = named(fieldsets.fields_of(merged, schema))
    owned = named(set().union(*(ownership.fields for ownership in managers.values())))
    pruned = fieldsets.remove(merged, last, schema)
    orphans = merged_fields - (named(fieldsets.fields_of(pruned, schema)) | owned)
    pruned = fieldsets.remove(merged, orphans, schema)
    doomed = (merged_fields - named(fieldsets.fields_of(pruned, schema))) & last
    return fieldsets.remove(merged, doomed, schema)


def _take_over(
    managers: Managers, me: ManagerId, comparison: fieldsets.Comparison, force: bool
) -> None:
    """Other managers lose what this write changed or removed; without `force`, changing a
    field another manager owns is a conflict instead."""
    changed = comparison.modified | comparison.added
    conflicts = {
        other: ownership.fields & changed
        for other, ownership in managers.items()
        if other != me and ownership.fields & changed
    }
    if conflicts and not force:
        raise conflict_error(conflicts)
    for other, ownership in list(managers.items()):
        if other != me:
            _set_fields(managers, other, ownership.fields - changed - comparison.removed)


def _finish_own_entry(managers: Managers, me: ManagerId, time: str | None) -> None:
    ownership = managers[me]
    _set_fields(managers, me, ownership.fields - _UNOWNED)
    if me in managers:
        managers[me] = replace(managers[me], time=time)


def _set_fields(managers: Managers, who: ManagerId, fields: frozenset[FieldPath]) -> None:
    if fields:
        managers[who] = replace(managers[who], fields=fields)
    else:
        managers.pop(who, None)


def conflict_error(conflicts: dict[ManagerId, frozenset[FieldPath]]) -> errors.ApiError:
    """409 Conflict naming every conflicting field, worded as kube-apiserver words it."""
    found = [
        (who, fieldsets.path_string(path))
        for who in sorted(conflicts, key=ManagerId.identifier)
        for path in fieldsets.ordered(conflicts[who])
    ]
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {who.described()}",
            "field": at,
        }
        for who, at in found
    ]
    if len(found) == 1:
        who, at = found[0]
        message = f"Apply failed with 1 conflict: conflict with {who.described()}: {at}"
    else:
        message = f"Apply failed with {len(found)} conflicts: " + "\n".join(_conflict_lines(found))
    return errors.ApiError(409, "Conflict", message, details={"causes": causes})


def _conflict_lines(found: list[tuple[ManagerId, str]]) -> list[str]:
    lines: list[str] = []
    for index, (who, at) in enumerate(found):
        if index == 0 or found[index - 1][0] != who:
            lines.append(f"conflicts with {who.described()}:")
        lines.append(f"- {at}")
    return lines


# --- Tracking other writes ------------------------------------------------------------------


def track_update(
    old: Obj | None,
    new: Obj,
    manager: str,
    operation: str,
    api_version: str,
    now: str,
    *,
    subresource: str = "",
    kind_key: str | None = None,
    ignored_fields: Iterable[str] = (),
) -> Obj:
    """`new` with managedFields saying `manager` owns what this write changed.

    For a create `old` is None and the write is compared with the kind's empty object.
    Managed fields sent in `new` replace the stored ones (`[]` or `[{}]` clears them), as
    kube allows; other managers lose the fields this write changed or removed. The kind
    comes from `new` unless `kind_key` names it; `ignored_fields` are as for apply.
    """
    schema = patchkeys.schema_for(kind_key or patchkeys.kind_key_of(new)) or patchkeys.EMPTY
    managers = _managers_for_update(old, new, subresource)
    before = without_managed_fields(old) if old is not None else dict(schema.zero)
    after = without_managed_fields(new)
    me = ManagerId.of(manager or "unknown", operation, api_version, subresource)
    try:
        comparison = fieldsets.compare(before, after, schema)
    except ValueError:  # kube keeps the stored managedFields when it cannot track a write
        return with_managed_fields(after, decode_managers(old) if old is not None else {})
    _record_update(managers, me, comparison.outside(_field_names(ignored_fields)), now)
    return with_managed_fields(after, managers)


def _record_update(
    managers: Managers, me: ManagerId, comparison: fieldsets.Comparison, now: str
) -> None:
    """`me` owns what changed, on top of what it kept; everyone else loses it."""
    _take_over(managers, _CURRENT_OPERATION, comparison, force=True)
    changed = frozenset(comparison.modified | comparison.added) - _UNOWNED
    if changed:
        kept = managers[me].fields if me in managers else frozenset()
        managers[me] = Ownership(changed | kept, me.api_version, now)


def _field_names(dotted: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(path.split(".")) for path in dotted)


def _managers_for_update(old: Obj | None, new: Obj, subresource: str) -> Managers:
    """kube's decodeLiveOrNew: the request's managedFields if it sent usable ones."""
    stored = decode_managers(old) if old is not None else {}
    if subresource:
        return stored
    sent = _metadata(new).get("managedFields", fieldsets.MISSING)
    if sent == [] or sent == [{}]:
        return {}
    return decode_managers(new) or stored


# --- managedFields --------------------------------------------------------------------------


def decode_managers(obj: Obj) -> Managers:
    """The object's managedFields, decoded; entries that are not valid FieldsV1 are skipped."""
    managers: Managers = {}
    entries = _metadata(obj).get("managedFields")
    for entry in entries if isinstance(entries, list) else []:
        decoded = _decode_entry(entry)
        if decoded is not None:
            who, ownership = decoded
            if who in managers:
                fields = managers[who].fields | ownership.fields
                ownership = replace(ownership, fields=fields)
            managers[who] = ownership
    return managers


def _decode_entry(entry: Any) -> tuple[ManagerId, Ownership] | None:
    if not isinstance(entry, dict) or entry.get("fieldsType", "FieldsV1") != "FieldsV1":
        return None
    try:
        fields = frozenset(fieldsets.decode(entry.get("fieldsV1") or {}))
    except (ValueError, TypeError):
        return None
    api_version = str(entry.get("apiVersion", ""))
    who = ManagerId.of(
        str(entry.get("manager", "")),
        str(entry.get("operation", "")),
        api_version,
        str(entry.get("subresource", "")),
    )
    time = entry.get("time")
    return who, Ownership(fields, api_version, time if isinstance(time, str) else None)


def encode_managers(managers: Managers) -> list[Obj]:
    """managedFields entries, in kube's order: appliers first, then oldest first."""
    order = sorted(managers.items(), key=lambda item: _entry_order(*item))
    return [_encode_entry(who, ownership) for who, ownership in order]


def _entry_order(who: ManagerId, ownership: Ownership) -> tuple[Any, ...]:
    return (
        who.operation,
        _seconds(ownership.time),
        who.manager,
        ownership.api_version,
        who.subresource,
    )


def _seconds(time: str | None) -> float:
    try:
        return datetime.fromisoformat(time).timestamp() if time else 0.0
    except ValueError:
        return 0.0


def _encode_entry(who: ManagerId, ownership: Ownership) -> Obj:
    entry: Obj = {"manager": who.manager, "operation": who.operation}
    entry["apiVersion"] = ownership.api_version
    if ownership.time is not None:
        entry["time"] = ownership.time
    entry["fieldsType"] = "FieldsV1"
    entry["fieldsV1"] = fieldsets.encode(ownership.fields)
    if who.subresource:
        entry["subresource"] = who.subresource
    return entry


def with_managed_fields(obj: Obj, managers: Managers) -> Obj:
    """A copy of `obj` whose managedFields are `managers` (none at all when empty)."""
    result = without_managed_fields(obj)
    if managers:
        metadata = result.setdefault("metadata", {})
        metadata["managedFields"] = encode_managers(managers)
    return result


def without_managed_fields(obj: Obj) -> Obj:
    """A copy of `obj` without `metadata.managedFields`.

    Only the top level and metadata are copied: nothing here changes nested values, and the
    objects handlers pass are decoded afresh for each request, so sharing them is safe (and a
    deep copy was the largest cost of a create).
    """
    result = dict(obj)
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        result["metadata"] = {k: v for k, v in metadata.items() if k != "managedFields"}
    return result


def _metadata(obj: Obj) -> Obj:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}
