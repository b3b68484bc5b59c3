"""What every namespace holds for its pods' API access: the `default` ServiceAccount and the
`kube-root-ca.crt` ConfigMap, as kube-controller-manager's serviceaccount-controller and
root-ca-cert-publisher keep them.

`ServiceAccountController` gives every namespace that is not being deleted a ServiceAccount
named `default`: created when the namespace appears, created again when someone deletes it.
`RootCAPublisher` gives every such namespace a ConfigMap `kube-root-ca.crt` whose `ca.crt`
is the PEM of the CA the controllers' own client trusts for the API server (from the
kubeconfig, `unistack.client.kubeconfig`), with upstream's `kubernetes.io/description`: an
edited one is put back, a deleted one made again. Pods read both through the projected
`kube-api-access-*` volume the API server's ServiceAccount admission adds
(`unistack.apiserver.serviceaccount_admission`) and the node agent fills
(`unistack.agent.podtokens`). A controllers process that trusts no CA of its own (plain
HTTP) runs no publisher: it has nothing true to publish.

Both queue namespace names. `missing_service_account` and `decide_root_ca` are pure (the
namespace and what its cache holds → what to write); the controllers act, treating a
namespace that went away or started terminating meanwhile as done.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from unistack.client.api import AlreadyExists, ApiError, Client, NotFound
from unistack.client.resources import CONFIGMAPS, NAMESPACES, SERVICEACCOUNTS
from unistack.runtime.controller import Controller, run_with_informers
from unistack.runtime.informer import Informer, SharedInformers, copy_object
from unistack.runtime.workqueue import WorkQueue

Obj = dict[str, Any]
DEFAULT_SERVICE_ACCOUNT = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)


# --- decisions (pure) -------------------------------------------------------------------------


def open_namespace(namespace: Obj | None) -> bool:
    """Whether new content may go into the namespace: it exists and is not terminating."""
    if namespace is None or namespace.get("metadata", {}).get("deletionTimestamp"):
        return False
    return (namespace.get("status") or {}).get("phase") != "Terminating"


def missing_service_account(namespace: Obj | None, existing: Obj | None) -> Obj | None:
    """The `default` ServiceAccount to create in the namespace, or None when it has one or
    takes no new content."""
    if existing is not None or not open_namespace(namespace):
        return None
    assert namespace is not None
    meta = {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace["metadata"]["name"]}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}


@dataclass(frozen=True, slots=True)
class CreateConfigMap:
    config_map: Obj


@dataclass(frozen=True, slots=True)
class ReplaceConfigMap:
    config_map: Obj  # a copy of the cached one, corrected; its resourceVersion guards the PUT


def root_ca_config_map(namespace: str, ca: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ROOT_CA_CONFIGMAP,
            "namespace": namespace,
            "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION},
        },
        "data": {ROOT_CA_KEY: ca},
    }


def decide_root_ca(
    namespace: Obj | None, existing: Obj | None, ca: str
) -> CreateConfigMap | ReplaceConfigMap | None:
    """Create the ConfigMap when missing; put its data (exactly `ca.crt`) and its description
    back when they differ; nothing when it is right or the namespace takes no new content."""
    if not open_namespace(namespace):
        return None
    assert namespace is not None
    if existing is None:
        return CreateConfigMap(root_ca_config_map(namespace["metadata"]["name"], ca))
    annotations = existing.get("metadata", {}).get("annotations") or {}
    if existing.get("data") == {ROOT_CA_KEY: ca} and annotations.get(DESCRIPTION_ANNOTATION):
        return None
    corrected = copy_object(existing)
    corrected["data"] = {ROOT_CA_KEY: ca}
    corrected.pop("binaryData", None)
    corrected["metadata"]["annotations"] = {**annotations, DESCRIPTION_ANNOTATION: DESCRIPTION}
    return ReplaceConfigMap(corrected)


def _refused_for_namespace(error: ApiError) -> bool:
    """The namespace went away (404) or is terminating (403) between the decision and the
    write: nothing left to do there."""
    return error.status in (403, 404)


# --- the controllers --------------------------------------------------------------------------


def _namespace_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("namespace") or "")


class ServiceAccountController:
    """Watches Namespaces and ServiceAccounts; every open namespace has its `default`."""

    def __init__(self, client: Client, *, informers: SharedInformers | None = None) -> None:
        self.client = client
        shared = informers or SharedInformers(client)
        self.namespaces = shared.informer(NAMESPACES)
        self.accounts = shared.informer(SERVICEACCOUNTS)
        self.queue = WorkQueue("serviceaccount")
        self.controller = Controller("serviceaccount", self.queue, self.reconcile)
        self.namespaces.add_handlers(
            on_add=self._namespace_changed,
            on_update=lambda old, new: self._namespace_changed(new),
        )
        self.accounts.add_handlers(on_delete=self._account_deleted)

    def _namespace_changed(self, namespace: Obj) -> None:
        self.queue.add(namespace["metadata"]["name"])

    def _account_deleted(self, account: Obj) -> None:
        if account["metadata"]["name"] == DEFAULT_SERVICE_ACCOUNT:
            self.queue.add(_namespace_of(account))

    async def run(self) -> None:
        await run_with_informers(self.controller, self.namespaces, self.accounts)

    async def reconcile(self, name: str) -> float | None:
        existing = self.accounts.cache.get(f"{name}/{DEFAULT_SERVICE_ACCOUNT}")
        account = missing_service_account(self.namespaces.cache.get(name), existing)
        if account is None:
            return None
        try:
            await self.client.create(SERVICEACCOUNTS, account)
        except AlreadyExists:
            pass
        except ApiError as error:
            if not _refused_for_namespace(error):
                raise
        return None


class RootCAPublisher:
    """Watches Namespaces and the `kube-root-ca.crt` ConfigMaps; keeps each one `ca`."""

    def __init__(
        self, client: Client, ca: str, *, informers: SharedInformers | None = None
    ) -> None:
        self.client = client
        self.ca = ca
        self.namespaces = (informers or SharedInformers(client)).informer(NAMESPACES)
        # only the one ConfigMap per namespace: not worth a cache of every ConfigMap
        selector = f"metadata.name={ROOT_CA_CONFIGMAP}"
        self.config_maps = Informer(client, CONFIGMAPS, field_selector=selector)
        self.queue = WorkQueue("root-ca-cert-publisher")
        self.controller = Controller("root-ca-cert-publisher", self.queue, self.reconcile)
        self.namespaces.add_handlers(
            on_add=self._namespace_changed,
            on_update=lambda old, new: self._namespace_changed(new),
        )
        self.config_maps.add_handlers(
            on_update=lambda old, new: self._config_map_changed(new),
            on_delete=self._config_map_changed,
        )

    def _namespace_changed(self, namespace: Obj) -> None:
        self.queue.add(namespace["metadata"]["name"])

    def _config_map_changed(self, config_map: Obj) -> None:
        self.queue.add(_namespace_of(config_map))

    async def run(self) -> None:
        await run_with_informers(self.controller, self.namespaces, self.config_maps)

    async def reconcile(self, name: str) -> float | None:
        existing = self.config_maps.cache.get(f"{name}/{ROOT_CA_CONFIGMAP}")
        action = decide_root_ca(self.namespaces.cache.get(name), existing, self.ca)
        if isinstance(action, CreateConfigMap):
            try:
                await self.client.create(CONFIGMAPS, action.config_map)
            except AlreadyExists:  # made since the cache saw it: its update event follows
                pass
            except ApiError as error:
                if not _refused_for_namespace(error):
                    raise
        elif isinstance(action, ReplaceConfigMap):
            with contextlib.suppress(NotFound):  # deleted meanwhile: its delete event follows
                await self.client.update(CONFIGMAPS, action.config_map)
        return None
