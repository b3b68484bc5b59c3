"""The Pod kind: its table columns, defaulting and validation.

Columns follow upstream's `printPod`: READY counts ready containers, STATUS is the phase
refined by container states ("ContainerCreating", "CrashLoopBackOff", "Init:0/1",
"Completed", "Terminating"), RESTARTS adds how long ago the last restart was. Spec
defaulting and validation are shared with workload templates (`pod_defaults`,
`pod_validation`); the update rule here is upstream's: a Pod's spec is immutable except for
container images, `activeDeadlineSeconds`, added tolerations, removed scheduling gates and a
negative grace period. Setting `nodeName` on an unbound pod is allowed too (the `binding`
subresource, `unistack.apiserver.binding`, does exactly that update).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import orjson

from unistack.apiserver.errors import FieldError, forbidden_field, invalid_field
from unistack.apiserver.kinds import cells
from unistack.apiserver.kinds.objects import Obj, dict_of, dicts_in, dig, int_of
from unistack.apiserver.kinds.pod_defaults import default_pod
from unistack.apiserver.kinds.pod_validation import check_pod_spec
from unistack.apiserver.resources import Column, ResourceType

POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)
_TERMINAL_PHASES = ("Succeeded", "Failed")


class _Restarts:
    """A running total of container restarts and the time of the latest one."""

    def __init__(self) -> None:
        self.count = 0
        self.last: datetime | None = None

    def add(self, status: Obj) -> None:
        self.count += int_of(status.get("restartCount"))
        finished = cells.parse_time(dig(status, "lastState", "terminated", "finishedAt"))
        if finished and (self.last is None or finished > self.last):
            self.last = finished


class _PodView:
    """The counts and reason `printPod` derives from a Pod's status, computed once."""

    def __init__(self, pod: Obj) -> None:
        spec, self.status = dict_of(pod.get("spec")), dict_of(pod.get("status"))
        self.reason = str(self.status.get("reason") or self.status.get("phase") or "")
        self.ready = 0
        self.restarts = _Restarts()
        self._init_is_sidecar = {
            str(c.get("name")): c.get("restartPolicy") == "Always"
            for c in dicts_in(spec.get("initContainers"))
        }
        sidecars = sum(self._init_is_sidecar.values())
        self.total = len(dicts_in(spec.get("containers"))) + sidecars
        if _has_condition(self.status, "PodScheduled", reason="SchedulingGated"):
            self.reason = "SchedulingGated"
        initializing, sidecar_restarts = self._read_init_statuses()
        if not initializing or _has_condition(self.status, "Initialized", value="True"):
            self.restarts = sidecar_restarts
            self._read_container_statuses()
        self._apply_deletion(pod)

    def _read_init_statuses(self) -> tuple[bool, _Restarts]:
        """Whether the pod is still initializing, and the restarts of its sidecars."""
        sidecar_restarts = _Restarts()
        statuses = dicts_in(self.status.get("initContainerStatuses"))
        for i, status in enumerate(statuses):
            self.restarts.add(status)
            if self._init_is_sidecar.get(str(status.get("name"))):
                sidecar_restarts.add(status)
                if status.get("started") is True:
                    self.ready += 1 if status.get("ready") is True else 0
                    continue
            reason = _init_reason(dict_of(status.get("state")), i, len(self._init_is_sidecar))
            if reason is not None:
                self.reason = reason
                return True, sidecar_restarts
        return False, sidecar_restarts

    def _read_container_statuses(self) -> None:
        has_running = False
        for status in reversed(dicts_in(self.status.get("containerStatuses"))):
            self.restarts.add(status)
            reason = _container_reason(dict_of(status.get("state")))
            if reason is not None:
                self.reason = reason
            elif status.get("ready") is True and dig(status, "state", "running") is not None:
                has_running = True
                self.ready += 1
        if self.reason == "Completed" and has_running:
            ready = _has_condition(self.status, "Ready", value="True")
            self.reason = "Running" if ready else "NotReady"

    def _apply_deletion(self, pod: Obj) -> None:
        if dig(pod, "metadata", "deletionTimestamp") is None:
            return
        if self.status.get("reason") == "NodeLost":
            self.reason = "Unknown"
        elif self.status.get("phase") not in _TERMINAL_PHASES:
            self.reason = "Terminating"


def _init_reason(state: Obj, index: int, count: int) -> str | None:
    """The STATUS an unfinished init container gives, None when it completed."""
    terminated = dict_of(state.get("terminated"))
    if state.get("terminated") is not None:
        if int_of(terminated.get("exitCode")) == 0:
            return None
        if terminated.get("reason"):
            return f"Init:{terminated['reason']}"
        if int_of(terminated.get("signal")):
            return f"Init:Signal:{terminated['signal']}"
        return f"Init:ExitCode:{int_of(terminated.get('exitCode'))}"
    waiting_reason = dig(state, "waiting", "reason")
    if waiting_reason and waiting_reason != "PodInitializing":
        return f"Init:{waiting_reason}"
    return f"Init:{index}/{count}"


def _container_reason(state: Obj) -> str | None:
    waiting_reason = dig(state, "waiting", "reason")
    if waiting_reason:
        return str(waiting_reason)
    if state.get("terminated") is None:
        return None
    terminated = dict_of(state.get("terminated"))
    if terminated.get("reason"):
        return str(terminated["reason"])
    if int_of(terminated.get("signal")):
        return f"Signal:{terminated['signal']}"
    return f"ExitCode:{int_of(terminated.get('exitCode'))}"


def _has_condition(status: Obj, kind: str, *, reason: str = "", value: str = "") -> bool:
    for condition in dicts_in(status.get("conditions")):
        if condition.get("type") != kind:
            continue
        if reason and condition.get("reason") != reason:
            continue
        if value and condition.get("status") != value:
            continue
        return True
    return False


def pod_ready(pod: Obj) -> str:
    view = _PodView(pod)
    return f"{view.ready}/{view.total}"


def pod_status(pod: Obj) -> str:
    return _PodView(pod).reason


def pod_restarts(pod: Obj) -> str:
    restarts = _PodView(pod).restarts
    if restarts.last is None:
        return str(restarts.count)
    return f"{restarts.count} ({cells.ago(restarts.last)} ago)"


def pod_ip(pod: Obj) -> str:
    ip = dig(pod, "status", "podIPs", 0, "ip") or dig(pod, "status", "podIP")
    return str(ip) if ip else cells.NONE


def pod_readiness_gates(pod: Obj) -> str:
    gates = dicts_in(dig(pod, "spec", "readinessGates"))
    if not gates:
        return cells.NONE
    conditions = {
        c.get("type"): c.get("status") for c in dicts_in(dig(pod, "status", "conditions"))
    }
    true_count = sum(conditions.get(g.get("conditionType")) == "True" for g in gates)
    return f"{true_count}/{len(gates)}"


POD_COLUMNS = (
    Column("Ready", pod_ready, description="The aggregate readiness state of this pod."),
    Column("Status", pod_status, description="The aggregate status of the containers."),
    Column("Restarts", pod_restarts, description="Container restarts, and the last one's age."),
    cells.AGE_COLUMN,
    Column("IP", pod_ip, priority=1, description="The IP address allocated to the pod."),
    Column(
        "Node",
        cells.text_at("spec", "nodeName", default=cells.NONE),
        priority=1,
        description="The node the pod is scheduled to.",
    ),
    Column(
        "Nominated Node",
        cells.text_at("status", "nominatedNodeName", default=cells.NONE),
        priority=1,
        description="The node the pod is nominated to after preempting others.",
    ),
    Column(
        "Readiness Gates",
        pod_readiness_gates,
        priority=1,
        description="Readiness gates whose condition is true, of those the pod declares.",
    ),
)


def validate_pod(pod: Obj, old: Obj | None) -> list[FieldError]:
    errs = check_pod_spec(pod.get("spec"), "spec")
    if old is not None and not errs:
        errs += check_pod_update(dict_of(pod.get("spec")), dict_of(old.get("spec")))
    return errs


def check_pod_update(new: Obj, old: Obj) -> list[FieldError]:
    """Only images, activeDeadlineSeconds, added tolerations, removed scheduling gates, a
    fixed grace period and a first nodeName may change."""
    errs = _check_deadline_update(
        new.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds")
    )
    errs += _check_tolerations_update(new.get("tolerations"), old.get("tolerations"))
    if errs:
        return errs
    munged = _with_mutable_fields_from(old, new)
    if munged == old:
        return []
    diff = "\n".join(_describe_changes(old, munged, "spec"))
    return [forbidden_field("spec", f"{POD_UPDATE_FORBIDDEN}\n{diff}")]


def _with_mutable_fields_from(old: Obj, new: Obj) -> Obj:
    """`new` with every field a Pod update may change set back to its `old` value."""
    munged = copy.deepcopy(new)
    for key in ("containers", "initContainers"):
        new_list, old_list = munged.get(key), old.get(key)
        for new_c, old_c in _paired(new_list, old_list):
            _copy_field(old_c, new_c, "image")
    for key in ("activeDeadlineSeconds", "tolerations"):
        _copy_field(old, munged, key)
    old_grace = old.get("terminationGracePeriodSeconds")
    if (
        isinstance(old_grace, int)
        and old_grace < 0
        and new.get("terminationGracePeriodSeconds") == 1
    ):
        munged["terminationGracePeriodSeconds"] = old_grace
    if not old.get("nodeName"):  # binding a pending pod, until pods/binding is served
        _copy_field(old, munged, "nodeName")
    if _only_removes(new.get("schedulingGates"), old.get("schedulingGates")):
        _copy_field(old, munged, "schedulingGates")
    return munged


def _only_removes(new: Any, old: Any) -> bool:
    """Whether the list `new` only drops entries of `old` (scheduling gates may be removed)."""
    new_list, old_list = new or [], old or []
    if not isinstance(new_list, list) or not isinstance(old_list, list):
        return False
    return all(item in old_list for item in new_list)


def _paired(new: Any, old: Any) -> list[tuple[Obj, Obj]]:
    """Containers of two equally long lists, side by side (none when the lengths differ)."""
    if not isinstance(new, list) or not isinstance(old, list) or len(new) != len(old):
        return []
    pairs = zip(new, old, strict=True)
    return [(n, o) for n, o in pairs if isinstance(n, dict) and isinstance(o, dict)]


def _copy_field(source: Obj, target: Obj, key: str) -> None:
    if key in source:
        target[key] = source[key]
    else:
        target.pop(key, None)


def _check_deadline_update(new: Any, old: Any) -> list[FieldError]:
    field = "spec.activeDeadlineSeconds"
    if new is None and old is not None:
        return [invalid_field(field, None, "must not update from a positive integer to nil value")]
    if isinstance(new, int) and isinstance(old, int) and new > old:
        return [invalid_field(field, new, "must be less than or equal to previous value")]
    return []


def _check_tolerations_update(new: Any, old: Any) -> list[FieldError]:
    new_list = dicts_in(new)
    for toleration in dicts_in(old):
        if not any(_same_toleration(toleration, candidate) for candidate in new_list):
            detail = "existing toleration can not be modified except its tolerationSeconds"
            return [forbidden_field("spec.tolerations", detail)]
    return []


def _same_toleration(old: Obj, new: Obj) -> bool:
    keys = ("key", "operator", "value", "effect")
    if any((old.get(k) or "") != (new.get(k) or "") for k in keys):
        return False
    old_seconds, new_seconds = old.get("tolerationSeconds"), new.get("tolerationSeconds")
    if old_seconds is None or new_seconds is None:
        return old_seconds == new_seconds
    return bool(new_seconds <= old_seconds)


def _describe_changes(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in sorted(set(old) | set(new)):
            lines += _describe_changes(old.get(key), new.get(key), f"{path}.{key}")
        return lines
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            line
            for i, (o, n) in enumerate(zip(old, new, strict=True))
            for line in _describe_changes(o, n, f"{path}[{i}]")
        ]
    if old == new:
        return []
    return [f"  {path}: {_json(old)} -> {_json(new)}"]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


POD = ResourceType(
    group="",
    version="v1",
    kind="Pod",
    plural="pods",
    singular="pod",
    namespaced=True,
    short_names=("po",),
    categories=("all",),
    status_subresource=True,
    columns=POD_COLUMNS,
    defaulter=default_pod,
    validator=validate_pod,
    extra={"return_deleted_object": True},  # as kube's pod storage answers a DELETE
    extra_subresources=("binding", "log", "exec"),  # binding.py; nodeproxy.py
)
