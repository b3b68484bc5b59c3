"""The apps/v1 workloads: Deployment, ReplicaSet, DaemonSet and StatefulSet.

Declares each kind with its `kubectl get` columns (upstream's printDeployment,
printReplicaSet, printDaemonSet, printStatefulSet) and its defaults (SetDefaults_Deployment
and friends, plus pod-spec defaults in the template). Validation is in `apps_validation`.
Deployments, ReplicaSets and StatefulSets have a `scale` subresource (without a selector
for now: see `_WORKLOAD_SCALE`).
"""

from __future__ import annotations

from unistack.apiserver.kinds import cells
from unistack.apiserver.kinds.apps_validation import (
    validate_daemon_set,
    validate_deployment,
    validate_replica_set,
    validate_stateful_set,
)
from unistack.apiserver.kinds.core_storage import default_claim
from unistack.apiserver.kinds.objects import Obj, dict_of, dicts_in, dig, ensure_dict, set_default
from unistack.apiserver.kinds.pod_defaults import default_pod_spec
from unistack.apiserver.resources import Column, ResourceType, Scale

# Upstream's Scale shows `spec.selector` as a query string; `subresources.to_scale` copies the
# value at `label_selector` as it is, so a LabelSelector object cannot be named here yet.
_WORKLOAD_SCALE = Scale(label_selector=".spec.selector")


def _default_template(spec: Obj) -> None:
    template = ensure_dict(spec, "template")
    pod_spec = ensure_dict(template, "spec") if template is not None else None
    if pod_spec is not None:
        default_pod_spec(pod_spec)


def _workload_spec(obj: Obj) -> Obj | None:
    spec = ensure_dict(obj, "spec")
    if spec is not None:
        _default_template(spec)
    return spec


def default_deployment(obj: Obj) -> None:
    spec = _workload_spec(obj)
    if spec is None:
        return
    set_default(spec, "replicas", 1)
    set_default(spec, "revisionHistoryLimit", 10)
    set_default(spec, "progressDeadlineSeconds", 600)
    strategy = ensure_dict(spec, "strategy")
    if strategy is None:
        return
    set_default(strategy, "type", "RollingUpdate")
    rolling = (
        ensure_dict(strategy, "rollingUpdate") if strategy["type"] == "RollingUpdate" else None
    )
    if rolling is not None:
        set_default(rolling, "maxUnavailable", "25%")
        set_default(rolling, "maxSurge", "25%")


def default_replica_set(obj: Obj) -> None:
    spec = _workload_spec(obj)
    if spec is not None:
        set_default(spec, "replicas", 1)


def default_daemon_set(obj: Obj) -> None:
    spec = _workload_spec(obj)
    if spec is None:
        return
    set_default(spec, "revisionHistoryLimit", 10)
    strategy = ensure_dict(spec, "updateStrategy")
    if strategy is None:
        return
    set_default(strategy, "type", "RollingUpdate")
    rolling = (
        ensure_dict(strategy, "rollingUpdate") if strategy["type"] == "RollingUpdate" else None
    )
    if rolling is not None:
        set_default(rolling, "maxUnavailable", 1)
        set_default(rolling, "maxSurge", 0)


def default_stateful_set(obj: Obj) -> None:
    spec = _workload_spec(obj)
    if spec is None:
        return
    set_default(spec, "replicas", 1)
    set_default(spec, "revisionHistoryLimit", 10)
    set_default(spec, "podManagementPolicy", "OrderedReady")
    _default_stateful_strategy(spec)
    retention = ensure_dict(spec, "persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        set_default(retention, "whenDeleted", "Retain")
        set_default(retention, "whenScaled", "Retain")
    for claim in dicts_in(spec.get("volumeClaimTemplates")):
        default_claim(claim)


def _default_stateful_strategy(spec: Obj) -> None:
    strategy = ensure_dict(spec, "updateStrategy")
    if strategy is None:
        return
    if strategy.get("type") in (None, ""):
        strategy["type"] = "RollingUpdate"
        ensure_dict(strategy, "rollingUpdate")
    rolling = strategy.get("rollingUpdate")
    if strategy["type"] == "RollingUpdate" and isinstance(rolling, dict):
        set_default(rolling, "partition", 0)


def _ready_of_desired(obj: Obj) -> str:
    ready = cells.count_at("status", "readyReplicas")(obj)
    return f"{ready}/{cells.count_at('spec', 'replicas')(obj)}"


def _template_spec(obj: Obj) -> Obj:
    return dict_of(dig(obj, "spec", "template", "spec"))


_CONTAINERS = Column(
    "Containers",
    lambda obj: cells.container_names(_template_spec(obj)),
    priority=1,
    description="Names of each container in the template.",
)
_IMAGES = Column(
    "Images",
    lambda obj: cells.container_images(_template_spec(obj)),
    priority=1,
    description="Images referenced by each container in the template.",
)


def _selector_column(empty: str) -> Column:
    return Column(
        "Selector",
        lambda obj: cells.format_selector(dig(obj, "spec", "selector"), empty=empty),
        priority=1,
        description="Label selector for the pods.",
    )


DEPLOYMENT_COLUMNS = (
    Column("Ready", _ready_of_desired, description="Number of the pod with ready state"),
    Column(
        "Up-to-date",
        cells.count_at("status", "updatedReplicas"),
        description="Total number of non-terminated pods with the desired template spec.",
    ),
    Column(
        "Available",
        cells.count_at("status", "availableReplicas"),
        description="Total number of available pods (ready for at least minReadySeconds).",
    ),
    cells.AGE_COLUMN,
    _CONTAINERS,
    _IMAGES,
    _selector_column(""),
)

REPLICA_SET_COLUMNS = (
    cells.count_column("Desired", "spec.replicas", "Replicas wanted."),
    cells.count_column("Current", "status.replicas", "Replicas observed."),
    cells.count_column("Ready", "status.readyReplicas", "Replicas ready."),
    cells.AGE_COLUMN,
    _CONTAINERS,
    _IMAGES,
    _selector_column(cells.NONE),
)

DAEMON_SET_COLUMNS = (
    cells.count_column("Desired", "status.desiredNumberScheduled", "Nodes to run the pod."),
    cells.count_column("Current", "status.currentNumberScheduled", "Nodes running the pod."),
    cells.count_column("Ready", "status.numberReady", "Nodes with the pod ready."),
    cells.count_column("Up-to-date", "status.updatedNumberScheduled", "Nodes running it updated."),
    cells.count_column("Available", "status.numberAvailable", "Nodes with the pod available."),
    Column(
        "Node Selector",
        lambda obj: cells.format_labels(_template_spec(obj).get("nodeSelector")),
        description="The template's node selector.",
    ),
    cells.AGE_COLUMN,
    _CONTAINERS,
    _IMAGES,
    _selector_column(cells.NONE),
)

STATEFUL_SET_COLUMNS = (
    Column("Ready", _ready_of_desired, description="Number of the pod with ready state"),
    cells.AGE_COLUMN,
    _CONTAINERS,
    _IMAGES,
)

DEPLOYMENT = ResourceType(
    tracks_generation=True,
    group="apps",
    version="v1",
    kind="Deployment",
    plural="deployments",
    singular="deployment",
    namespaced=True,
    short_names=("deploy",),
    categories=("all",),
    status_subresource=True,
    scale=_WORKLOAD_SCALE,
    columns=DEPLOYMENT_COLUMNS,
    defaulter=default_deployment,
    validator=validate_deployment,
)

REPLICA_SET = ResourceType(
    tracks_generation=True,
    group="apps",
    version="v1",
    kind="ReplicaSet",
    plural="replicasets",
    singular="replicaset",
    namespaced=True,
    short_names=("rs",),
    categories=("all",),
    status_subresource=True,
    scale=_WORKLOAD_SCALE,
    columns=REPLICA_SET_COLUMNS,
    defaulter=default_replica_set,
    validator=validate_replica_set,
)

DAEMON_SET = ResourceType(
    tracks_generation=True,
    group="apps",
    version="v1",
    kind="DaemonSet",
    plural="daemonsets",
    singular="daemonset",
    namespaced=True,
    short_names=("ds",),
    categories=("all",),
    status_subresource=True,
    columns=DAEMON_SET_COLUMNS,
    defaulter=default_daemon_set,
    validator=validate_daemon_set,
)

STATEFUL_SET = ResourceType(
    tracks_generation=True,
    group="apps",
    version="v1",
    kind="StatefulSet",
    plural="statefulsets",
    singular="statefulset",
    namespaced=True,
    short_names=("sts",),
    categories=("all",),
    status_subresource=True,
    scale=_WORKLOAD_SCALE,
    columns=STATEFUL_SET_COLUMNS,
    defaulter=default_stateful_set,
    validator=validate_stateful_set,
)
