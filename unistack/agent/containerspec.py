"""From a pod's container spec and its image's config to a `ContainerConfig` (pure).

The kubelet's rules: `command` replaces the image's Entrypoint and `args` its Cmd (`args`
alone keeps the Entrypoint); environment is the image's, then `envFrom`, then `env`, with
`$(VAR)` references expanded from the variables defined before (`$$` escapes); `valueFrom`
reads the pod's own fields, ConfigMaps and Secrets (fetched by the caller into `Sources`);
the Services' variables (`KUBERNETES_SERVICE_HOST`, ..., and with `enableServiceLinks` those of
every Service in the pod's namespace, `service_links`) come between the image's and the
container's own; `workingDir` falls back to the image's; `securityContext`
gives the user, group, capabilities, privileged and a read-only root; `resources.limits`
become cgroup v1 limits (cpu shares from the request, as the kubelet converts them).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from unistack import quantity
from unistack.agent.podtokens import TokenKey
from unistack.agent.runtime import ContainerConfig, Limits, Mount

Obj = dict[str, Any]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
API_SERVICE = "kubernetes"  # the API server's Service, in the namespace below
API_SERVICE_NAMESPACE = "default"
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError)."""


@dataclass(frozen=True, slots=True)
class Sources:
    """What env and volumes may read: ConfigMaps and Secrets by name (decoded), pod facts,
    the pod's service-account tokens, and the variables that locate the API server."""

    config_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    pod_ip: str = ""
    host_ip: str = ""
    tokens: Mapping[TokenKey, str] = field(default_factory=dict)
    service_env: Mapping[str, str] = field(default_factory=dict)


def secret_data(secret: Obj) -> dict[str, str]:
    """A Secret's data decoded (stringData is folded in by the API server)."""
    decoded = {
        k: base64.b64decode(v).decode(errors="replace")
        for k, v in (secret.get("data") or {}).items()
    }
    return {**decoded, **(secret.get("stringData") or {})}


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Expand `$(NAME)` from `variables`; unknown references stay as written, `$$` is `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return variables.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def command_line(container: Obj, image: Obj) -> list[str]:
    entrypoint = list(image.get("Entrypoint") or [])
    cmd = list(image.get("Cmd") or [])
    command, args = container.get("command"), container.get("args")
    if command:
        return list(command) + list(args or [])
    if args:
        return entrypoint + list(args)
    return entrypoint + cmd


def _field_value(pod: Obj, path: str, sources: Sources) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": sources.pod_ip,
        "status.podIPs": sources.pod_ip,
        "status.hostIP": sources.host_ip,
        "status.hostIPs": sources.host_ip,
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _resource_value(container: Obj, ref: Obj) -> str:
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if value is None:
        return "0"
    divisor = quantity.parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(quantity.parse_quantity(value) / divisor))


def _key_ref(kind: str, ref: Obj, table: Mapping[str, Mapping[str, str]]) -> str | None:
    data = table.get(ref.get("name", ""))
    key = ref.get("key", "")
    if data is not None and key in data:
        return data[key]
    if ref.get("optional"):
        return None
    if data is None:
        raise ConfigError(f'{kind} "{ref.get("name", "")}" not found')
    raise ConfigError(f"couldn't find key {key} in {kind} {ref.get('name', '')}")


def _variable_name(name: str) -> str:
    return name.replace("-", "_").upper()


def service_variables(service: Obj) -> dict[str, str]:
    """What the kubelet tells every container of a Service (`kubernetes` in `default`: where
    the API server is): `{NAME}_SERVICE_HOST`, `{NAME}_SERVICE_PORT` (the first port's) and
    `{NAME}_SERVICE_PORT_{PORT NAME}`, then Docker's link variables `{NAME}_PORT` and, per
    port, `{NAME}_PORT_{port}_{PROTOCOL}` and its `_PROTO`, `_PORT` and `_ADDR`. Nothing for
    a headless Service."""
    spec = service.get("spec") or {}
    address = str(spec.get("clusterIP") or "")
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("port")]
    if address in ("", "None") or not ports:
        return {}
    prefix = _variable_name(service["metadata"]["name"])
    found = {f"{prefix}_SERVICE_HOST": address, f"{prefix}_SERVICE_PORT": str(ports[0]["port"])}
    for port in ports:
        if port.get("name"):
            found[f"{prefix}_SERVICE_PORT_{_variable_name(port['name'])}"] = str(port["port"])
    host = f"[{address}]" if ":" in address else address
    for index, port in enumerate(ports):
        protocol = str(port.get("protocol") or "TCP").lower()
        url = f"{protocol}://{host}:{port['port']}"
        if index == 0:
            found[f"{prefix}_PORT"] = url
        each = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
        found.update({each: url, f"{each}_PROTO": protocol, f"{each}_PORT": str(port["port"])})
        found[f"{each}_ADDR"] = address
    return found


def service_links(services: list[Obj], namespace: str, enabled: bool) -> dict[str, str]:
    """Every container's Service variables, as the kubelet picks the Services: the API
    server's (`kubernetes` in `default`) always, and, when the pod's `enableServiceLinks` is
    on (the default), each Service of the pod's own namespace, which wins over the API
    server's for the same name."""
    chosen: dict[str, Obj] = {}
    for service in services:
        meta = service.get("metadata") or {}
        name, where = meta.get("name"), meta.get("namespace")
        if where == API_SERVICE_NAMESPACE and name == API_SERVICE:
            chosen.setdefault(name, service)
        elif where == namespace and enabled:
            chosen[str(name)] = service
    found: dict[str, str] = {}
    for name in sorted(chosen):
        found.update(service_variables(chosen[name]))
    return found


def environment(pod: Obj, container: Obj, image: Obj, sources: Sources) -> list[str]:
    """The container's environment as `NAME=value`, in the kubelet's order and precedence:
    the image's, the API server's Service variables, `envFrom`, `env`."""
    variables: dict[str, str] = {}
    for entry in image.get("Env") or [DEFAULT_PATH]:
        name, _, value = entry.partition("=")
        variables[name] = value
    variables.update(sources.service_env)
    defined: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, table, kind = source["configMapRef"], sources.config_maps, "configmap"
        else:
            ref, table, kind = source.get("secretRef") or {}, sources.secrets, "secret"
        data = table.get(ref.get("name", ""))
        if data is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{kind} "{ref.get("name", "")}" not found')
        for key, value in data.items():
            defined[prefix + key] = value
    for entry in container.get("env") or []:
        name = entry["name"]
        value_from = entry.get("valueFrom")
        if value_from is None:
            defined[name] = expand(entry.get("value", ""), {**variables, **defined})
            continue
        resolved: str | None
        if "fieldRef" in value_from:
            resolved = _field_value(pod, value_from["fieldRef"].get("fieldPath", ""), sources)
        elif "resourceFieldRef" in value_from:
            resolved = _resource_value(container, value_from["resourceFieldRef"])
        elif "configMapKeyRef" in value_from:
            resolved = _key_ref("configmap", value_from["configMapKeyRef"], sources.config_maps)
        elif "secretKeyRef" in value_from:
            resolved = _key_ref("secret", value_from["secretKeyRef"], sources.secrets)
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom")
        if resolved is not None:
            defined[name] = resolved
    variables.update(defined)
    return [f"{name}={value}" for name, value in variables.items()]


def limits(container: Obj) -> Limits:
    resources = container.get("resources") or {}
    limit = resources.get("limits") or {}
    request = resources.get("requests") or {}
    memory = limit.get("memory")
    cpu_limit = limit.get("cpu")
    cpu_request = request.get("cpu", cpu_limit)
    memory_bytes = math.ceil(quantity.parse_quantity(memory)) if memory is not None else None
    quota = None
    if cpu_limit is not None:
        quota = max(1000, math.ceil(quantity.parse_quantity(cpu_limit) * 100_000))
    shares = None
    if cpu_request is not None:
        shares = max(2, math.ceil(quantity.parse_quantity(cpu_request) * 1024))
    return Limits(memory_bytes=memory_bytes, cpu_quota_us=quota, cpu_shares=shares)


def _security(pod: Obj, container: Obj) -> tuple[Obj, Obj]:
    return (pod.get("spec") or {}).get("securityContext") or {}, container.get(
        "securityContext"
    ) or {}


def build(
    pod: Obj,
    container: Obj,
    image: Obj,
    sources: Sources,
    mounts: list[Mount],
) -> ContainerConfig:
    """The runtime's view of one container of `pod`."""
    env = environment(pod, container, image, sources)
    variables = dict(entry.partition("=")[::2] for entry in env)
    argv = [expand(part, variables) for part in command_line(container, image)]
    if not argv:
        raise ConfigError("no command specified")
    pod_security, security = _security(pod, container)
    user = str(image.get("User") or "")
    uid = security.get("runAsUser", pod_security.get("runAsUser"))
    gid = security.get("runAsGroup", pod_security.get("runAsGroup"))
    if uid is None and user.split(":")[0].isdigit():
        uid = int(user.split(":")[0])
    if gid is None and ":" in user and user.split(":")[1].isdigit():
        gid = int(user.split(":")[1])
    capabilities = security.get("capabilities") or {}
    return ContainerConfig(
        name=container["name"],
        image=container.get("image", ""),
        argv=tuple(argv),
        env=tuple(env),
        cwd=container.get("workingDir") or image.get("WorkingDir") or "/",
        hostname=(pod.get("spec") or {}).get("hostname") or pod["metadata"]["name"],
        uid=int(uid or 0),
        gid=int(gid or 0),
        mounts=tuple(mounts),
        limits=limits(container),
        read_only_root=bool(security.get("readOnlyRootFilesystem")),
        privileged=bool(security.get("privileged")),
        add_capabilities=tuple(capabilities.get("add") or ()),
        drop_capabilities=tuple(capabilities.get("drop") or ()),
        tty=False,
    )
