"""Table cells as `kubectl get` prints them: ages, label sets, selectors, container lists.

The kinds' `Column` callables build their cells with these, matching upstream's server-side
printers (pkg/printers/internalversion): `age_of` is `translateTimestampSince`,
`format_labels` is `labels.FormatLabels`, `format_selector` is `metav1.FormatLabelSelector`.
`AGE_COLUMN` is the AGE column every kind shows. The table code in `unistack.apiserver.tables`
renders the columns (a path column of type "date" becomes an age there; a callable's cell is
used as it is), and lends this module its duration wording.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from unistack.apiserver import selectors, tables
from unistack.apiserver.errors import ApiError
from unistack.apiserver.kinds.objects import Obj, dict_of, dicts_in, dig, int_of
from unistack.apiserver.resources import Column

NONE = "<none>"

# Every kind's AGE: the table code renders "date" cells as the time since.
AGE_COLUMN = Column(
    "Age",
    ".metadata.creationTimestamp",
    type="date",
    description="CreationTimestamp is the server time when this object was created.",
)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (metav1.Time or MicroTime), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return tables.parse_timestamp(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def age_of(value: Any) -> str:
    """`translateTimestampSince`: a timestamp's age now, "<unknown>" when unset."""
    return tables.age(value, datetime.now(UTC))


def ago(when: datetime) -> str:
    """How long ago `when` was, in `kubectl get`'s words ("5m10s")."""
    return tables.human_duration((datetime.now(UTC) - when).total_seconds())


def format_labels(labels: Any) -> str:
    """`k=v,k2=v2` sorted by key, or "<none>"."""
    pairs = sorted(dict_of(labels).items())
    return ",".join(f"{k}={v}" for k, v in pairs) or NONE


def format_selector(selector: Any, *, empty: str = "") -> str:
    """A LabelSelector in query-string form (`empty` when it selects everything)."""
    try:
        text = selectors.selector_to_string(dict_of(selector))
    except ApiError:
        return "<error>"
    return text or empty


def container_names(spec: Any) -> str:
    return ",".join(str(c.get("name", "")) for c in dicts_in(dig(spec, "containers")))


def container_images(spec: Any) -> str:
    return ",".join(str(c.get("image", "")) for c in dicts_in(dig(spec, "containers")))


def count_at(*keys: str) -> Callable[[Obj], int]:
    """A cell reading an integer count that reads 0 when unset."""

    def cell(obj: Obj) -> int:
        return int_of(dig(obj, *keys))

    return cell


def count_column(name: str, path: str, description: str) -> Column:
    """An integer column reading a dotted path, 0 when unset (as Go's zero value prints)."""
    return Column(name, count_at(*path.split(".")), type="integer", description=description)


def text_at(*keys: str, default: str = "") -> Callable[[Obj], str]:
    """A cell reading a string field, `default` when unset."""

    def cell(obj: Obj) -> str:
        value = dig(obj, *keys)
        return str(value) if value not in (None, "") else default

    return cell


def length_of(*fields: str) -> Callable[[Obj], int]:
    """A cell counting the entries of one or more top-level maps or lists."""

    def cell(obj: Obj) -> int:
        return sum(len(v) for f in fields if isinstance(v := obj.get(f), dict | list))

    return cell
