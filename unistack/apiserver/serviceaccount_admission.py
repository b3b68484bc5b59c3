"""ServiceAccount admission: a new Pod names a ServiceAccount that exists, and its containers
get the API credentials of it, as kube-apiserver's ServiceAccount admission plugin does.

On a client's create of a Pod (`handlers.WriteHooks.admit`, after defaulting has named the
ServiceAccount, `default` when the pod names none):

- a pod naming a ServiceAccount the store does not hold is refused with upstream's 403
  (`error looking up service account ns/name: serviceaccount "name" not found`) — except
  `default`: the ServiceAccount controller (`unistack.kube.serviceaccounts`) makes it moments
  after its namespace, so a pod created right after its namespace (a Helm chart, a test) is
  admitted as if it existed instead of losing that race;
- unless `automountServiceAccountToken` is false on the pod (or, when the pod leaves it unset,
  on its ServiceAccount), or the pod is a mirror pod, every init and app container that does
  not already mount `/var/run/secrets/kubernetes.io/serviceaccount` gets a read-only mount
  there of the projected volume `kube-api-access-<5 random characters>`: a bound
  ServiceAccount token (`token`, the node agent requests and refreshes it,
  `unistack.agent.podtokens`), the cluster's CA (`ca.crt` from the `kube-root-ca.crt`
  ConfigMap) and the pod's namespace (`namespace`). A volume already named
  `kube-api-access-*` is reused, and none is added when no container needs it.

Ephemeral containers are not run here, so they get nothing. `add_token_volume` and
`automounts` are pure; `ServiceAccountAdmission` reads the ServiceAccount from the store.
"""

from __future__ import annotations

from typing import Any

from unistack import store as storage
from unistack.apiserver import codec, errors, lifecycle
from unistack.apiserver.handlers import WriteHooks
from unistack.apiserver.kinds import core_config
from unistack.apiserver.kinds.objects import dict_of, dicts_in
from unistack.apiserver.request import Request
from unistack.apiserver.resources import ResourceType

Obj = dict[str, Any]
DEFAULT_SERVICE_ACCOUNT = "default"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
TOKEN_EXPIRATION_SECONDS = 3607  # upstream's: an hour, and a few seconds to tell it apart


def token_volume(name: str) -> Obj:
    """The projected volume upstream adds: token, CA bundle and namespace."""
    return {
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {
                    "serviceAccountToken": {
                        "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                        "path": "token",
                    }
                },
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


def is_mirror_pod(pod: Obj) -> bool:
    return MIRROR_ANNOTATION in dict_of(dict_of(pod.get("metadata")).get("annotations"))


def automounts(spec: Obj, account: Obj | None) -> bool:
    """The pod's automountServiceAccountToken, else its ServiceAccount's, else true."""
    for setting in (
        spec.get("automountServiceAccountToken"),
        dict_of(account).get("automountServiceAccountToken"),
    ):
        if isinstance(setting, bool):
            return setting
    return True


def _mounts_credentials(container: Obj) -> bool:
    return any(m.get("mountPath") == MOUNT_PATH for m in dicts_in(container.get("volumeMounts")))


def add_token_volume(spec: Obj, new_name: str) -> None:
    """Mount the token volume into every init and app container that does not mount
    something there already; add the volume (named `new_name` unless the pod has a
    `kube-api-access-*` one) when any container got the mount."""
    existing = next((v["name"] for v in dicts_in(spec.get("volumes")) if _is_token_volume(v)), None)
    name = existing or new_name
    needed = False
    for container in dicts_in(spec.get("initContainers")) + dicts_in(spec.get("containers")):
        if _mounts_credentials(container):
            continue
        mounts = container.get("volumeMounts")
        mount = {"name": name, "readOnly": True, "mountPath": MOUNT_PATH}
        container["volumeMounts"] = [*mounts, mount] if isinstance(mounts, list) else [mount]
        needed = True
    if needed and existing is None:
        volumes = spec.get("volumes")
        spec["volumes"] = [*(volumes if isinstance(volumes, list) else []), token_volume(name)]


def _is_token_volume(volume: Obj) -> bool:
    return str(volume.get("name", "")).startswith(VOLUME_PREFIX)


def _not_found(pod: Obj, namespace: str, account: str) -> errors.ApiError:
    why = (
        f"error looking up service account {namespace}/{account}: "
        f'serviceaccount "{account}" not found'
    )
    return errors.forbidden_on("pods", "", str(pod["metadata"].get("name", "")), why)


class ServiceAccountAdmission(WriteHooks):
    """On a Pod's create: its ServiceAccount must exist; its containers get its token."""

    def __init__(self, store: storage.ObjectStore) -> None:
        self.store = store

    async def admit(self, req: Request, rt: ResourceType, old: Obj | None, new: Obj) -> None:
        if (rt.group, rt.plural) != ("", "pods") or old is not None or is_mirror_pod(new):
            return
        spec = new.get("spec")
        if not isinstance(spec, dict):
            return
        namespace = str(new["metadata"].get("namespace", ""))
        name = str(spec.get("serviceAccountName") or DEFAULT_SERVICE_ACCOUNT)
        account = await self._account(namespace, name)
        if account is None and name != DEFAULT_SERVICE_ACCOUNT:
            raise _not_found(new, namespace, name)
        if automounts(spec, account):
            add_token_volume(spec, lifecycle.generated_name(VOLUME_PREFIX))

    async def _account(self, namespace: str, name: str) -> Obj | None:
        try:
            stored = await self.store.get(core_config.SERVICE_ACCOUNT.key(namespace, name))
        except storage.NotFound:
            return None
        return codec.load(stored.value)
