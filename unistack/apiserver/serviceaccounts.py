"""Service-account tokens: issued by TokenRequest, accepted as bearer tokens.

A token is a JWT signed with the cluster's service-account key, as kube-apiserver's with
`--service-account-signing-key-file`: `unistack up` makes `pki/sa.key` (EC P-256, so ES256);
an API server built without one (in-process tests) signs with a key of its own. Its claims
are upstream's: `iss`, `sub` (`system:serviceaccount:<namespace>:<name>`), `aud`, `exp`,
`iat`, `nbf`, `jti`, and `kubernetes.io` naming the namespace, the ServiceAccount (name, uid)
and the object the token is bound to (a Pod, a Secret or a Node: name, uid). PyJWT signs and
checks them.

`POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token` (TokenRequest, what `kubectl
create token` and the agent, for a pod's projected token, send) answers 201 with the token and
its expiry. As upstream: audiences default to the API server's, `expirationSeconds` to one hour
and no fewer than ten minutes; a bound object must exist, with the uid given if any; a Pod must
run as that ServiceAccount. Nothing is stored.

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

import datetime
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
from unistack.apiserver import codec, errors, following
from unistack.apiserver.request import Request, User
from unistack.apiserver.resources import ResourceType
from unistack.apiserver.responses import Response
from unistack.apiserver.routing import ResourcePath

Obj = dict[str, Any]

ISSUER = "https://kubernetes.default.svc.cluster.local"
ALGORITHM = "ES256"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
VERIFIED_TOKENS = 4096  # remembered verified tokens (`TokenIssuer.verify`)
PREFIX = "system:serviceaccount:"
GROUP = "system:serviceaccounts"
# kind of a bound object -> (its store prefix, plural, namespaced)
BOUND_KINDS: dict[str, tuple[str, str, bool]] = {
    "Pod": ("/core/pods/", "pods", True),
    "Secret": ("/core/secrets/", "secrets", True),
    "Node": ("/core/nodes/", "nodes", False),
}
ACCOUNTS_PREFIX = "/core/serviceaccounts/"


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
        self.tables = {prefix: _Uids() for prefix in (ACCOUNTS_PREFIX, *_bound_prefixes())}
        self.followers = [
            following.StoreFollower(store, prefix, table) for prefix, table in self.tables.items()
        ]

    async def start(self) -> None:
        for follower in self.followers:
            await follower.start()

    def stop(self) -> None:
        for follower in self.followers:
            follower.stop()

    def live(self, prefix: str, name: str, uid: str, now: float) -> bool:
        """Whether the object at `prefix` + `name` (`<namespace>/<name>` when namespaced)
        exists with `uid` and its deletion, if any, is still ahead."""
        found = self.tables[prefix].objects.get(prefix + name)
        if found is None or found[0] != uid:
            return False
        deleting = found[1]
        return not deleting or _epoch(deleting) > now


def _bound_prefixes() -> list[str]:
    return [prefix for prefix, _, _ in BOUND_KINDS.values()]


def _epoch(timestamp: str) -> float:
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


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
        now = time.time()
        account = f"{claims.namespace}/{claims.name}"
        if not self.accounts.live(ACCOUNTS_PREFIX, account, claims.uid, now):
            return None
        if claims.bound is not None:
            prefix, _, namespaced = BOUND_KINDS[claims.bound.kind]
            bound = claims.bound.name
            if namespaced:
                bound = f"{claims.namespace}/{bound}"
            if not self.accounts.live(prefix, bound, claims.bound.uid, now):
                return None
        return service_account_user(claims.namespace, claims.name, claims.uid)

    async def start(self) -> None:
        await self.accounts.start()

    def stop(self) -> None:
        self.accounts.stop()


# -- TokenRequest ---------------------------------------------------------------------------


async def token_request(
    req: Request, rt: ResourceType, rp: ResourcePath, store: storage.ObjectStore,
    issuer: TokenIssuer,
) -> Response:  # fmt: skip
    """`serviceaccounts/<name>/token`: a token for the ServiceAccount, 201 with it."""
    assert rp.name is not None and rp.namespace is not None
    body = codec.decode_object(req.body, req.content_type)
    if body.get("kind") not in (None, "TokenRequest"):
        raise errors.bad_request(f"a TokenRequest is expected, not {body.get('kind')!r}")
    spec = body.get("spec")
    spec = dict(spec) if isinstance(spec, dict) else {}
    audiences = _audiences(spec, rp.name, issuer)
    expiration = _expiration(spec, rp.name)
    account = await _get(store, rt.key(rp.namespace, rp.name), rt.plural, rp.name)
    bound, node = await _bound(spec.get("boundObjectRef"), rp, store, account)
    token, expires = issuer.issue(rp.namespace, account, audiences, expiration, bound, node)
    spec.update(audiences=audiences, expirationSeconds=expiration)
    meta = account["metadata"]
    answer = {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": rp.namespace,
            "creationTimestamp": _rfc3339(time.time()),
        },
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": _rfc3339(expires)},
    }
    return Response(201, orjson.dumps(answer))


def _invalid(name: str, field: str, value: Any, detail: str) -> errors.ApiError:
    problem = errors.invalid_field(field, value, detail)
    return errors.invalid("TokenRequest", "authentication.k8s.io", name, [problem])


def _audiences(spec: Obj, name: str, issuer: TokenIssuer) -> list[str]:
    audiences = spec.get("audiences")
    if audiences in (None, []):
        return list(issuer.audiences)
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        raise _invalid(name, "spec.audiences", audiences, "must be a list of non-empty strings")
    return audiences


def _expiration(spec: Obj, name: str) -> int:
    seconds = spec.get("expirationSeconds")
    if seconds is None:
        return DEFAULT_EXPIRATION
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise _invalid(name, "spec.expirationSeconds", seconds, "must be an integer")
    if seconds < MIN_EXPIRATION:
        detail = "may not specify a duration less than 10 minutes"
        raise _invalid(name, "spec.expirationSeconds", seconds, detail)
    if seconds > MAX_EXPIRATION:
        detail = "may not specify a duration larger than 2^32 seconds"
        raise _invalid(name, "spec.expirationSeconds", seconds, detail)
    return seconds


async def _get(store: storage.ObjectStore, key: str, plural: str, name: str) -> Obj:
    try:
        stored = await store.get(key)
    except storage.NotFound:
        raise errors.not_found(plural, "", name) from None
    obj: Obj = orjson.loads(stored.value)
    return obj


async def _bound(
    ref: Any, rp: ResourcePath, store: storage.ObjectStore, account: Obj
) -> tuple[Bound | None, str]:
    """The object a token is bound to, checked, and the node a bound pod runs on."""
    if ref is None:
        return None, ""
    assert rp.name is not None and rp.namespace is not None
    if not isinstance(ref, dict):
        raise _invalid(rp.name, "spec.boundObjectRef", ref, "must be an object")
    kind = ref.get("kind")
    if kind not in BOUND_KINDS:
        supported = ", ".join(f'"{k}"' for k in BOUND_KINDS)
        detail = f"supported values: {supported}"
        raise _invalid(rp.name, "spec.boundObjectRef.kind", kind, detail)
    if ref.get("apiVersion") not in (None, "", "v1"):
        detail = 'supported values: "v1"'
        raise _invalid(rp.name, "spec.boundObjectRef.apiVersion", ref.get("apiVersion"), detail)
    name = ref.get("name")
    if not isinstance(name, str) or not name:
        problem = errors.required_field("spec.boundObjectRef.name")
        raise errors.invalid("TokenRequest", "authentication.k8s.io", rp.name, [problem])
    prefix, plural, namespaced = BOUND_KINDS[kind]
    key = f"{prefix}{rp.namespace}/{name}" if namespaced else f"{prefix}{name}"
    obj = await _get(store, key, plural, name)
    uid = str(obj["metadata"].get("uid", ""))
    if ref.get("uid") and ref["uid"] != uid:
        why = (
            f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
            "record. The object might have been deleted and then recreated"
        )
        raise errors.conflict(plural, "", name, why)
    node = ""
    if kind == "Pod":
        spec = obj.get("spec") or {}
        if spec.get("serviceAccountName", "default") != account["metadata"]["name"]:
            raise errors.bad_request(
                f'cannot bind token for serviceaccount "{rp.name}" to pod running with '
                "different serviceaccount name."
            )
        node = str(spec.get("nodeName") or "")
    return Bound(kind, name, uid), node


def _rfc3339(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
