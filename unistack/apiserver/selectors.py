"""Label and field selectors: parsed once per request, matched against every object.

`parse_label_selector` reads the `labelSelector` query parameter (`a=b,c in (x,y),!d`) and
`label_selector_from_spec` the `{matchLabels, matchExpressions}` form that Deployments,
ReplicaSets and Services carry; both give a `LabelSelector`. Field selectors are in
`fieldselectors`; `Selection` joins the two for one request. The list and watch handlers call
`.matches` on every object and event, so parsing does the work up front and matching is a few
dict lookups.
Parse errors are `errors.bad_request`, worded as apimachinery words them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from unistack.apiserver import errors, validation
from unistack.apiserver.fieldselectors import FieldSelector, parse_field_selector

Obj = dict[str, Any]
Labels = Mapping[str, str]

# ---------------------------------------------------------------------------------------------
# Label selectors

IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
EXISTS, DOES_NOT_EXIST, GREATER_THAN, LESS_THAN = "exists", "!", "gt", "lt"
_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
_OPERATOR_TOKENS = {IN: IN, NOT_IN: NOT_IN, "=": EQUALS, "==": DOUBLE_EQUALS, "!=": NOT_EQUALS}
_OPERATOR_TOKENS.update({">": GREATER_THAN, "<": LESS_THAN})
_SPEC_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def _matches_in(values: frozenset[str], key: str) -> Callable[[Labels], bool]:
    return lambda labels: key in labels and labels[key] in values


def _matches_not_in(values: frozenset[str], key: str) -> Callable[[Labels], bool]:
    return lambda labels: key not in labels or labels[key] not in values


def _matches_compare(bound: int, key: str, greater: bool) -> Callable[[Labels], bool]:
    def matches(labels: Labels) -> bool:
        try:
            value = int(labels[key])
        except (KeyError, ValueError):
            return False
        return value > bound if greater else value < bound

    return matches


def _matcher(key: str, operator: str, values: tuple[str, ...]) -> Callable[[Labels], bool]:
    if operator in (IN, EQUALS, DOUBLE_EQUALS):
        return _matches_in(frozenset(values), key)
    if operator in (NOT_IN, NOT_EQUALS):
        return _matches_not_in(frozenset(values), key)
    if operator == EXISTS:
        return lambda labels: key in labels
    if operator == DOES_NOT_EXIST:
        return lambda labels: key not in labels
    return _matches_compare(int(values[0]), key, operator == GREATER_THAN)


@dataclass(frozen=True, slots=True)
class Requirement:
    """One `key op values` term; `matches` is prepared when the requirement is made."""

    key: str
    operator: str
    values: tuple[str, ...]
    matches: Callable[[Labels], bool] = dataclasses.field(compare=False, repr=False)

    def __str__(self) -> str:
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        if self.operator == EXISTS:
            return self.key
        values = ",".join(sorted(self.values))
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({values})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{values}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """An AND of requirements, sorted by key. No requirements matches everything."""

    requirements: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Labels | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _field_error_text(error: errors.FieldError) -> str:
    return f"{error.field}: {error.message()}"


def _aggregate(texts: list[str]) -> str:
    unique = list(dict.fromkeys(texts))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _requirement_errors(key: str, operator: str, values: list[str]) -> list[str]:
    problems = [errors.invalid_field("key", key, m) for m in validation.qualified_name_errors(key)]
    if operator in (IN, NOT_IN) and not values:
        detail = "for 'in', 'notin' operators, values set can't be empty"
        problems.append(errors.invalid_field("values", values, detail))
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS) and len(values) != 1:
        detail = "exact-match compatibility requires one single value"
        problems.append(errors.invalid_field("values", values, detail))
    elif operator in (EXISTS, DOES_NOT_EXIST) and values:
        detail = "values set must be empty for exists and does not exist"
        problems.append(errors.invalid_field("values", values, detail))
    elif operator in (GREATER_THAN, LESS_THAN):
        problems.extend(_compare_value_errors(values))
    for index, value in enumerate(values):
        for message in validation.label_value_errors(value):
            problems.append(errors.invalid_field(f"values[{index}][{key}]", value, message))
    return [_field_error_text(p) for p in problems]


def _compare_value_errors(values: list[str]) -> list[errors.FieldError]:
    if len(values) != 1:
        detail = "for 'Gt', 'Lt' operators, exactly one value is required"
        return [errors.invalid_field("values", values, detail)]
    try:
        int(values[0])
    except ValueError:
        detail = "for 'Gt', 'Lt' operators, the value must be an integer"
        return [errors.invalid_field("values[0]", values[0], detail)]
    return []


class _ParseError(Exception):
    pass


def _make_requirement(key: str, operator: str, values: Iterable[str]) -> Requirement:
    """A validated requirement; raises `_ParseError` with kube's aggregated message."""
    listed = list(values)
    problems = _requirement_errors(key, operator, listed)
    if problems:
        raise _ParseError(_aggregate(problems))
    return Requirement(key, operator, tuple(listed), _matcher(key, operator, tuple(listed)))


_TOKEN_RE = re.compile(r"[ \t\r\n]*(?:(==|!=|[=!(),<>])|([^ \t\r\n=!(),<>]+)|$)")
_KEYWORDS = (IN, NOT_IN)
_ID, _END = "identifier", "end of string"


def _lex(text: str) -> list[tuple[str, str]]:
    """Tokens as (kind, literal); the kind of a symbol or keyword is the literal itself."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while match := _TOKEN_RE.match(text, pos):
        symbol, word = match.groups()
        if symbol is None and word is None:
            return [*tokens, (_END, "")]
        if word is not None:
            tokens.append((word if word in _KEYWORDS else _ID, word))
        else:
            tokens.append((symbol, symbol))
        pos = match.end()
    raise AssertionError("unreachable: every position starts a token or ends the text")


class _LabelParser:
    """apimachinery's label selector grammar; `in` and `notin` are also valid values."""

    def __init__(self, text: str) -> None:
        self._tokens = _lex(text)
        self._pos = 0

    def _peek(self, as_value: bool = True) -> tuple[str, str]:
        return self._kind(self._tokens[self._pos], as_value)

    def _next(self, as_value: bool = True) -> tuple[str, str]:
        token = self._tokens[self._pos]
        self._pos += 1
        return self._kind(token, as_value)

    @staticmethod
    def _kind(token: tuple[str, str], as_value: bool) -> tuple[str, str]:
        kind, literal = token
        return (_ID, literal) if as_value and kind in _KEYWORDS else (kind, literal)

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            kind, literal = self._peek()
            if kind == _END:
                return requirements
            if kind not in (_ID, "!"):
                raise _ParseError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except _ParseError as exc:
                raise _ParseError(f"unable to parse requirement: {exc}") from None
            kind, literal = self._next()
            if kind == _END:
                return requirements
            if kind != ",":
                raise _ParseError(f"found '{literal}', expected: ',' or 'end of string'")
            after, after_literal = self._peek()
            if after not in (_ID, "!"):
                raise _ParseError(f"found '{after_literal}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        key, operator = self._key_and_inferred_operator()
        if operator:
            return _make_requirement(key, operator, [])
        operator = self._operator()
        values = self._set_values() if operator in (IN, NOT_IN) else self._exact_value()
        return _make_requirement(key, operator, sorted(values))

    def _key_and_inferred_operator(self) -> tuple[str, str]:
        kind, literal = self._next()
        operator = ""
        if kind == "!":
            operator = DOES_NOT_EXIST
            kind, literal = self._next()
        if kind != _ID:
            raise _ParseError(f"found '{literal}', expected: identifier")
        problems = validation.qualified_name_errors(literal)
        if problems:
            raise _ParseError(f"<nil>: Invalid value: {_quote(literal)}: {'; '.join(problems)}")
        if self._peek()[0] in (_END, ",") and not operator:
            operator = EXISTS
        return literal, operator

    def _operator(self) -> str:
        kind, literal = self._next(as_value=False)
        if kind not in _OPERATOR_TOKENS:
            raise _ParseError(f"found '{literal}', expected: {', '.join(_BINARY_OPERATORS)}")
        return _OPERATOR_TOKENS[kind]

    def _set_values(self) -> set[str]:
        kind, literal = self._next()
        if kind != "(":
            raise _ParseError(f"found '{literal}' expected: '('")
        kind, literal = self._peek()
        if kind == ")":
            self._next()
            return {""}
        if kind not in (_ID, ","):
            raise _ParseError(f"found '{literal}', expected: ',', ')' or identifier")
        values = self._identifiers()
        if self._next()[0] != ")":
            raise _ParseError(f"found '{literal}', expected: ')'")
        return values

    def _identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            kind, literal = self._next()
            if kind == _ID:
                values.add(literal)
                after, after_literal = self._peek()
                if after == ")":
                    return values
                if after != ",":
                    raise _ParseError(f"found '{after_literal}', expected: ',' or ')'")
            elif kind == ",":
                after = self._peek()[0]
                if not values or after in (")", ","):
                    values.add("")
                if after == ")":
                    return values
            else:
                raise _ParseError(f"found '{literal}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        if self._peek()[0] in (_END, ","):
            return {""}
        kind, literal = self._next()
        if kind != _ID:
            raise _ParseError(f"found '{literal}', expected: identifier")
        return {literal}


def _quote(text: str) -> str:
    return orjson.dumps(text).decode()


def _sorted_by_key(requirements: list[Requirement]) -> LabelSelector:
    return LabelSelector(tuple(sorted(requirements, key=lambda r: r.key)))


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a `labelSelector` query parameter; a malformed one is a 400 BadRequest."""
    try:
        return _sorted_by_key(_LabelParser(text).parse())
    except _ParseError as exc:
        raise errors.bad_request(str(exc)) from None


def _spec_requirements(spec: Mapping[str, Any]) -> list[Requirement]:
    requirements = [
        _make_requirement(k, EQUALS, [v]) for k, v in (spec.get("matchLabels") or {}).items()
    ]
    for expr in spec.get("matchExpressions") or []:
        operator = _SPEC_OPERATORS.get(expr.get("operator"))
        if operator is None:
            raise _ParseError(
                f"{_quote(str(expr.get('operator')))} is not a valid label selector operator"
            )
        requirements.append(
            _make_requirement(expr.get("key", ""), operator, expr.get("values") or [])
        )
    return requirements


def label_selector_from_spec(spec: Mapping[str, Any]) -> LabelSelector:
    """The `{matchLabels, matchExpressions}` form; an empty one matches everything."""
    try:
        return _sorted_by_key(_spec_requirements(spec))
    except _ParseError as exc:
        raise errors.bad_request(str(exc)) from None


def selector_to_string(spec: Mapping[str, Any]) -> str:
    """The selector in query-string form, as a scale subresource's `status.selector` shows it."""
    return str(label_selector_from_spec(spec))


# ---------------------------------------------------------------------------------------------
# A list's or watch's selection: both selectors of one request


@dataclass(frozen=True, slots=True)
class Selection:
    """The objects a list, watch or deletecollection selects: labels and fields both match."""

    labels: LabelSelector
    fields: FieldSelector

    @classmethod
    def parse(cls, labels: str | None, fields: str | None, kind: str) -> Selection:
        """From the `labelSelector` and `fieldSelector` parameters; 400 when malformed or
        when `kind` cannot be selected by a field."""
        field_selector = parse_field_selector(fields or "")
        field_selector.check_supported(kind)
        return cls(parse_label_selector(labels or ""), field_selector)

    @property
    def everything(self) -> bool:
        return self.labels.empty and self.fields.empty

    def matches(self, obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if not self.labels.empty and not self.labels.matches(labels):
            return False
        return self.fields.empty or self.fields.matches(obj)
