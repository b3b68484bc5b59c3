"""The built-in kinds the API server serves, declared as `ResourceType`s.

`builtin_types()` lists them in discovery order: core/v1 first, then apps/v1, batch/v1,
coordination.k8s.io/v1, discovery.k8s.io/v1, storage.k8s.io/v1, apiextensions.k8s.io/v1,
authorization.k8s.io/v1 and rbac.authorization.k8s.io/v1, each group's resources in the
alphabetical order kube-apiserver lists them. `register_builtins` adds them to a `Registry`.
One module per group (or per large kind): `core`, `core_pod`, `core_service`, `core_config`,
`core_storage`, `apps`, `batch`, `coordination`, `discovery`, `storage`, `apiextensions`,
`authorization`, `rbac`; shared pieces are `pod_defaults`, `pod_validation`,
`apps_validation`, `checks`, `cells`, `objects` and `quantity`.
"""

from __future__ import annotations

from unistack.apiserver.kinds import (
    apiextensions,
    apps,
    authorization,
    batch,
    coordination,
    core,
    core_config,
    core_pod,
    core_service,
    core_storage,
    discovery,
    rbac,
    storage,
)
from unistack.apiserver.resources import Registry, ResourceType


def builtin_types() -> list[ResourceType]:
    return [
        core_config.CONFIG_MAP,
        core_service.ENDPOINTS,
        core.EVENT,
        core.NAMESPACE,
        core.NODE,
        core_storage.PERSISTENT_VOLUME_CLAIM,
        core_storage.PERSISTENT_VOLUME,
        core_pod.POD,
        core_config.SECRET,
        core_config.SERVICE_ACCOUNT,
        core_service.SERVICE,
        apps.DAEMON_SET,
        apps.DEPLOYMENT,
        apps.REPLICA_SET,
        apps.STATEFUL_SET,
        batch.JOB,
        coordination.LEASE,
        discovery.ENDPOINT_SLICE,
        storage.STORAGE_CLASS,
        apiextensions.CUSTOM_RESOURCE_DEFINITION,
        authorization.SELF_SUBJECT_REVIEW,
        authorization.TOKEN_REVIEW,
        authorization.SELF_SUBJECT_ACCESS_REVIEW,
        authorization.SELF_SUBJECT_RULES_REVIEW,
        *rbac.KINDS,
    ]


def register_builtins(registry: Registry) -> None:
    for resource_type in builtin_types():
        registry.add(resource_type)
