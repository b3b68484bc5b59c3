"""Pod spec validation, shared by Pods and every workload's `spec.template.spec`.

`check_pod_spec(spec, path)` reports containers, ports, resources, volumes, tolerations and
the enum fields with upstream's field paths and wording (pkg/apis/core/validation). The
update rules that only Pods have (an almost immutable spec) live in `core_pod`.
"""

from __future__ import annotations

from typing import Any

from unistack.apiserver.errors import (
    FieldError,
    duplicate_field,
    forbidden_field,
    invalid_field,
    required_field,
)
from unistack.apiserver.kinds.checks import (
    check_enum,
    check_name,
    check_port_number,
    env_var_name_problems,
    port_name_problems,
    problems_at,
    type_error,
)
from unistack.apiserver.kinds.objects import Obj, dict_of, list_of
from unistack.apiserver.kinds.pod_defaults import VOLUME_SOURCES
from unistack.apiserver.validation import (
    dns1123_label_errors,
    dns1123_subdomain_errors,
    qualified_name_errors,
    validate_labels,
)
from unistack.quantity import FORMAT_ERROR, QuantityError, parse_quantity

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("SCTP", "TCP", "UDP")
TAINT_EFFECTS = ("NoExecute", "NoSchedule", "PreferNoSchedule")
_MESSAGE_POLICIES = ("FallbackToLogsOnError", "File")
_HOST_PATH_TYPES = (
    "", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate",
    "Socket",
)  # fmt: skip
_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_MAX_INT32 = 2**31 - 1


def check_pod_spec(spec: Any, path: str) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [required_field(path) if spec is None else type_error(path, spec, "object")]
    volume_errs, volumes = _check_volumes(spec.get("volumes"), f"{path}.volumes")
    errs = volume_errs + _check_all_containers(spec, path, volumes)
    errs += check_enum(f"{path}.restartPolicy", spec.get("restartPolicy"), RESTART_POLICIES)
    errs += check_enum(f"{path}.dnsPolicy", spec.get("dnsPolicy"), DNS_POLICIES)
    errs += check_active_deadline(
        f"{path}.activeDeadlineSeconds", spec.get("activeDeadlineSeconds")
    )
    errs += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    errs += _check_tolerations(spec.get("tolerations"), f"{path}.tolerations")
    return errs + _check_host_names(spec, path)


def check_active_deadline(field: str, value: Any) -> list[FieldError]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_INT32:
        return [invalid_field(field, value, f"must be between 1 and {_MAX_INT32}, inclusive")]
    return []


def _check_host_names(spec: Obj, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key, problems_of in (
        ("hostname", dns1123_label_errors),
        ("subdomain", dns1123_label_errors),
        ("nodeName", dns1123_subdomain_errors),
        ("serviceAccountName", dns1123_subdomain_errors),
    ):
        if spec.get(key) not in (None, ""):
            errs += check_name(f"{path}.{key}", spec[key], problems_of)
    return errs


def _check_all_containers(spec: Obj, path: str, volumes: set[str]) -> list[FieldError]:
    containers = spec.get("containers")
    if not containers:
        errs = [required_field(f"{path}.containers")]
    elif not isinstance(containers, list):
        errs = [type_error(f"{path}.containers", containers, "array")]
    else:
        errs = []
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, container in enumerate(list_of(spec.get(key))):
            field = f"{path}.{key}[{i}]"
            errs += check_container(container, field, volumes, names)
            if key == "initContainers":
                errs += _check_init_restart(dict_of(container), field)
    return errs


def _check_init_restart(container: Obj, path: str) -> list[FieldError]:
    policy = container.get("restartPolicy")
    return check_enum(f"{path}.restartPolicy", policy, ("Always",), required=False)


def check_container(
    container: Any, path: str, volumes: set[str], names: set[str]
) -> list[FieldError]:
    """One container; `names` collects container names across the pod to find duplicates."""
    if not isinstance(container, dict):
        return [type_error(path, container, "object")]
    name = container.get("name")
    errs = check_name(f"{path}.name", name, dns1123_label_errors)
    if isinstance(name, str) and name in names:
        errs.append(duplicate_field(f"{path}.name", name))
    names.add(str(name))
    errs += _check_image(container.get("image"), f"{path}.image")
    pull = container.get("imagePullPolicy")
    errs += check_enum(f"{path}.imagePullPolicy", pull, PULL_POLICIES)
    message_policy = container.get("terminationMessagePolicy")
    errs += check_enum(f"{path}.terminationMessagePolicy", message_policy, _MESSAGE_POLICIES)
    errs += _check_container_ports(container.get("ports"), f"{path}.ports")
    errs += _check_env(container.get("env"), f"{path}.env")
    errs += _check_mounts(container.get("volumeMounts"), f"{path}.volumeMounts", volumes)
    return errs + check_resources(container.get("resources"), f"{path}.resources")


def _check_image(image: Any, field: str) -> list[FieldError]:
    if image in (None, ""):
        return [required_field(field)]
    if not isinstance(image, str):
        return [type_error(field, image, "string")]
    if image != image.strip():
        return [invalid_field(field, image, "must not have leading or trailing whitespace")]
    return []


def _check_container_ports(ports: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(list_of(ports)):
        field = f"{path}[{i}]"
        if not isinstance(port, dict):
            errs.append(type_error(field, port, "object"))
            continue
        errs += _check_port_name(port.get("name"), f"{field}.name", names)
        if port.get("containerPort") in (None, 0):
            errs.append(required_field(f"{field}.containerPort"))
        else:
            errs += check_port_number(f"{field}.containerPort", port["containerPort"])
        if port.get("hostPort") not in (None, 0):
            errs += check_port_number(f"{field}.hostPort", port["hostPort"])
        errs += check_enum(f"{field}.protocol", port.get("protocol"), PROTOCOLS)
    return errs


def _check_port_name(name: Any, field: str, seen: set[str]) -> list[FieldError]:
    if name in (None, ""):
        return []
    if not isinstance(name, str):
        return [type_error(field, name, "string")]
    errs = problems_at(field, name, port_name_problems(name))
    if name in seen:
        errs.append(duplicate_field(field, name))
    seen.add(name)
    return errs


def _check_env(env: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, var in enumerate(list_of(env)):
        field = f"{path}[{i}]"
        if not isinstance(var, dict):
            errs.append(type_error(field, var, "object"))
            continue
        errs += check_name(f"{field}.name", var.get("name"), env_var_name_problems)
        if var.get("value") not in (None, "") and var.get("valueFrom") is not None:
            detail = "may not be specified when `value` is not empty"
            errs.append(invalid_field(f"{field}.valueFrom", "", detail))
    return errs


def _check_mounts(mounts: Any, path: str, volumes: set[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    mount_paths: set[str] = set()
    for i, mount in enumerate(list_of(mounts)):
        field = f"{path}[{i}]"
        if not isinstance(mount, dict):
            errs.append(type_error(field, mount, "object"))
            continue
        name, mount_path = mount.get("name"), mount.get("mountPath")
        mistyped = [
            type_error(f"{field}.{key}", value, "string")
            for key, value in (("name", name), ("mountPath", mount_path))
            if value is not None and not isinstance(value, str)
        ]
        if mistyped:
            errs += mistyped
            continue
        if name in (None, ""):
            errs.append(required_field(f"{field}.name"))
        elif name not in volumes:
            errs.append(FieldError("FieldValueNotFound", f"{field}.name", "", name))
        if mount_path in (None, ""):
            errs.append(required_field(f"{field}.mountPath"))
        elif mount_path in mount_paths:
            errs.append(invalid_field(f"{field}.mountPath", mount_path, "must be unique"))
        mount_paths.add(str(mount_path))
    return errs


def check_resources(resources: Any, path: str) -> list[FieldError]:
    """Requests and limits: known names, valid non-negative quantities, requests ≤ limits."""
    resources = dict_of(resources)
    errs: list[FieldError] = []
    parsed: dict[str, dict[str, Any]] = {}
    for kind in ("limits", "requests"):
        parsed[kind] = {}
        for name, value in dict_of(resources.get(kind)).items():
            field = f"{path}.{kind}[{name}]"
            errs += _check_resource_name(field, name)
            amount_errs, amount = _check_quantity(field, value)
            errs += amount_errs
            if amount is not None:
                parsed[kind][name] = (amount, value)
    return errs + _check_requests_within_limits(parsed, path)


def _check_resource_name(field: str, name: str) -> list[FieldError]:
    if name in _STANDARD_RESOURCES or name.startswith("hugepages-"):
        return []
    if "/" in name and not qualified_name_errors(name) and "kubernetes.io/" not in name:
        return []
    return [invalid_field(field, name, "must be a standard resource for containers")]


def _check_quantity(field: str, value: Any) -> tuple[list[FieldError], Any]:
    try:
        amount = parse_quantity(value)
    except QuantityError:
        return [invalid_field(field, value, FORMAT_ERROR)], None
    if amount < 0:
        return [invalid_field(field, value, "must be greater than or equal to 0")], None
    return [], amount


def _check_requests_within_limits(parsed: dict[str, dict[str, Any]], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for name, (request, request_text) in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit[0]:
            detail = f"must be less than or equal to {name} limit of {limit[1]}"
            errs.append(invalid_field(f"{path}.requests[{name}]", request_text, detail))
    return errs


def _check_volumes(volumes: Any, path: str) -> tuple[list[FieldError], set[str]]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, volume in enumerate(list_of(volumes)):
        field = f"{path}[{i}]"
        if not isinstance(volume, dict):
            errs.append(type_error(field, volume, "object"))
            continue
        name = volume.get("name")
        errs += check_name(f"{field}.name", name, dns1123_label_errors)
        if isinstance(name, str) and name in names:
            errs.append(duplicate_field(f"{field}.name", name))
        names.add(str(name))
        errs += _check_volume_source(volume, field)
    return errs, names


def _check_volume_source(volume: Obj, path: str) -> list[FieldError]:
    sources = [key for key in volume if key in VOLUME_SOURCES]
    if not sources:
        return [required_field(path, "must specify a volume type")]
    errs = [
        forbidden_field(f"{path}.{key}", "may not specify more than 1 volume type")
        for key in sources[1:]
    ]
    source = dict_of(volume[sources[0]])
    for key, required in _REQUIRED_SOURCE_FIELDS.get(sources[0], ()):
        if source.get(required) in (None, ""):
            errs.append(required_field(f"{path}.{key}.{required}"))
    if sources[0] == "hostPath":
        host_type = source.get("type") or ""  # "" (no check) is kube's default
        errs += check_enum(f"{path}.hostPath.type", host_type, _HOST_PATH_TYPES, required=False)
    return errs


_REQUIRED_SOURCE_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "persistentVolumeClaim": (("persistentVolumeClaim", "claimName"),),
    "secret": (("secret", "secretName"),),
    "configMap": (("configMap", "name"),),
    "hostPath": (("hostPath", "path"),),
    "nfs": (("nfs", "server"), ("nfs", "path")),
    "csi": (("csi", "driver"),),
}


def _check_tolerations(tolerations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, toleration in enumerate(list_of(tolerations)):
        field = f"{path}[{i}]"
        if not isinstance(toleration, dict):
            errs.append(type_error(field, toleration, "object"))
            continue
        errs += check_toleration(toleration, field)
    return errs


def check_toleration(toleration: Obj, path: str) -> list[FieldError]:
    key, operator = toleration.get("key") or "", toleration.get("operator") or "Equal"
    if not isinstance(key, str):
        return [type_error(f"{path}.key", key, "string")]
    errs = problems_at(f"{path}.key", key, qualified_name_errors(key)) if key else []
    if not key and operator != "Exists":
        detail = (
            "operator must be Exists when `key` is empty, "
            'which means "match all values and all keys"'
        )
        errs.append(invalid_field(f"{path}.operator", operator, detail))
    if operator == "Exists" and toleration.get("value"):
        detail = "value must be empty when `operator` is 'Exists'"
        errs.append(invalid_field(f"{path}.operator", toleration, detail))
    errs += check_enum(f"{path}.operator", operator, ("Equal", "Exists"))
    effect = toleration.get("effect")
    if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
        detail = "effect must be 'NoExecute' when `tolerationSeconds` is set"
        errs.append(invalid_field(f"{path}.effect", effect, detail))
    return errs + check_enum(f"{path}.effect", effect, TAINT_EFFECTS, required=False)
