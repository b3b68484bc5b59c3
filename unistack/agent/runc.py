"""The real container runtime: runc containers on overlayfs, in per-pod network namespaces.

Layout under the agent's directory (`root`):

    runc/                      runc's state (`runc --root`)
    pods/<uid>/                one pod: hosts, hostname, resolv.conf, volumes
    pods/<uid>/containers/<name>-<attempt>/{config.json,rootfs,upper,work}
    pods/<uid>/logs/<name>/<attempt>.log

A container is started with `runc run --detach`: runc execs the container's process and
exits, and the process is reparented to this agent, which made itself a child subreaper
(prctl PR_SET_CHILD_SUBREAPER) — so the agent is the parent that reaps it and learns its exit
status, with a pidfd in the event loop, without a shim process per container. A container that
outlives an agent restart is adopted: it is watched through a pidfd but, no longer our child,
its exit status is unknown (reported as the kubelet does, 137 ContainerStatusUnknown).

The container's stdout and stderr go straight to its log file, not through a pipe to the
agent, so a container keeps running while the agent restarts. OOM kills are read from the
container's cgroup v1 `memory.oom_control` before runc removes the cgroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import orjson

from unistack.agent import ocispec
from unistack.agent.runtime import (
    Container,
    ContainerConfig,
    ExecResult,
    Exit,
    ImageNotFound,
    Sandbox,
    host_network,
)
from unistack.dataplane import cni, netns
from unistack.dataplane.cnierrors import CniError
from unistack.dataplane.mounts import mount_overlay, mounts_under, unmount
from unistack.images.pull import ImageCache, ImagePullError, PulledImage

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
MS_RDONLY = 1
MEMORY_CGROUP = Path("/sys/fs/cgroup/memory")
NETNS_PREFIX = "unistack-"
UNKNOWN_EXIT = 137


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def become_subreaper() -> None:
    """Orphaned descendants (the containers runc leaves behind) become our children."""
    if _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _last_error(runc_log: Path) -> str:
    """The last error runc logged (its `--log` file is JSON lines)."""
    message = "runc failed"
    try:
        lines = runc_log.read_text(errors="replace").splitlines()
    except OSError:
        return message
    for line in lines:
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if entry.get("level") in ("error", "fatal"):
            message = str(entry.get("msg", message))
    return message


def oom_killed(cgroup: str) -> bool:
    try:
        text = (MEMORY_CGROUP / cgroup.lstrip("/") / "memory.oom_control").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value) > 0
    return False


class RuncRuntime:
    """`ContainerRuntime` over runc, overlayfs, named network namespaces and a CNI plugin."""

    name = "runc"

    def __init__(
        self,
        root: Path,
        *,
        cni_conf: dict[str, Any],
        cni_path: list[str] | None = None,
        images: ImageCache,
        default_registry: str,
        cgroup_parent: str = "/unistack",
        runc: str = "runc",
    ) -> None:
        self.root = root
        self.runc_root = root / "runc"
        self.pods_root = root / "pods"
        self.cni_conf = cni_conf
        self.cni_path = cni_path  # None: the directory of sys.executable
        self.images = images
        self.default_registry = default_registry
        self.cgroup_parent = cgroup_parent.rstrip("/")
        self.runc = runc
        self._pulled: dict[str, PulledImage] = {}
        self.namespaces = netns.LinuxNamespaces()
        self.runc_root.mkdir(parents=True, exist_ok=True)
        self.pods_root.mkdir(parents=True, exist_ok=True)
        become_subreaper()

    # --- sandboxes --------------------------------------------------------------------------

    def pod_dir(self, pod_uid: str) -> Path:
        return self.pods_root / pod_uid

    async def run_sandbox(self, pod: dict[str, Any]) -> Sandbox:
        uid = pod["metadata"]["uid"]
        pod_dir = self.pod_dir(uid)
        pod_dir.mkdir(parents=True, exist_ok=True)
        if host_network(pod):  # the node's network: no namespace, no CNI
            (pod_dir / "network.json").write_bytes(orjson.dumps({"host": True}))
            return Sandbox(uid, "", "", pod_dir)
        name = NETNS_PREFIX + uid
        record = pod_dir / "network.json"
        if self.namespaces.exists(name) and record.exists():
            ip = orjson.loads(record.read_bytes())["ip"]
            return Sandbox(uid, name, ip, pod_dir)
        await asyncio.to_thread(self.namespaces.create, name)
        result = await cni.add(
            self.cni_conf, uid, netns.path_of(name), "eth0", cni_path=self.cni_path
        )
        ip = result["ips"][0]["address"].split("/")[0]
        record.write_bytes(orjson.dumps({"ip": ip, "result": result}))
        return Sandbox(uid, name, ip, pod_dir)

    async def remove_sandbox(self, pod_uid: str) -> None:
        name = NETNS_PREFIX + pod_uid
        pod_dir = self.pod_dir(pod_uid)
        record = pod_dir / "network.json"
        wired = orjson.loads(record.read_bytes()) if record.exists() else {}
        previous = wired.get("result")
        path = netns.path_of(name) if self.namespaces.exists(name) else ""
        if wired.get("host"):  # on the node's network: nothing to undo
            await asyncio.to_thread(self._remove_dir, pod_dir)
            remove_cgroups(f"{self.cgroup_parent}/pod{pod_uid}")
            return
        try:
            await cni.delete(
                self.cni_conf,
                pod_uid,
                path,
                "eth0",
                prev_result=previous,
                cni_path=self.cni_path,
            )
        except CniError as error:
            log.warning("CNI DEL for pod %s: %s", pod_uid, error)
        await asyncio.to_thread(self.namespaces.delete, name)
        await asyncio.to_thread(self._remove_dir, pod_dir)
        remove_cgroups(f"{self.cgroup_parent}/pod{pod_uid}")

    @staticmethod
    def _remove_dir(path: Path) -> None:
        if not path.exists():
            return
        for point in mounts_under(path):
            unmount(point)
        shutil.rmtree(path, ignore_errors=True)

    # --- images -----------------------------------------------------------------------------

    async def prepare_image(self, image: str, pull_policy: str) -> dict[str, Any]:
        try:
            pulled = await self.images.pull(
                image, default_registry=self.default_registry, always=pull_policy == "Always"
            )
        except ImagePullError as error:
            raise ImageNotFound(error.kubelet_reason, str(error)) from error
        except ValueError as error:
            raise ImageNotFound("InvalidImageName", str(error)) from error
        self._pulled[image] = pulled
        return pulled.config.to_json()

    # --- containers -------------------------------------------------------------------------

    def container_id(self, sandbox: Sandbox, name: str, attempt: int) -> str:
        return f"{sandbox.pod_uid}-{name}-{attempt}"

    def cgroup_of(self, sandbox: Sandbox, container_id: str) -> str:
        return f"{self.cgroup_parent}/pod{sandbox.pod_uid}/{container_id}"

    async def start(self, sandbox: Sandbox, config: ContainerConfig, attempt: int) -> Container:
        pulled = self._pulled.get(config.image)
        if pulled is None:
            await self.prepare_image(config.image, "IfNotPresent")
            pulled = self._pulled[config.image]
        container_id = self.container_id(sandbox, config.name, attempt)
        log_path = sandbox.pod_dir / "logs" / config.name / f"{attempt}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        bundle = sandbox.pod_dir / "containers" / f"{config.name}-{attempt}"
        cgroup = self.cgroup_of(sandbox, container_id)
        existing = await self._state(container_id)
        if existing is not None and existing.get("status") == "running":
            # Left running by an agent that restarted: watch it, no longer our child.
            adopted = Container(
                container_id,
                config.name,
                attempt,
                log_path,
                existing["pid"],
                time.time(),
                bundle,
                adopted=True,
            )
            self._watch(adopted, cgroup, own_child=False)
            return adopted
        if existing is not None:
            await self._delete(container_id)
        await asyncio.to_thread(self._make_bundle, bundle, pulled, config, sandbox, cgroup)
        pid_file = bundle / "pid"
        runc_log = bundle / "runc.log"
        # The container inherits runc's stdio, so both go to the log file (a pipe would stay
        # open for the container's life); runc's own errors go to `--log`.
        with open(log_path, "ab") as log_file, open(os.devnull, "rb") as stdin:
            process = await asyncio.create_subprocess_exec(
                self.runc,
                "--root",
                str(self.runc_root),
                "--log",
                str(runc_log),
                "--log-format",
                "json",
                "run",
                "--detach",
                "--pid-file",
                str(pid_file),
                "--bundle",
                str(bundle),
                container_id,
                stdin=stdin,
                stdout=log_file,
                stderr=log_file,
            )
            await process.wait()
        if process.returncode != 0:
            message = _last_error(runc_log)
            await asyncio.to_thread(self._remove_bundle, bundle)
            raise RuntimeError(f"runc run {container_id}: {message}")
        pid = int(pid_file.read_text())
        container = Container(
            container_id, config.name, attempt, log_path, pid, time.time(), bundle
        )
        self._watch(container, cgroup, own_child=True)
        return container

    def _make_bundle(
        self,
        bundle: Path,
        pulled: PulledImage,
        config: ContainerConfig,
        sandbox: Sandbox,
        cgroup: str,
    ) -> None:
        self._remove_bundle(bundle)
        for part in ("rootfs", "upper", "work"):
            (bundle / part).mkdir(parents=True, exist_ok=True)
        mount_overlay(bundle / "rootfs", list(pulled.layers), bundle / "upper", bundle / "work")
        network = netns.path_of(sandbox.netns) if sandbox.netns else ""
        spec = ocispec.build(config, netns_path=network, cgroups_path=cgroup)
        (bundle / "config.json").write_bytes(orjson.dumps(spec))

    @staticmethod
    def _remove_bundle(bundle: Path) -> None:
        if bundle.exists():
            unmount(bundle / "rootfs")
            shutil.rmtree(bundle, ignore_errors=True)

    def _watch(self, container: Container, cgroup: str, *, own_child: bool) -> None:
        """Resolve `container.exited` when its process ends (a pidfd becomes readable)."""
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(container.pid)
        except ProcessLookupError:
            container.exited.set_result(Exit(UNKNOWN_EXIT, finished_at=time.time()))
            return

        def on_exit() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            code, signum = UNKNOWN_EXIT, None
            if own_child:
                with contextlib.suppress(ChildProcessError):
                    _, status = os.waitpid(container.pid, os.WNOHANG)
                    if os.WIFSIGNALED(status):
                        signum = os.WTERMSIG(status)
                        code = 128 + signum
                    else:
                        code = os.waitstatus_to_exitcode(status)
            oom = bool(cgroup) and oom_killed(cgroup)
            if not container.exited.done():
                container.exited.set_result(Exit(code, signum, oom, time.time()))

        loop.add_reader(pidfd, on_exit)

    async def signal(self, container: Container, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(container.pid, signum)

    async def remove(self, container: Container) -> None:
        if not container.exited.done():
            await self.signal(container, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(container.exited), 5)
        await self._delete(container.id)
        if container.bundle is not None:
            await asyncio.to_thread(self._remove_bundle, container.bundle)

    async def _run_runc(self, *args: str) -> tuple[int, bytes, bytes]:
        process = await asyncio.create_subprocess_exec(
            self.runc,
            "--root",
            str(self.runc_root),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        return process.returncode or 0, out, err

    async def _state(self, container_id: str) -> dict[str, Any] | None:
        if not (self.runc_root / container_id).exists():
            return None  # runc keeps each container's state in <root>/<id>: no need to ask
        code, out, _ = await self._run_runc("state", container_id)
        if code != 0:
            return None
        state: dict[str, Any] = orjson.loads(out)
        return state

    async def _delete(self, container_id: str) -> None:
        await self._run_runc("delete", "--force", container_id)

    def exec_argv(self, container: Container, argv: list[str], tty: bool) -> list[str]:
        # With --tty (and no --detach) runc gives the process a terminal inside the container
        # and relays it to its own stdio, which the agent makes a pseudo-terminal; without it
        # the process would see pipes and `sh` would not be interactive.
        terminal = ["--tty"] if tty else []
        return [self.runc, "--root", str(self.runc_root), "exec", *terminal, container.id, *argv]

    async def exec(self, container: Container, argv: list[str], timeout: float) -> ExecResult:
        process = await asyncio.create_subprocess_exec(
            *self.exec_argv(container, argv, False),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return ExecResult(-1, b"", b"timed out")
        return ExecResult(process.returncode or 0, out, err)

    async def cleanup_all(self) -> None:
        """Delete every runc container, unmount every rootfs, remove every pod's netns.

        Only this runtime's: its runc root's containers and the pods under its pod
        directory (a pod's directory is made before its netns and removed after it, so a
        crash leaves no netns without one). Another cloud on the same machine keeps its own."""
        code, out, _ = await self._run_runc("list", "--format", "json")
        if code == 0 and out.strip() not in (b"", b"null"):
            for state in orjson.loads(out):
                await self._delete(state["id"])
        for pod_dir in list(self.pods_root.iterdir()) if self.pods_root.exists() else []:
            await self.remove_sandbox(pod_dir.name)
        remove_cgroups(self.cgroup_parent)


def remove_cgroups(parent: str, *, only_if_empty: bool = False) -> None:
    """Remove the (empty) cgroup v1 directories under `parent` in every hierarchy; with
    `only_if_empty`, `parent` itself only if it has no children left (another node's)."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / parent.lstrip("/")
        if not top.is_dir():
            continue
        if only_if_empty:
            with contextlib.suppress(OSError):
                top.rmdir()
            continue
        for directory in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
