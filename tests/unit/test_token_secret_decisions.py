"""The tokens controller's decision, without I/O: a token Secret is filled once, deleted when
its ServiceAccount is missing or another one, and other Secrets are left alone."""

from __future__ import annotations

import base64
from typing import Any

from unistack.kube.tokens import (
    NAME_ANNOTATION,
    TOKEN_TYPE,
    UID_ANNOTATION,
    Delete,
    Fill,
    decide,
    filled,
)

Obj = dict[str, Any]
ACCOUNT = {"metadata": {"name": "robot", "namespace": "team", "uid": "u-1"}}


def secret(uid: str | None = None, data: Obj | None = None, kind: str = TOKEN_TYPE) -> Obj:
    annotations = {NAME_ANNOTATION: "robot"}
    if uid:
        annotations[UID_ANNOTATION] = uid
    meta = {"name": "robot-token", "namespace": "team", "uid": "s-1", "annotations": annotations}
    return {"type": kind, "metadata": meta, "data": data or {}}


def test_an_empty_token_secret_is_filled_for_its_account() -> None:
    assert decide(secret(), ACCOUNT) == Fill("u-1")
    assert decide(secret(uid="u-1"), ACCOUNT) == Fill("u-1")  # annotated, but no token yet


def test_a_filled_one_is_left_and_other_secrets_are_not_looked_at() -> None:
    done = secret(uid="u-1", data={"token": "dA==", "namespace": "dGVhbQ=="})
    assert decide(done, ACCOUNT) is None
    assert decide(secret(kind="Opaque"), None) is None


def test_a_missing_or_replaced_account_deletes_the_secret() -> None:
    assert isinstance(decide(secret(), None), Delete)
    assert isinstance(decide(secret(uid="u-0"), ACCOUNT), Delete)


def test_filling_keeps_what_the_secret_had_and_names_the_account() -> None:
    before = secret(data={"extra": "eA=="})
    after = filled(before, "jwt", "u-1", "PEM")
    decoded = {k: base64.b64decode(v).decode() for k, v in after["data"].items()}
    assert decoded == {"extra": "x", "token": "jwt", "namespace": "team", "ca.crt": "PEM"}
    assert after["metadata"]["annotations"][UID_ANNOTATION] == "u-1"
    assert "token" not in before["data"]  # a copy
