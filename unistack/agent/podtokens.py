"""Bound ServiceAccount tokens for a pod's projected volumes, kept fresh as the kubelet's
token manager keeps them.

A projected volume's `serviceAccountToken` source (`kube-api-access-*`, which the API
server's ServiceAccount admission adds, or one a pod declares) asks for a token of the pod's
ServiceAccount, bound to the pod (it dies with it), for the source's `audience` (none: the
API server's own) and `expirationSeconds` (default 3600). `request_token` is the one call
that asks the API for it (the TokenRequest subresource,
`POST .../serviceaccounts/{name}/token`); the rest is pure or in memory.

`PodTokens` holds one pod's tokens, one per `TokenKey` (audience, lifetime): `current`
returns a token for every key the pod wants, asking for those it lacks or that are due —
once 80% of the lifetime has passed, or 24 hours after issue, whichever is first
(`Token.refresh_at`). A renewal that fails keeps the held token while it is valid and tries
again after `RETRY_S`; a token that cannot be had at all is a `TokenUnavailable`, which the
pod worker (`unistack.agent.worker`) reports as upstream's FailedMount and retries. The
worker writes the tokens into the volume (`unistack.agent.volumes`) when a container starts
and again whenever `due` says one was renewed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from unistack.client.api import ApiError, Client
from unistack.client.resources import SERVICEACCOUNTS
from unistack.client.transport import TransportError
from unistack.runtime import events

log = logging.getLogger(__name__)
Obj = dict[str, Any]
DEFAULT_EXPIRATION_S = 3600
MAX_AGE_S = 24 * 3600.0
REFRESH_AT = 0.8  # of the lifetime
RETRY_S = 10.0


@dataclass(frozen=True, slots=True, order=True)
class TokenKey:
    """What tells a pod's tokens apart: the audience ("" for the API server's) and lifetime."""

    audience: str
    expiration_seconds: int


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: float  # epoch seconds, as the API server said
    lifetime: float  # seconds, as asked and granted

    @property
    def refresh_at(self) -> float:
        issued_at = self.expires_at - self.lifetime
        return min(issued_at + REFRESH_AT * self.lifetime, issued_at + MAX_AGE_S)


class TokenUnavailable(Exception):
    """No valid token for a volume: the volume cannot be set up (FailedMount)."""

    def __init__(self, volume: str, reason: str) -> None:
        super().__init__(
            f'MountVolume.SetUp failed for volume "{volume}" : failed to fetch token: {reason}'
        )
        self.volume = volume


def token_key(source: Obj) -> TokenKey:
    """The key of one projected `serviceAccountToken` source."""
    seconds = source.get("expirationSeconds")
    return TokenKey(str(source.get("audience") or ""), int(seconds or DEFAULT_EXPIRATION_S))


def wanted(pod: Obj) -> dict[TokenKey, str]:
    """Each token the pod's projected volumes ask for, with the first volume asking it."""
    keys: dict[TokenKey, str] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "serviceAccountToken" in source:
                keys.setdefault(token_key(source["serviceAccountToken"]), volume["name"])
    return keys


def token_request(pod: Obj, key: TokenKey) -> Obj:
    """The TokenRequest body: a token of `key`'s lifetime and audience, bound to the pod."""
    meta = pod["metadata"]
    bound = {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}
    spec: Obj = {"expirationSeconds": key.expiration_seconds, "boundObjectRef": bound}
    if key.audience:
        spec["audiences"] = [key.audience]
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


async def request_token(client: Client, pod: Obj, key: TokenKey) -> Token:
    """Ask the API for a token of the pod's ServiceAccount; ApiError or TransportError."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    account = spec.get("serviceAccountName") or "default"
    path = SERVICEACCOUNTS.path(meta.get("namespace"), account, "token")
    answer = await client.request_json("POST", path, body=token_request(pod, key))
    status, granted = answer.get("status") or {}, answer.get("spec") or {}
    lifetime = float(granted.get("expirationSeconds") or key.expiration_seconds)
    expires_at = events.parse_timestamp(status.get("expirationTimestamp"))
    return Token(str(status["token"]), expires_at, lifetime)


Requester = Callable[[Obj, TokenKey], Awaitable[Token]]


@dataclass(slots=True)
class _Held:
    token: Token
    next_try: float


class PodTokens:
    """One pod's tokens: asked for when first wanted, renewed when due."""

    def __init__(self, request: Requester, clock: Callable[[], float] = time.time) -> None:
        self._request = request
        self.clock = clock
        self._held: dict[TokenKey, _Held] = {}

    def due(self) -> bool:
        """Whether a held token should be renewed now."""
        now = self.clock()
        return any(held.next_try <= now for held in self._held.values())

    def next_refresh(self) -> float | None:
        """When the next held token falls due (epoch seconds), if any is held."""
        return min((held.next_try for held in self._held.values()), default=None)

    async def current(self, pod: Obj) -> dict[TokenKey, str]:
        """A valid token for every key the pod wants, asking for those missing or due;
        `TokenUnavailable` when one can be neither had nor kept."""
        tokens = {}
        for key, volume in wanted(pod).items():
            held, now = self._held.get(key), self.clock()
            if held is None or held.next_try <= now or held.token.expires_at <= now:
                held = await self._renew(pod, key, volume, held)
            tokens[key] = held.token.value
        return tokens

    async def _renew(self, pod: Obj, key: TokenKey, volume: str, held: _Held | None) -> _Held:
        try:
            token = await self._request(pod, key)
        except (ApiError, TransportError) as error:
            reason = error.message if isinstance(error, ApiError) else str(error)
            now = self.clock()
            if held is not None:
                held.next_try = now + RETRY_S
            if held is None or held.token.expires_at <= now:
                raise TokenUnavailable(volume, reason) from error
            log.warning("keeping the token of volume %s, its renewal failed: %s", volume, reason)
            return held
        # never sooner than RETRY_S, whatever the expiry said: no loop of requests
        renewed = self._held[key] = _Held(token, max(token.refresh_at, self.clock() + RETRY_S))
        return renewed
