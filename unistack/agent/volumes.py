"""A pod's volumes on the host, and each container's bind mounts of them.

Every volume becomes a host directory (or file) that runc bind-mounts into the containers
that name it in `volumeMounts` (with `subPath` and `readOnly`):

- emptyDir: `pods/<uid>/volumes/empty-dir/<name>`, removed with the pod;
- configMap, secret, downwardAPI and projected: files written from the objects the worker
  fetched (`containerspec.Sources`), honouring `items`, `defaultMode`/`mode` and `optional`;
  each file is replaced atomically, so a running container sees the old or the new content.
  A projected `serviceAccountToken` is the token the worker holds for it
  (`unistack.agent.podtokens`), written again by `write_tokens` when renewed; a missing
  `kube-root-ca.crt` is tolerated, for a cluster whose controllers publish no CA (plain
  HTTP);
- hostPath: the host path itself, created for `DirectoryOrCreate`/`FileOrCreate`, checked for
  the other types;
- persistentVolumeClaim: the bound PersistentVolume's `hostPath` or `local` path (the local
  provisioner's directory), resolved by the worker into `claim_paths`.

The standard files of every pod (/etc/hosts, /etc/hostname, /etc/resolv.conf) are written
here too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unistack.agent import podtokens
from unistack.agent.containerspec import ConfigError, Sources
from unistack.agent.runtime import Mount

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DnsConfig:
    nameservers: tuple[str, ...]
    searches: tuple[str, ...]
    options: tuple[str, ...] = ("ndots:5",)
    # the node's own resolvers, for `dnsPolicy: Default` (as the kubelet's --resolv-conf)
    node_nameservers: tuple[str, ...] = ()
    node_searches: tuple[str, ...] = ()


def node_resolvers(resolv_conf: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The nameservers and search domains of a resolv.conf."""
    nameservers: list[str] = []
    searches: list[str] = []
    for line in resolv_conf.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            with contextlib.suppress(ValueError):
                nameservers.append(str(ipaddress.ip_address(words[1])))
        elif words and words[0] in ("search", "domain"):
            searches = words[1:]
    return tuple(nameservers), tuple(searches)


def _reachable(nameservers: tuple[str, ...], on_host: bool) -> list[str]:
    """The node's nameservers a pod can reach: a loopback one only from the node's network
    (a pod's loopback is its own)."""
    return [n for n in nameservers if on_host or not ipaddress.ip_address(n).is_loopback]


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_bytes() == data:
        os.chmod(path, mode)
        return
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def _project(target: Path, data: Mapping[str, str], items: list[Obj] | None, mode: int) -> None:
    target.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, tuple[str, int]] = {}
    if items:
        for item in items:
            if item["key"] not in data:
                raise ConfigError(f"key {item['key']} not found")
            wanted[item["path"]] = (data[item["key"]], int(item.get("mode", mode)))
    else:
        wanted = {key: (value, mode) for key, value in data.items()}
    for relative, (value, file_mode) in wanted.items():
        _write(_inside(target, relative), value.encode(), file_mode)


def _inside(target: Path, relative: str) -> Path:
    if ".." in Path(relative).parts or relative.startswith("/"):
        raise ConfigError(f"invalid path {relative!r}")
    return target / relative


def _table(volume: Obj, sources: Sources) -> tuple[str, Mapping[str, Mapping[str, str]], Obj]:
    if "configMap" in volume:
        return "configmap", sources.config_maps, volume["configMap"]
    return "secret", sources.secrets, volume["secret"]


def _object_volume(target: Path, volume: Obj, sources: Sources) -> None:
    kind, table, ref = _table(volume, sources)
    name = ref.get("name") or ref.get("secretName") or ""
    data = table.get(name)
    if data is None:
        if ref.get("optional"):
            target.mkdir(parents=True, exist_ok=True)
            return
        raise ConfigError(f'{kind} "{name}" not found')
    _project(target, data, ref.get("items"), int(ref.get("defaultMode", 0o644)))


def _downward(pod: Obj, items: list[Obj]) -> dict[str, str]:
    meta = pod.get("metadata") or {}
    values: dict[str, str] = {}
    for item in items:
        path = (item.get("fieldRef") or {}).get("fieldPath", "")
        if path in ("metadata.labels", "metadata.annotations"):
            mapping = meta.get(path.split(".")[1]) or {}
            values[item["path"]] = "\n".join(f'{k}="{v}"' for k, v in sorted(mapping.items()))
        elif path in ("metadata.name", "metadata.namespace", "metadata.uid"):
            values[item["path"]] = str(meta.get(path.split(".")[1], ""))
    return values


def _projected(target: Path, pod: Obj, volume: Obj, sources: Sources) -> None:
    mode = int(volume["projected"].get("defaultMode", 0o644))
    target.mkdir(parents=True, exist_ok=True)
    for source in volume["projected"].get("sources") or []:
        if "configMap" in source or "secret" in source:
            kind, table, ref = _table(source, sources)
            data = table.get(ref.get("name", ""))
            if data is None:
                if ref.get("optional") or ref.get("name") == "kube-root-ca.crt":
                    continue
                raise ConfigError(f'{kind} "{ref.get("name", "")}" not found')
            _project(target, data, ref.get("items"), mode)
        elif "downwardAPI" in source:
            items = source["downwardAPI"].get("items") or []
            _project(target, _downward(pod, items), None, mode)
        elif "serviceAccountToken" in source:
            _write_token(target, source["serviceAccountToken"], sources.tokens, mode)


def _write_token(
    target: Path, source: Obj, tokens: Mapping[podtokens.TokenKey, str], mode: int
) -> None:
    token = tokens.get(podtokens.token_key(source))
    if token is None:
        raise ConfigError(f"no service account token for {source.get('path', 'token')!r}")
    _write(_inside(target, str(source.get("path") or "token")), token.encode(), mode)


def write_tokens(pod: Obj, pod_dir: Path, tokens: Mapping[podtokens.TokenKey, str]) -> None:
    """Write the pod's projected service-account tokens again (renewed ones), and nothing
    else, where `prepare` put them."""
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        projected = volume.get("projected") or {}
        target = _volume_dir(pod_dir, "projected", volume["name"])
        mode = int(projected.get("defaultMode", 0o644))
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                _write_token(target, source["serviceAccountToken"], tokens, mode)


def _volume_dir(pod_dir: Path, kind: str, name: str) -> Path:
    """Where a volume the agent fills lives on the host: `volumes/<kind>/<name>`."""
    return pod_dir / "volumes" / kind / name


def _host_path(volume: Obj) -> Path:
    spec = volume["hostPath"]
    path = Path(spec["path"])
    kind = spec.get("type", "")
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind == "Directory" and not path.is_dir():
        raise ConfigError(f"hostPath type check failed: {path} is not a directory")
    elif kind == "File" and not path.is_file():
        raise ConfigError(f"hostPath type check failed: {path} is not a file")
    elif kind == "Socket" and not path.is_socket():
        raise ConfigError(f"hostPath type check failed: {path} is not a socket")
    return path


def prepare(
    pod: Obj, pod_dir: Path, sources: Sources, claim_paths: Mapping[str, str]
) -> dict[str, Path]:
    """Make every volume of `pod` exist on the host; volume name -> host path."""
    paths: dict[str, Path] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = volume["name"]
        if "hostPath" in volume:
            paths[name] = _host_path(volume)
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in claim_paths:
                raise ConfigError(f'persistentvolumeclaim "{claim}" is not bound')
            paths[name] = Path(claim_paths[claim])
        else:
            kind = next((k for k in volume if k != "name"), "emptyDir")
            target = _volume_dir(pod_dir, kind, name)
            if kind in ("configMap", "secret"):
                _object_volume(target, volume, sources)
            elif kind == "projected":
                _projected(target, pod, volume, sources)
            elif kind == "downwardAPI":
                items = volume["downwardAPI"].get("items") or []
                _project(target, _downward(pod, items), None, 0o644)
            else:
                target.mkdir(parents=True, exist_ok=True)
            paths[name] = target
    return paths


def container_mounts(
    container: Obj, volume_paths: Mapping[str, Path], pod_dir: Path
) -> list[Mount]:
    """The bind mounts of one container: the pod's standard files, then its volumeMounts."""
    mounts = [
        Mount(str(pod_dir / "etc-hosts"), "/etc/hosts"),
        Mount(str(pod_dir / "etc-hostname"), "/etc/hostname"),
        Mount(str(pod_dir / "resolv.conf"), "/etc/resolv.conf"),
    ]
    for volume_mount in container.get("volumeMounts") or []:
        source = volume_paths.get(volume_mount["name"])
        if source is None:
            raise ConfigError(f"volume {volume_mount['name']!r} not found")
        sub_path = volume_mount.get("subPath")
        if sub_path:
            if ".." in Path(sub_path).parts or sub_path.startswith("/"):
                raise ConfigError(f"invalid subPath {sub_path!r}")
            source = source / sub_path
            if not source.exists():
                source.mkdir(parents=True, exist_ok=True)
        mounts.append(
            Mount(str(source), volume_mount["mountPath"], bool(volume_mount.get("readOnly")))
        )
    return mounts


def write_pod_files(pod: Obj, pod_dir: Path, pod_ip: str, dns: DnsConfig | None) -> None:
    """/etc/hosts, /etc/hostname and /etc/resolv.conf as the kubelet writes them."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    hostname = spec.get("hostname") or meta["name"]
    names = [hostname]
    if spec.get("subdomain"):
        names.insert(0, f"{hostname}.{spec['subdomain']}.{meta.get('namespace', 'default')}.svc")
    hosts = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{pod_ip}\t{' '.join(names)}",
    ]
    for alias in spec.get("hostAliases") or []:
        hosts.append(f"{alias['ip']}\t{' '.join(alias.get('hostnames') or [])}")
    _write(pod_dir / "etc-hosts", ("\n".join(hosts) + "\n").encode(), 0o644)
    _write(pod_dir / "etc-hostname", (hostname + "\n").encode(), 0o644)
    lines: list[str] = []
    policy = spec.get("dnsPolicy", "ClusterFirst")
    if policy == "ClusterFirst" and spec.get("hostNetwork") is True:
        policy = "Default"  # as the kubelet: on the node's network, its resolvers
    config = spec.get("dnsConfig") or {}
    if dns is not None and policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        namespace = meta.get("namespace", "default")
        searches = [
            f"{namespace}.svc.{dns.searches[0]}",
            *[f"svc.{s}" for s in dns.searches[:1]],
            *dns.searches,
        ]
        lines.append("search " + " ".join([*searches, *(config.get("searches") or [])]))
        lines.extend(f"nameserver {server}" for server in dns.nameservers)
    else:
        node_searches = dns.node_searches if dns is not None and policy == "Default" else ()
        searches = [*node_searches, *(config.get("searches") or [])]
        if searches:
            lines.append("search " + " ".join(searches))
        if dns is not None and policy == "Default":
            on_host = spec.get("hostNetwork") is True
            servers = _reachable(dns.node_nameservers, on_host)
            lines.extend(f"nameserver {server}" for server in servers)
    lines.extend(f"nameserver {server}" for server in config.get("nameservers") or [])
    options = list(dns.options if dns is not None and policy.startswith("ClusterFirst") else ())
    options += [
        f"{o['name']}:{o['value']}" if o.get("value") else o["name"]
        for o in config.get("options") or []
    ]
    if options:
        lines.append("options " + " ".join(options))
    _write(pod_dir / "resolv.conf", ("\n".join(lines) + "\n").encode(), 0o644)
