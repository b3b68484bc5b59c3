"""The list machinery every Neutron collection shares: filters, tags, sorting, pagination
and `fields`, applied to the views (the dicts the client sees), in that order; `fields`
also trims a single object (`show_body`).

- any attribute of the view filters (`?name=a&name=b` is either; booleans as true/false;
  `fixed_ips=ip_address=...` / `subnet_id=...` / `ip_address_substr=...` for ports);
- `tags` (all of), `tags-any`, `not-tags`, `not-tags-any` (comma-separated);
- `sort_key` / `sort_dir` (repeatable, paired), stable on `id`;
- `limit` / `marker` (an id) / `page_reverse`, with `<collection>_links` (`next`, and
  `previous` when a marker was given) as Neutron's pagination does;
- `fields` (repeatable) keeps only those attributes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request

from unistack.openstack.web import OpenStackError

Obj = dict[str, Any]
RESERVED = frozenset(
    {
        "fields",
        "sort_key",
        "sort_dir",
        "limit",
        "marker",
        "page_reverse",
        "tags",
        "tags-any",
        "not-tags",
        "not-tags-any",
        "all_tenants",
        "all_projects",
        "verbose",
    }
)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _matches_value(value: Any, wanted: list[str]) -> bool:
    if isinstance(value, bool):
        return _text(value) in [w.lower() for w in wanted]
    if isinstance(value, list):
        return any(_text(item) in wanted for item in value if not isinstance(item, dict))
    return _text(value) in wanted


def _matches_fixed_ips(value: Any, wanted: list[str]) -> bool:
    for condition in wanted:
        key, _, expected = condition.partition("=")
        if key == "ip_address_substr":
            if not any(expected in _text(ip.get("ip_address")) for ip in value or []):
                return False
        elif not any(_text(ip.get(key)) == expected for ip in value or []):
            return False
    return True


def matches(item: Obj, params: QueryParams) -> bool:
    for key in set(params.keys()) - RESERVED:
        if key not in item:
            continue
        wanted = params.getlist(key)
        if key == "fixed_ips":
            if not _matches_fixed_ips(item[key], wanted):
                return False
        elif not _matches_value(item[key], wanted):
            return False
    return _matches_tags(set(item.get("tags") or []), params)


def _tag_list(params: QueryParams, key: str) -> set[str]:
    return {tag for value in params.getlist(key) for tag in value.split(",") if tag}


def _matches_tags(tags: set[str], params: QueryParams) -> bool:
    if (wanted := _tag_list(params, "tags")) and not wanted <= tags:
        return False
    if (anyof := _tag_list(params, "tags-any")) and not anyof & tags:
        return False
    if (excluded := _tag_list(params, "not-tags")) and excluded <= tags:
        return False
    return not ((excluded_any := _tag_list(params, "not-tags-any")) and excluded_any & tags)


def _sort_value(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value))


def _sort_key(key: str, item: Obj) -> tuple[int, Any]:
    return _sort_value(item.get(key))


def sort(items: list[Obj], params: QueryParams) -> list[Obj]:
    keys = params.getlist("sort_key")
    dirs = params.getlist("sort_dir")
    for direction in dirs:
        if direction not in ("asc", "desc"):
            raise OpenStackError(400, f"{direction} is an invalid sort direction.")
    result = sorted(items, key=lambda item: str(item.get("id")))
    for index in reversed(range(len(keys))):
        key = keys[index]
        if items and key not in items[0]:
            raise OpenStackError(400, f"{key} is an invalid attribute for sort_keys")
        reverse = (dirs[index] if index < len(dirs) else "asc") == "desc"
        result.sort(key=functools.partial(_sort_key, key), reverse=reverse)
    return result


def _limit(params: QueryParams) -> int | None:
    text = params.get("limit")
    if text is None:
        return None
    try:
        limit = int(text)
    except ValueError as exc:
        raise OpenStackError(400, f"Bad limit request: Limit must be an integer: {text}") from exc
    if limit < 0:
        raise OpenStackError(400, "Bad limit request: Limit must be greater than 0.")
    return limit or None


def paginate(
    items: list[Obj], params: QueryParams, url: Callable[[dict[str, str]], str], collection: str
) -> tuple[list[Obj], Obj]:
    limit, marker = _limit(params), params.get("marker")
    reverse = (params.get("page_reverse") or "").lower() == "true"
    ordered = list(reversed(items)) if reverse else items
    start = 0
    if marker:
        ids = [item.get("id") for item in ordered]
        start = ids.index(marker) + 1 if marker in ids else 0
    page = ordered[start : start + limit] if limit else ordered[start:]
    links: list[Obj] = []
    if limit and page and start + limit < len(ordered):
        links.append({"rel": "next", "href": url({"marker": page[-1]["id"]})})
    if marker and page:
        links.append(
            {"rel": "previous", "href": url({"marker": page[0]["id"], "page_reverse": "True"})}
        )
    if reverse:
        page.reverse()
    return page, ({f"{collection}_links": links} if links else {})


def select_fields(item: Obj, fields: list[str]) -> Obj:
    if not fields:
        return item
    return {key: value for key, value in item.items() if key in fields}


def fields_of(request: Request) -> list[str]:
    return [f for value in request.query_params.getlist("fields") for f in value.split(",") if f]


def list_body(request: Request, collection: str, items: list[Obj]) -> Obj:
    """The answer to a list request: `{collection: [...]}` plus links when paginated."""
    params = request.query_params
    chosen = sort([item for item in items if matches(item, params)], params)

    def url(change: dict[str, str]) -> str:
        kept = [(k, v) for k, v in params.multi_items() if k not in ("marker", "page_reverse")]
        query = "&".join(f"{k}={v}" for k, v in [*kept, *change.items()])
        return f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{query}"

    page, links = paginate(chosen, params, url, collection)
    fields = fields_of(request)
    return {collection: [select_fields(item, fields) for item in page], **links}


def show_body(request: Request, member: str, item: Obj) -> Obj:
    """The answer to a show request: `{member: {...}}`, trimmed to the `fields` asked for."""
    return {member: select_fields(item, fields_of(request))}
