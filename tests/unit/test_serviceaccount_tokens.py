"""Service-account tokens as the issuer signs and checks them (`apiserver.serviceaccounts`)."""

from __future__ import annotations

import time

import jwt

from unistack.apiserver.serviceaccounts import ISSUER, Bound, Claims, TokenIssuer

ACCOUNT = {"metadata": {"name": "robot", "uid": "sa-uid"}}


def test_a_token_carries_upstreams_claims_and_verifies() -> None:
    issuer = TokenIssuer.ephemeral()
    bound = Bound("Pod", "web", "pod-uid")
    token, expires = issuer.issue("team", ACCOUNT, [ISSUER], 3600, bound, node="n1")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"] == issuer.key_id
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:team:robot"
    assert claims["exp"] == expires and claims["exp"] - claims["iat"] == 3600
    assert claims["kubernetes.io"] == {
        "namespace": "team",
        "serviceaccount": {"name": "robot", "uid": "sa-uid"},
        "pod": {"name": "web", "uid": "pod-uid"},
        "node": {"name": "n1"},
    }
    assert issuer.verify(token) == Claims("team", "robot", "sa-uid", bound)
    # another issuer's key does not verify it, nor does another audience
    assert TokenIssuer.ephemeral().verify(token) is None
    assert issuer.verify(token, ["vault"]) is None


def test_an_expired_token_is_refused_even_once_remembered() -> None:
    issuer = TokenIssuer.ephemeral()
    stale, _ = issuer.issue("team", ACCOUNT, [ISSUER], -10, None)
    assert issuer.verify(stale) is None
    brief, _ = issuer.issue("team", ACCOUNT, [ISSUER], 1, None)
    assert issuer.verify(brief) is not None  # checked and remembered
    time.sleep(1.1)
    assert issuer.verify(brief) is None


def test_a_token_whose_subject_is_not_its_account_is_refused() -> None:
    issuer = TokenIssuer.ephemeral()
    token, _ = issuer.issue("team", ACCOUNT, [ISSUER], 600, None)
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["sub"] = "system:serviceaccount:kube-system:admin"
    forged = jwt.encode(claims, issuer.key, "ES256")  # signed, yet not coherent
    assert issuer.verify(forged) is None


def test_the_jwks_document_holds_the_public_key() -> None:
    issuer = TokenIssuer.ephemeral()
    keys = issuer.jwks()["keys"]
    assert [(k["kty"], k["crv"], k["kid"], k["alg"], k["use"]) for k in keys] == [
        ("EC", "P-256", issuer.key_id, "ES256", "sig")
    ]
    assert "d" not in keys[0]  # never the private part
