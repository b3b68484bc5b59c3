"""Policy rules and what they allow: pure functions, no store, no I/O.

`PolicyRule` is a role's rule read from JSON. `allows` is upstream's RBAC rule matching:
verbs (`*` is every verb), API groups (`*`), resources (`*`, `pods/log`, `*/scale`), resource
names (a rule naming objects never allows a request naming none: list, watch, create), and
non-resource URLs (`/apis/*` matches by prefix). `uncovered` is the escalation check's
comparison: the parts of some rules that a set of rules a user holds does not cover.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from unistack.apiserver.auth import Attributes

Obj = dict[str, Any]
ALL = "*"


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


@dataclass(frozen=True, slots=True)
class PolicyRule:
    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, rule: Any) -> PolicyRule:
        rule = rule if isinstance(rule, dict) else {}
        return cls(
            _strings(rule.get("verbs")),
            _strings(rule.get("apiGroups")),
            _strings(rule.get("resources")),
            _strings(rule.get("resourceNames")),
            _strings(rule.get("nonResourceURLs")),
        )

    def to_json(self) -> Obj:
        fields = {
            "verbs": self.verbs,
            "apiGroups": self.api_groups,
            "resources": self.resources,
            "resourceNames": self.resource_names,
            "nonResourceURLs": self.non_resource_urls,
        }
        return {k: list(v) for k, v in fields.items() if v or k == "verbs"}

    def __str__(self) -> str:
        """Upstream's compact form: `{APIGroups:["apps"], Resources:["deployments"], ...}`."""
        fields = (
            ("APIGroups", self.api_groups),
            ("Resources", self.resources),
            ("ResourceNames", self.resource_names),
            ("NonResourceURLs", self.non_resource_urls),
            ("Verbs", self.verbs),
        )
        shown = [f"{name}:[{_quoted(values)}]" for name, values in fields if values]
        return "{" + ", ".join(shown) + "}"


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f'"{value}"' for value in values)


def rules_of(role: Obj) -> tuple[PolicyRule, ...]:
    rules = role.get("rules")
    return tuple(PolicyRule.from_json(r) for r in rules) if isinstance(rules, list) else ()


# --- matching a request -----------------------------------------------------------------------


def allows(rule: PolicyRule, attributes: Attributes) -> bool:
    if not (ALL in rule.verbs or attributes.verb in rule.verbs):
        return False
    if not attributes.resource:
        return any(url_matches(url, attributes.path) for url in rule.non_resource_urls)
    return (
        (ALL in rule.api_groups or attributes.group in rule.api_groups)
        and resource_matches(rule.resources, attributes.resource, attributes.subresource)
        and (not rule.resource_names or attributes.name in rule.resource_names)
    )


def resource_matches(resources: Iterable[str], resource: str, subresource: str) -> bool:
    wanted = f"{resource}/{subresource}" if subresource else resource
    for candidate in resources:
        if candidate in (ALL, wanted):
            return True
        if subresource and candidate == f"*/{subresource}":
            return True
    return False


def url_matches(pattern: str, path: str) -> bool:
    if pattern in (ALL, path):
        return True
    return pattern.endswith(ALL) and path.startswith(pattern[:-1])


# --- escalation: does one set of rules cover another? -----------------------------------------


def uncovered(owned: Iterable[PolicyRule], wanted: Iterable[PolicyRule]) -> list[PolicyRule]:
    """The one-verb, one-resource pieces of `wanted` that no rule in `owned` covers."""
    held = tuple(owned)
    return [piece for rule in wanted for piece in _pieces(rule) if not _held(held, piece)]


def _pieces(rule: PolicyRule) -> Iterator[PolicyRule]:
    for verb in rule.verbs:
        for url in rule.non_resource_urls:
            yield PolicyRule((verb,), non_resource_urls=(url,))
        for group in rule.api_groups:
            for resource in rule.resources:
                names: list[tuple[str, ...]] = [(n,) for n in rule.resource_names] or [()]
                for name in names:
                    yield PolicyRule((verb,), (group,), (resource,), name)


def _held(owned: tuple[PolicyRule, ...], piece: PolicyRule) -> bool:
    return any(_covers(rule, piece) for rule in owned)


def _covers(owner: PolicyRule, piece: PolicyRule) -> bool:
    if not _has_all(owner.verbs, piece.verbs):
        return False
    if piece.non_resource_urls:
        urls = piece.non_resource_urls
        return all(any(url_matches(mine, url) for mine in owner.non_resource_urls) for url in urls)
    if not _has_all(owner.api_groups, piece.api_groups):
        return False
    if not all(_covers_resource(owner.resources, r) for r in piece.resources):
        return False
    if not owner.resource_names:
        return True
    return bool(piece.resource_names) and set(piece.resource_names) <= set(owner.resource_names)


def _has_all(owned: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    return ALL in owned or set(wanted) <= set(owned)


def _covers_resource(owned: tuple[str, ...], resource: str) -> bool:
    if ALL in owned or resource in owned:
        return True
    _, slash, subresource = resource.partition("/")
    return bool(slash) and f"*/{subresource}" in owned
