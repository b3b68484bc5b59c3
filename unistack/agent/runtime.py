"""The container runtime seam: what the pod worker asks of runc (or of the fake).

Shaped like the CRI that a kubelet talks to, but smaller: a pod *sandbox* is its network
namespace with an address from CNI; a *container* is one run of one container of the pod (a
restart is a new container with the next attempt number). The runtime owns no policy: the pod
worker decides when to start, stop and restart; the runtime only does it and reports exits.

`RuncRuntime` (`unistack.agent.runc`) is the real one; `FakeRuntime` (`unistack.agent.fake`)
keeps state only, for machines without root or runc and for scale tests, and says so on the
Node.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Mount:
    """A bind mount into a container (volumes, /etc/hosts, /etc/resolv.conf)."""

    source: str
    destination: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Limits:
    """cgroup v1 limits for one container, from `resources`."""

    memory_bytes: int | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int = 100_000
    cpu_shares: int | None = None
    pids: int | None = None


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """Everything needed to start one container, already resolved from the pod spec and the
    image config (argv, environment, working directory, user)."""

    name: str
    image: str
    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    hostname: str
    uid: int = 0
    gid: int = 0
    mounts: tuple[Mount, ...] = ()
    limits: Limits = Limits()
    read_only_root: bool = False
    privileged: bool = False
    add_capabilities: tuple[str, ...] = ()
    drop_capabilities: tuple[str, ...] = ()
    tty: bool = False


@dataclass(slots=True)
class Sandbox:
    """A pod's network namespace and address (no namespace, "", for a pod on the host's
    network: its address is the node's)."""

    pod_uid: str
    netns: str
    ip: str
    pod_dir: Path


@dataclass(frozen=True, slots=True)
class Exit:
    """How a container ended; `oom_killed` when the kernel's OOM killer ended it."""

    exit_code: int
    signal: int | None = None
    oom_killed: bool = False
    finished_at: float = 0.0


@dataclass(slots=True)
class Container:
    """One started container: its id for the runtime, its log file and its end."""

    id: str
    name: str
    attempt: int
    log_path: Path
    pid: int = 0
    started_at: float = 0.0
    bundle: Path | None = None  # the runtime's files for this run, removed with it
    adopted: bool = False  # found running, left by an agent that restarted
    exited: asyncio.Future[Exit] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


class ImageNotFound(Exception):
    """The image could not be pulled; `reason` is the kubelet's waiting reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ContainerRuntime(Protocol):
    """What the pod worker needs from a runtime."""

    name: str

    async def run_sandbox(self, pod: dict[str, object]) -> Sandbox: ...

    async def remove_sandbox(self, pod_uid: str) -> None: ...

    async def prepare_image(self, image: str, pull_policy: str) -> dict[str, object]:
        """Make the image present (pull) and return its OCI config (`Env`, `Cmd`, ...)."""
        ...

    async def start(self, sandbox: Sandbox, config: ContainerConfig, attempt: int) -> Container: ...

    async def signal(self, container: Container, signum: int) -> None: ...

    async def remove(self, container: Container) -> None: ...

    async def exec(self, container: Container, argv: list[str], timeout: float) -> ExecResult: ...

    def exec_argv(self, container: Container, argv: list[str], tty: bool) -> list[str]:
        """The host command that runs `argv` inside the container (for streaming exec)."""
        ...

    async def cleanup_all(self) -> None:
        """Remove every container and sandbox this runtime made (agent shutdown, `down`)."""
        ...


def host_network(pod: dict[str, object]) -> bool:
    """Whether the pod shares the node's network (`spec.hostNetwork`)."""
    spec = pod.get("spec")
    return isinstance(spec, dict) and spec.get("hostNetwork") is True
