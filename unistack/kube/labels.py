"""Label selectors (`metav1.LabelSelector`) as upstream reads them: `matchLabels` and
`matchExpressions` (In, NotIn, Exists, DoesNotExist), all of which must hold.

`selector_matches` is upstream's LabelSelectorAsSelector: no selector selects nothing, an
empty one selects everything. A workload's selector reads an empty one as nothing
(`replicaset.selector_matches`), a claim's as everything; those callers say so where they
call this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]


def labels_of(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def is_empty(selector: Obj | None) -> bool:
    """No selector, or one without a label or expression."""
    return not selector or not (selector.get("matchLabels") or selector.get("matchExpressions"))


def selector_matches(selector: Obj | None, labels: Mapping[str, str] | None) -> bool:
    """Whether the selector selects these labels; None selects nothing, {} everything."""
    if selector is None:
        return False
    labels = labels or {}
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(key) != value for key, value in wanted.items()):
        return False
    return all(_expression_matches(e, labels) for e in selector.get("matchExpressions") or [])


def _expression_matches(expression: Obj, labels: Mapping[str, str]) -> bool:
    key, operator = expression.get("key", ""), expression.get("operator")
    values = expression.get("values") or []
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False
