"""Continue tokens for paged LISTs (`limit` and `continue`).

A token carries the last key of the page and the revision the first page was read at, as
opaque base64 JSON; a token that does not decode is a 400.
"""

from __future__ import annotations

import base64

import orjson

from unistack.apiserver import errors


def encode_continue(key: str, revision: int) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": key})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str | None) -> str | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded))
        return str(data["start"])
    except (ValueError, KeyError, TypeError):
        raise errors.bad_request("continue key is not valid: malformed token") from None
