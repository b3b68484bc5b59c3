"""This host as a Kubernetes Node: real capacity, addresses, a heartbeat Lease.

Capacity is what the host really has: CPUs from the scheduler affinity mask, memory from the
cgroup v1 memory limit of the agent's hierarchy or /proc/meminfo (whichever is smaller), pods
110 (the kubelet's default), ephemeral storage from the agent's filesystem. The Node is created
or its status refreshed at start and every `STATUS_INTERVAL`; the Lease in `kube-node-lease` is
renewed every `LEASE_INTERVAL`, like the kubelet's node heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from unistack.client.api import AlreadyExists, ApiError, Client, NotFound
from unistack.client.resources import LEASES, NODES
from unistack.client.transport import TransportError
from unistack.runtime import events

log = logging.getLogger(__name__)
Obj = dict[str, Any]
LEASE_INTERVAL = 10.0
STATUS_INTERVAL = 60.0
LEASE_NAMESPACE = "kube-node-lease"
KUBELET_VERSION = "v1.32.0"


def memory_bytes() -> int:
    total = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError):
        limit = int(Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").read_text())
        if 0 < limit < total:
            total = limit
    return total


def host_ip() -> str:
    """The source address of the default route; 127.0.0.1 on a host without one."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError, ValueError):
        out = subprocess.run(
            ["ip", "-4", "route", "get", "192.0.2.1"], capture_output=True, text=True, timeout=5
        ).stdout.split()
        return out[out.index("src") + 1]
    return "127.0.0.1"


def capacity(root: Path) -> dict[str, str]:
    stats = os.statvfs(root)
    return {
        "cpu": str(len(os.sched_getaffinity(0))),
        "memory": f"{memory_bytes() // 1024}Ki",
        "pods": "110",
        "ephemeral-storage": f"{stats.f_blocks * stats.f_frsize // 1024}Ki",
    }


def node_object(
    name: str,
    address: str,
    port: int,
    pod_cidr: str,
    runtime: str,
    root: Path,
    instance_drivers: tuple[str, ...] = (),
    volume_pool: int = 0,
    uplink: bool = False,
) -> Obj:
    now = events.timestamp()
    resources = capacity(root)
    conditions = [
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        (
            "Ready",
            "True",
            "KubeletReady",
            f"unistack agent is posting ready status ({runtime} runtime)",
        ),
    ]
    machine = ""
    with contextlib.suppress(OSError):
        machine = Path("/etc/machine-id").read_text().strip()
    boot = ""
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64"
                if platform.machine() == "x86_64"
                else platform.machine(),
                "beta.kubernetes.io/os": "linux",
                "unistack.io/runtime": runtime,
            },
            "annotations": {
                "unistack.io/runtime": runtime,
                # which servers' instances this agent runs (unistack.iaas.compute.agentdriver)
                "unistack.io/instance-drivers": ",".join(instance_drivers),
                # the volume pool's capacity in bytes (unistack.iaas.volume.agentbackend)
                "unistack.io/volume-pool": str(volume_pool) if volume_pool else "",
                # external networks meet the outside here (unistack.agent.networking)
                "unistack.io/external-uplink": "true" if uplink else "",
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "capacity": resources,
            "allocatable": dict(resources),
            "conditions": [
                {
                    "type": kind,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
                for kind, status, reason, message in conditions
            ],
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {
                "machineID": machine,
                "systemUUID": machine,
                "bootID": boot,
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": f"{runtime}://unistack",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64" if platform.machine() == "x86_64" else platform.machine(),
            },
        },
    }


def _os_image() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return "Linux"


def default_node_name() -> str:
    return socket.gethostname().lower()


async def register(client: Client, node: Obj) -> Obj:
    """Create the Node (retrying until the API answers), then write its labels, podCIDR and
    status over whatever is stored: the create carries them (a Node keeps the status it is
    created with, as kubelet's registration relies on), but a Node left from an earlier run
    of this agent must be brought up to date."""
    name = node["metadata"]["name"]
    delay = 0.5
    while True:
        try:
            with contextlib.suppress(AlreadyExists):
                await client.create(NODES, node)
            current = await client.get(NODES, name)
            break
        except (ApiError, TransportError) as error:
            log.warning("registering node %s: %s; retrying in %.1fs", name, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
    current["metadata"].setdefault("labels", {}).update(node["metadata"]["labels"])
    current["metadata"].setdefault("annotations", {}).update(node["metadata"]["annotations"])
    current.setdefault("spec", {}).update(node["spec"])
    current = await client.update(NODES, current)
    current["status"] = node["status"]
    return await client.update_status(NODES, current)


async def heartbeat(client: Client, node: Obj) -> None:
    """Renew the node Lease every LEASE_INTERVAL and the Node's status every STATUS_INTERVAL."""
    name = node["metadata"]["name"]
    since_status = 0.0
    while True:
        try:
            await renew_lease(client, name, node["metadata"].get("uid", ""))
            since_status += LEASE_INTERVAL
            if since_status >= STATUS_INTERVAL:
                since_status = 0.0
                now = events.timestamp()
                conditions = node["status"]["conditions"]
                for condition in conditions:
                    condition["lastHeartbeatTime"] = now
                await client.patch(
                    NODES, name, {"status": {"conditions": conditions}}, subresource="status"
                )
        except ApiError as error:
            log.warning("node heartbeat: %s", error)
        except (OSError, TransportError) as error:
            log.warning("node heartbeat: %s", error)
        await asyncio.sleep(LEASE_INTERVAL)


async def renew_lease(client: Client, name: str, node_uid: str) -> None:
    """One heartbeat: the node's Lease in `kube-node-lease` renewed (made when absent)."""
    try:
        lease = await client.get(LEASES, name, LEASE_NAMESPACE)
    except NotFound:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}
                ]
                if node_uid
                else [],
            },
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": 40,
                "renewTime": events.micro_time(),
            },
        }
        with contextlib.suppress(AlreadyExists):
            await client.create(LEASES, body)
        return
    lease["spec"]["renewTime"] = events.micro_time()
    lease["spec"]["holderIdentity"] = name
    await client.update(LEASES, lease)
