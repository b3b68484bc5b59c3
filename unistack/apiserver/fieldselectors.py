"""Field selectors: `fieldSelector=metadata.name=web,status.phase!=Running`.

`parse_field_selector` reads the parameter into a `FieldSelector` (terms joined by commas,
`=`, `==` or `!=`, with apimachinery's escaping); `check_supported` holds it to the fields a
kind can be selected by (`SUPPORTED_FIELDS`; every kind has metadata.name and
metadata.namespace). Field values read as kube reads them: booleans as true/false and a
missing typed field as its zero value. Label selectors and `Selection` are in `selectors`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from unistack.apiserver import errors

Obj = dict[str, Any]


class _ParseError(Exception):
    """A malformed field selector; the caller reports it as a 400."""


_META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def _with_meta(names: str) -> frozenset[str]:
    return _META_FIELDS | frozenset(names.split())


SUPPORTED_FIELDS: dict[str, frozenset[str]] = {
    "Pod": _with_meta(
        "spec.nodeName spec.restartPolicy spec.schedulerName spec.serviceAccountName "
        "spec.hostNetwork status.phase status.podIP status.nominatedNodeName"
    ),
    "Event": _with_meta(
        "involvedObject.kind involvedObject.namespace involvedObject.name involvedObject.uid "
        "involvedObject.apiVersion involvedObject.resourceVersion involvedObject.fieldPath "
        "reason reportingComponent source type"
    ),
    "Secret": _with_meta("type"),
    "Node": _with_meta("spec.unschedulable"),
    "Namespace": _with_meta("status.phase"),
    "Service": _with_meta("spec.clusterIP spec.type"),
    "ReplicationController": _with_meta("status.replicas"),
    "ReplicaSet": _with_meta("status.replicas"),
    "Job": _with_meta("status.successful"),
    "CertificateSigningRequest": _with_meta("spec.signerName"),
}
"""Field selector labels by kind; any other kind (custom ones too) has only the metadata two."""

# Fields whose value is not simply the object's value at that dotted path.
_FIELD_PATHS = {
    "status.successful": "status.succeeded",
    "reportingComponent": "reportingController",
}
# Go zero values, shown when a typed field is absent.
_ZERO_VALUES = {
    "spec.hostNetwork": "false",
    "spec.unschedulable": "false",
    "status.replicas": "0",
    "status.successful": "0",
}


def _as_field_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _path_getter(name: str) -> Callable[[Obj], str]:
    parts = tuple(_FIELD_PATHS.get(name, name).split("."))
    missing = _ZERO_VALUES.get(name, "")

    def read(obj: Obj) -> str:
        node: Any = obj
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return missing
            node = node[part]
        return missing if node is None else _as_field_text(node)

    return read


def _event_source(obj: Obj) -> str:
    component = (obj.get("source") or {}).get("component")
    return _as_field_text(component or obj.get("reportingController"))


def _getter(name: str) -> Callable[[Obj], str]:
    return _event_source if name == "source" else _path_getter(name)


@dataclass(frozen=True, slots=True)
class FieldTerm:
    """`field=value` (or `field!=value` when `negated`)."""

    field: str
    value: str
    negated: bool
    read: Callable[[Obj], str] = dataclasses.field(compare=False, repr=False)

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        return f"{self.field}{'!=' if self.negated else '='}{escaped}"


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """An AND of field terms, sorted as kube sorts them. No terms matches everything."""

    terms: tuple[FieldTerm, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.terms

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(t.field for t in self.terms)

    def matches(self, obj: Obj) -> bool:
        return all((term.read(obj) == term.value) != term.negated for term in self.terms)

    def requires_exact_match(self, field_name: str) -> str | None:
        """The value `field_name` must equal, if a term pins it (e.g. `metadata.name`)."""
        for term in self.terms:
            if term.field == field_name and not term.negated:
                return term.value
        return None

    def check_supported(self, kind: str, extra: Iterable[str] = ()) -> None:
        """Reject, as a 400, fields that `kind` cannot be selected by.

        `extra` adds fields a kind declares itself (a CRD's `selectableFields`).
        """
        supported = SUPPORTED_FIELDS.get(kind, _META_FIELDS) | frozenset(extra)
        for term in self.terms:
            if term.field not in supported:
                raise errors.bad_request(f"field label not supported: {term.field}")

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)


def _split_terms(text: str) -> list[str]:
    terms, start, escaped = [], 0, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(text[start:index])
            start = index + 1
    return [*terms, text[start:]]


def _split_term(term: str) -> tuple[str, str, str] | None:
    for index in range(len(term)):
        for operator in ("!=", "==", "="):
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator) :]
    return None


def _unescape(value: str) -> str:
    out, escaped = [], False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise _ParseError(f"invalid field selector: invalid escape sequence: \\{char}")
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise _ParseError(f"invalid field selector: unescaped character in value: {ord(char)}")
        else:
            out.append(char)
    if escaped:
        raise _ParseError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _parse_field_terms(text: str) -> list[FieldTerm]:
    terms: list[FieldTerm] = []
    for part in sorted(_split_terms(text)) if text else []:
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise _ParseError(f"invalid selector: '{text}'; can't understand '{part}'")
        name, operator, value = split
        terms.append(FieldTerm(name, _unescape(value), operator == "!=", _getter(name)))
    return terms


def parse_field_selector(text: str) -> FieldSelector:
    """Parse a `fieldSelector` query parameter; a malformed one is a 400 BadRequest."""
    try:
        return FieldSelector(tuple(_parse_field_terms(text)))
    except _ParseError as exc:
        raise errors.bad_request(str(exc)) from None
