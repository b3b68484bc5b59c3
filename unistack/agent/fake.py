"""A runtime that keeps state only: for machines without root or runc, and for scale tests.

Containers "run" until they are signalled; a container whose argv is exactly
`["fake-exit", "<code>"]` ends at once with that code, so restart and failure paths can be
driven without Linux. Sandboxes get addresses from the pod CIDR in order. The Node says
`unistack.io/runtime: fake`, so nobody mistakes it for real containers.
"""

from __future__ import annotations

import ipaddress
import signal
import time
from pathlib import Path
from typing import Any

from unistack.agent.runtime import (
    Container,
    ContainerConfig,
    ExecResult,
    Exit,
    ImageNotFound,
    Sandbox,
)


class FakeRuntime:
    name = "fake"

    def __init__(self, root: Path, pod_cidr: str, *, missing_images: frozenset[str] = frozenset()):
        self.root = root
        self.network = ipaddress.ip_network(pod_cidr)
        self.missing_images = missing_images
        self._hosts = self.network.hosts()
        next(self._hosts)  # the gateway
        self.sandboxes: dict[str, Sandbox] = {}
        self.containers: dict[str, Container] = {}
        self.configs: dict[str, ContainerConfig] = {}  # each present container's

    async def run_sandbox(self, pod: dict[str, Any]) -> Sandbox:
        uid = pod["metadata"]["uid"]
        if uid not in self.sandboxes:
            pod_dir = self.root / "pods" / uid
            pod_dir.mkdir(parents=True, exist_ok=True)
            self.sandboxes[uid] = Sandbox(uid, f"fake-{uid}", str(next(self._hosts)), pod_dir)
        return self.sandboxes[uid]

    async def remove_sandbox(self, pod_uid: str) -> None:
        self.sandboxes.pop(pod_uid, None)

    async def prepare_image(self, image: str, pull_policy: str) -> dict[str, Any]:
        if image in self.missing_images:
            raise ImageNotFound("ErrImagePull", f'failed to pull image "{image}": not found')
        return {}

    async def start(self, sandbox: Sandbox, config: ContainerConfig, attempt: int) -> Container:
        container_id = f"{sandbox.pod_uid}-{config.name}-{attempt}"
        log_path = sandbox.pod_dir / "logs" / config.name / f"{attempt}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()
        container = Container(container_id, config.name, attempt, log_path, 0, time.time())
        if len(config.argv) == 2 and config.argv[0] == "fake-exit":
            container.exited.set_result(Exit(int(config.argv[1]), finished_at=time.time()))
        self.containers[container_id] = container
        self.configs[container_id] = config
        return container

    async def signal(self, container: Container, signum: int) -> None:
        if signum == signal.SIGKILL and not container.exited.done():
            container.exited.set_result(Exit(128 + signum, signum, finished_at=time.time()))

    async def remove(self, container: Container) -> None:
        await self.signal(container, signal.SIGKILL)
        self.containers.pop(container.id, None)
        self.configs.pop(container.id, None)

    async def exec(self, container: Container, argv: list[str], timeout: float) -> ExecResult:
        return ExecResult(0, b"", b"")

    def exec_argv(self, container: Container, argv: list[str], tty: bool) -> list[str]:
        raise NotImplementedError("the fake runtime cannot exec")

    async def cleanup_all(self) -> None:
        for container in list(self.containers.values()):
            await self.remove(container)
        self.sandboxes.clear()
