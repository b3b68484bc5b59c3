"""Service-account tokens: issued by TokenRequest, accepted as bearer tokens.

A token is a JWT signed with the cluster's service-account key, as kube-apiserver's with
`--service-account-signing-key-file`: `unistack up` makes `pki/sa.key` (EC P-256, so ES256);
an API server built without one (in-process tests) signs with a key of its own. Its claims
are upstream's: `iss`, `sub` (`system:serviceaccount:<namespace>:<name>`), `aud`, `exp`,
`iat`, `nbf`, `jti`, and `kubernetes.io` naming the namespace, the ServiceAccount (name, uid)
and the object the token is bound to (a Pod, a Secret or a Node: name, uid). PyJWT signs and
checks them.

`TokenIssuer` signs the tokens TokenRequest asks for (`unistack.apiserver.tokenrequest`).

`ServiceAccountAuthenticator` takes a bearer token that verifies (signature, issuer, one of the
API server's audiences, time) and names a ServiceAccount that still exists with the same uid,
bound to an object that still exists with the same uid and whose deletion is not past (a pod's
token serves through its grace period): the caller is `system:serviceaccount:<ns>:<name>` in
the groups `system:serviceaccounts` and `system:serviceaccounts:<ns>`. Deleting the
ServiceAccount or the pod revokes its tokens at once. Authentication answers on every request
without a store read, so `Accounts` follows the uids of ServiceAccounts, Pods, Secrets and
Nodes in memory (`following.StoreFollower`).

The issuer's OpenID discovery (`/.well-known/openid-configuration`, `/openid/v1/jwks`) is
served as kube-apiserver serves it, for clients that check tokens themselves.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from unistack import store as storage
from unistack.apiserver import following, tables
from unistack.apiserver.kinds import core, core_config, core_pod
from unistack.apiserver.request import User
from unistack.apiserver.resources import ResourceType

Obj = dict[str, Any]

ISSUER = "https://kubernetes.default.svc.cluster.local"
ALGORITHM = "ES256"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
VERIFIED_TOKENS = 4096  # remembered verified tokens (`TokenIssuer.verify`)
PREFIX = "system:serviceaccount:"
GROUP = "system:serviceaccounts"
# what a token may be bound to, by kind
BOUND_KINDS: dict[str, ResourceType] = {
    rt.kind: rt for rt in (core_pod.POD, core_config.SECRET, core.NODE)
}


@dataclass(frozen=True, slots=True)
class Bound:
    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class Claims:
    namespace: str
    name: str
    uid: str
    bound: Bound | None


class TokenIssuer:
    """Signs service-account tokens and checks the ones it signed."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        issuer: str = ISSUER,
        audiences: tuple[str, ...] = (ISSUER,),
    ) -> None:
        self.key = key
        self.public_key = key.public_key()
        self.issuer = issuer
        self.audiences = audiences
        der = self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # as upstream: the key id is the unpadded base64url SHA-256 of the public key's DER
        self.key_id = jwt.utils.base64url_encode(hashlib.sha256(der).digest()).decode()
        self._verified: dict[str, tuple[Claims, float]] = {}  # token -> (claims, expiry)

    @classmethod
    def from_file(cls, path: str | Path) -> TokenIssuer:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path}: the service-account key must be an EC private key")
        return cls(key)

    @classmethod
    def ephemeral(cls) -> TokenIssuer:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def issue(
        self,
        namespace: str,
        account: Obj,
        audiences: list[str],
        expiration: int,
        bound: Bound | None,
        node: str = "",
    ) -> tuple[str, int]:
        """A signed token and the time it expires (seconds since the epoch)."""
        now = int(time.time())
        meta = account["metadata"]
        private: Obj = {
            "namespace": namespace,
            "serviceaccount": {"name": meta["name"], "uid": meta.get("uid", "")},
        }
        if bound is not None:
            private[bound.kind.lower()] = {"name": bound.name, "uid": bound.uid}
            if node:
                private["node"] = {"name": node}
        claims = {
            "aud": audiences,
            "exp": now + expiration,
            "iat": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": now,
            "sub": f"{PREFIX}{namespace}:{meta['name']}",
        }
        token = jwt.encode(claims, self.key, ALGORITHM, headers={"kid": self.key_id})
        return token, now + expiration

    def verify(self, token: str, audiences: list[str] | None = None) -> Claims | None:
        """The claims of a token this issuer signed for one of `audiences` (its own by
        default), still valid. Tokens for its own audiences are remembered until they
        expire: checking an ES256 signature costs about 100 µs, a request with a remembered
        token a dict lookup (as kube-apiserver caches authenticated tokens)."""
        if audiences is None:
            known = self._verified.get(token)
            if known is not None and known[1] > time.time():
                return known[0]
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=[ALGORITHM],
                audience=audiences or list(self.audiences),
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            return None
        account = private.get("serviceaccount") or {}
        namespace = private.get("namespace")
        if not isinstance(namespace, str) or not isinstance(account, dict):
            return None
        if claims["sub"] != f"{PREFIX}{namespace}:{account.get('name')}":
            return None
        bound = None
        for kind in BOUND_KINDS:
            ref = private.get(kind.lower())
            if isinstance(ref, dict):
                bound = Bound(kind, str(ref.get("name", "")), str(ref.get("uid", "")))
                break
        found = Claims(namespace, str(account.get("name")), str(account.get("uid", "")), bound)
        if audiences is None:
            if len(self._verified) >= VERIFIED_TOKENS:
                del self._verified[next(iter(self._verified))]  # the oldest
            self._verified[token] = (found, float(claims["exp"]))
        return found

    def openid_configuration(self) -> Obj:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
        }

    def jwks(self) -> Obj:
        key = orjson.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.public_key))
        return {"keys": [{**key, "use": "sig", "kid": self.key_id, "alg": ALGORITHM}]}


class _Uids:
    """One store prefix's objects as key -> (uid, deletionTimestamp or "")."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[str, str]] = {}

    def replace(self, items: list[storage.Stored]) -> None:
        self.objects = {item.key: _uid_of(item.value) for item in items}

    def apply(self, event: storage.Event) -> None:
        if event.type is storage.EventType.DELETED:
            self.objects.pop(event.key, None)
        else:
            self.objects[event.key] = _uid_of(event.value)


def _uid_of(value: bytes) -> tuple[str, str]:
    meta = orjson.loads(value).get("metadata") or {}
    return str(meta.get("uid", "")), str(meta.get("deletionTimestamp") or "")


class Accounts:
    """Which ServiceAccounts and bound objects exist now, followed from the store."""

    def __init__(self, store: storage.ObjectStore) -> None:
        kinds = (core_config.SERVICE_ACCOUNT, *BOUND_KINDS.values())
        self.tables = {rt.key_prefix: _Uids() for rt in kinds}
        self.followers = [
            following.StoreFollower(store, prefix, table) for prefix, table in self.tables.items()
        ]

    async def start(self) -> None:
        for follower in self.followers:
            await follower.start()

    def stop(self) -> None:
        for follower in self.followers:
            follower.stop()

    def live(self, rt: ResourceType, namespace: str, name: str, uid: str, now: float) -> bool:
        """Whether the object exists with `uid` and its deletion, if any, is still ahead."""
        found = self.tables[rt.key_prefix].objects.get(rt.key(namespace, name))
        if found is None or found[0] != uid:
            return False
        deleting = found[1]
        return not deleting or tables.parse_timestamp(deleting).timestamp() > now


def split_user_name(user_name: str) -> tuple[str, str] | None:
    """The (namespace, name) of a service account's user name, None for anyone else's."""
    parts = user_name.removeprefix(PREFIX).split(":") if user_name.startswith(PREFIX) else []
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def service_account_user(namespace: str, name: str, uid: str) -> User:
    return User(
        f"{PREFIX}{namespace}:{name}",
        uid,
        (GROUP, f"{GROUP}:{namespace}", "system:authenticated"),
    )


class ServiceAccountAuthenticator:
    """Bearer tokens that are live service-account tokens of this issuer."""

    def __init__(self, issuer: TokenIssuer, accounts: Accounts) -> None:
        self.issuer = issuer
        self.accounts = accounts

    def authenticate(self, authorization: str | None) -> User | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        return self.user_of(authorization[7:].strip())

    def user_of(self, token: str, audiences: list[str] | None = None) -> User | None:
        """Whose live token this is, for `audiences` (the API server's by default)."""
        if token.count(".") != 2:  # not a JWT: a static or Keystone token, asked next
            return None
        claims = self.issuer.verify(token, audiences)
        if claims is None:
            return None
        now, accounts, bound = time.time(), self.accounts, claims.bound
        account = core_config.SERVICE_ACCOUNT
        if not accounts.live(account, claims.namespace, claims.name, claims.uid, now):
            return None
        if bound is not None:
            rt = BOUND_KINDS[bound.kind]
            if not accounts.live(rt, claims.namespace, bound.name, bound.uid, now):
                return None
        return service_account_user(claims.namespace, claims.name, claims.uid)

    async def start(self) -> None:
        await self.accounts.start()

    def stop(self) -> None:
        self.accounts.stop()
