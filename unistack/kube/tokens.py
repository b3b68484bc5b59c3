"""Service-account token Secrets, as kube-controller-manager's tokens controller keeps them.

A Secret of type `kubernetes.io/service-account-token` that names a ServiceAccount in its
`kubernetes.io/service-account.name` annotation is what tools written before TokenRequest
make to get a long-lived token (Helm charts, CI systems, dashboards; since Kubernetes 1.24 it
is the documented way to get one, no Secret being made automatically). This controller fills
it: `data.token`, `data.ca.crt` (the CA the controllers trust for the API server) and
`data.namespace`, and the `kubernetes.io/service-account.uid` annotation. A Secret whose
ServiceAccount does not exist, or exists with another uid than the annotation names, is
deleted, as upstream does.

The token differs from upstream's in one way, said here: kube-controller-manager signs a
legacy token itself (issuer `kubernetes/serviceaccount`, no expiry) with the API server's
private key. Here the controllers hold no signing key (they may run as pods of their own
ServiceAccount); they ask the API server for a token bound to the Secret
(`serviceaccounts/<name>/token` with a `boundObjectRef` to it, for the longest lifetime the
API server grants, 2^32 s). It authenticates as the ServiceAccount exactly as a legacy token
does, and stops the moment the Secret or the ServiceAccount is deleted, as a legacy one does.

`decide` is pure (the Secret and its ServiceAccount → fill, delete or nothing);
`TokensController` observes such Secrets and the ServiceAccounts through informers and acts.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from unistack.client.api import ApiError, Client, Conflict, NotFound
from unistack.client.resources import SECRETS, SERVICEACCOUNTS
from unistack.runtime.controller import Controller, run_with_informers
from unistack.runtime.informer import Informer, SharedInformers, copy_object, object_key
from unistack.runtime.workqueue import WorkQueue

log = logging.getLogger(__name__)
Obj = dict[str, Any]
TOKEN_TYPE = "kubernetes.io/service-account-token"
NAME_ANNOTATION = "kubernetes.io/service-account.name"
UID_ANNOTATION = "kubernetes.io/service-account.uid"
LIFETIME_S = 1 << 32  # the API server's longest (`apiserver.serviceaccounts.MAX_EXPIRATION`)


@dataclass(frozen=True, slots=True)
class Fill:
    """Give the Secret a token for the ServiceAccount with `uid`."""

    account_uid: str


@dataclass(frozen=True, slots=True)
class Delete:
    """The Secret names a ServiceAccount that is gone (or another one of that name)."""

    reason: str


Decision = Fill | Delete | None


def decide(secret: Obj, account: Obj | None) -> Decision:
    """What the Secret needs, given its ServiceAccount as the cache holds it (None: none)."""
    meta = secret.get("metadata") or {}
    if secret.get("type") != TOKEN_TYPE or meta.get("deletionTimestamp"):
        return None
    annotations = meta.get("annotations") or {}
    name = annotations.get(NAME_ANNOTATION)
    if not name:
        return None  # the API server refuses such a Secret; nothing to fill in one made before
    if account is None:
        return Delete(f"service account {name} does not exist")
    uid = account["metadata"]["uid"]
    wanted_uid = annotations.get(UID_ANNOTATION)
    if wanted_uid and wanted_uid != uid:
        return Delete(f"service account {name} is not the one with uid {wanted_uid}")
    data = secret.get("data") or {}
    if data.get("token") and data.get("namespace") and wanted_uid:
        return None
    return Fill(uid)


def filled(secret: Obj, token: str, account_uid: str, ca: str | None) -> Obj:
    """A copy of `secret` with its token, namespace and CA, and the account's uid."""
    updated = copy_object(secret)
    meta = updated["metadata"]
    meta["annotations"] = {**(meta.get("annotations") or {}), UID_ANNOTATION: account_uid}
    data = dict(updated.get("data") or {})
    data["token"] = _b64(token)
    data["namespace"] = _b64(meta["namespace"])
    if ca is not None:
        data["ca.crt"] = _b64(ca)
    updated["data"] = data
    return updated


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _account_of(secret: Obj) -> list[str]:
    meta = secret.get("metadata") or {}
    name = (meta.get("annotations") or {}).get(NAME_ANNOTATION)
    return [f"{meta.get('namespace')}/{name}"] if name else []


class TokensController:
    """Watches token Secrets and ServiceAccounts; fills the Secrets, removes the orphaned."""

    def __init__(
        self, client: Client, ca: str | None, *, informers: SharedInformers | None = None
    ) -> None:
        self.client = client
        self.ca = ca
        self.accounts = (informers or SharedInformers(client)).informer(SERVICEACCOUNTS)
        # only the token Secrets: the rest are not this controller's business
        self.secrets = Informer(
            client, SECRETS, field_selector=f"type={TOKEN_TYPE}", indexers={"account": _account_of}
        )
        self.queue = WorkQueue("tokens")
        self.controller = Controller("tokens", self.queue, self.reconcile)
        self.secrets.add_handlers(
            on_add=self._secret_changed, on_update=lambda old, new: self._secret_changed(new)
        )
        self.accounts.add_handlers(
            on_add=self._account_changed,
            on_update=lambda old, new: self._account_changed(new),
            on_delete=self._account_changed,
        )

    def _secret_changed(self, secret: Obj) -> None:
        self.queue.add(object_key(secret))

    def _account_changed(self, account: Obj) -> None:
        for secret in self.secrets.cache.by_index("account", object_key(account)):
            self.queue.add(object_key(secret))

    async def run(self) -> None:
        await run_with_informers(self.controller, self.secrets, self.accounts)

    async def reconcile(self, key: str) -> float | None:
        secret = self.secrets.cache.get(key)
        if secret is None:
            return None
        meta = secret["metadata"]
        name = (meta.get("annotations") or {}).get(NAME_ANNOTATION)
        account = self.accounts.cache.get(f"{meta['namespace']}/{name}") if name else None
        decision = decide(secret, account)
        if isinstance(decision, Delete):
            if account is None and not await self._really_gone(meta["namespace"], str(name)):
                return 1.0  # the cache was behind: decide again once it has the account
            log.info("deleting token secret %s: %s", key, decision.reason)
            with contextlib.suppress(NotFound, Conflict):
                await self.client.delete(
                    SECRETS, meta["name"], meta["namespace"], preconditions={"uid": meta["uid"]}
                )
        elif isinstance(decision, Fill):
            token = await self._token(secret, str(name))
            if token is None:
                return 2.0
            with contextlib.suppress(NotFound, Conflict):  # changed: its event comes again
                await self.client.update(
                    SECRETS, filled(secret, token, decision.account_uid, self.ca)
                )
        return None

    async def _really_gone(self, namespace: str, name: str) -> bool:
        try:
            await self.client.get(SERVICEACCOUNTS, name, namespace)
        except NotFound:
            return True
        except ApiError:
            return False
        return False

    async def _token(self, secret: Obj, account: str) -> str | None:
        meta = secret["metadata"]
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": LIFETIME_S,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        path = SERVICEACCOUNTS.path(meta["namespace"], account, "token")
        try:
            answer = await self.client.request_json("POST", path, body=request)
        except ApiError as error:
            log.warning("no token for secret %s/%s: %s", meta["namespace"], meta["name"], error)
            return None
        token = (answer.get("status") or {}).get("token")
        # (an account replaced meanwhile: the token names the new uid, the annotation the
        # old one, and the next look deletes the Secret, as its account is not the same)
        return token if isinstance(token, str) and token else None
