"""One task per pod on this node: bring its containers to what the spec asks, report status.

`PodWorker.run` loops: sync, then sleep until woken (a spec change, a container exit, a probe
flip) or until the next restart back-off ends. A sync:

1. a pod being deleted: kill its containers (SIGTERM, the grace period, SIGKILL), remove the
   sandbox, and delete the pod object for good (grace 0, uid precondition), as the kubelet does;
2. otherwise make the sandbox (network namespace + CNI), renew the service-account tokens
   that are due while containers run (`podtokens`, rewritten into their volumes), then run
   init containers one by one, then start every app container that is not running and
   should be, by `restartPolicy`, honouring crash-loop back-off (doubling from
   `backoff_base` to `backoff_max`, reset after a container ran 10 minutes);
3. write the status if it changed.

A container's volumes are set up when it starts; one whose service-account token cannot be
had waits in ContainerCreating with upstream's FailedMount event, tried again after
`backoff_base`.

Probes run as tasks per container (`probes.prober`); a liveness or startup failure kills the
container, which then restarts by policy. Images are pulled before the first start: a pull
failure leaves the container waiting with ErrImagePull, then ImagePullBackOff.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from unistack.agent import containerspec, podsources, podstatus, podtokens, probes, volumes
from unistack.agent.containerspec import ConfigError
from unistack.agent.podstatus import Track
from unistack.agent.runtime import (
    Container,
    ContainerRuntime,
    Exit,
    ImageNotFound,
    Sandbox,
    host_network,
)
from unistack.client.api import ApiError, Client, NotFound
from unistack.client.resources import (
    PODS,
)
from unistack.runtime import events

log = logging.getLogger(__name__)
Obj = dict[str, Any]
EventSink = Callable[[Obj, str, str, str], None]  # (object, type, reason, message)
RESET_AFTER = 600.0
FAILED_START = (  # a start that failed so is tried again only after its back-off
    "ErrImagePull",
    "ImagePullBackOff",
    "CreateContainerConfigError",
    "RunContainerError",
    "ContainerCreating",  # a volume could not be set up
)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    node_name: str
    host_ip: str
    dns: volumes.DnsConfig | None
    backoff_base: float = 10.0
    backoff_max: float = 300.0


@dataclass(slots=True)
class Run:
    """The live state of one container slot (init or app) of the pod."""

    spec: Obj
    track: Track
    container: Container | None = None
    backoff: float = 0.0
    backoff_until: float = 0.0
    image_config: dict[str, Any] | None = None
    image_failures: int = 0
    probe_tasks: tuple[asyncio.Task[None], ...] = ()
    killing: bool = False
    was_ready: bool = False  # the API's status said so before this agent started


class PodWorker:
    def __init__(
        self,
        client: Client,
        runtime: ContainerRuntime,
        settings: WorkerSettings,
        pod: Obj,
        events: EventSink,
        *,
        on_done: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.settings = settings
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.events = events
        self.on_done = on_done
        self.wake = asyncio.Event()
        self.gone = False  # the pod object was deleted from the API
        self.sandbox: Sandbox | None = None
        self.sandbox_error = ""
        self.start_time = time.time()
        self.last_status: Obj | None = None
        self._killers: set[asyncio.Task[None]] = set()
        self.tokens = podtokens.PodTokens(functools.partial(podtokens.request_token, client))
        spec = pod.get("spec") or {}
        self.inits = [self._run_for(c, True) for c in spec.get("initContainers") or []]
        self.apps = [self._run_for(c, False) for c in spec.get("containers") or []]
        self._adopt_counts(pod.get("status") or {})

    def _run_for(self, spec: Obj, init: bool) -> Run:
        return Run(spec, Track(spec["name"], spec.get("image", ""), init=init))

    def _adopt_counts(self, status: Obj) -> None:
        """After an agent restart, continue the restart counts the API already shows."""
        known = {
            s["name"]: s
            for s in [
                *(status.get("initContainerStatuses") or []),
                *(status.get("containerStatuses") or []),
            ]
        }
        for run in [*self.inits, *self.apps]:
            previous = known.get(run.track.name)
            if previous:
                run.track.restart_count = int(previous.get("restartCount") or 0)
                run.was_ready = previous.get("ready") is True
        self.start_time = events.parse_timestamp(status.get("startTime")) or self.start_time

    # --- public -----------------------------------------------------------------------------

    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.wake.set()

    def deleted(self) -> None:
        self.gone = True
        self.wake.set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    finished = await self.sync()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("pod %s: sync failed", self.key)
                    finished = False
                if finished:
                    return
                await self._sleep()
        finally:
            if self.on_done is not None:
                self.on_done(self.uid)

    @property
    def key(self) -> str:
        meta = self.pod["metadata"]
        return f"{meta.get('namespace')}/{meta['name']}"

    async def _sleep(self) -> None:
        now = time.time()
        deadlines = [r.backoff_until for r in [*self.inits, *self.apps] if r.backoff_until > now]
        renewal = self.tokens.next_refresh() if self._containers_run() else None
        if renewal is not None:
            deadlines.append(max(renewal, now + 1.0))
        timeout = min(deadlines) - now if deadlines else 30.0
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wake.wait(), max(0.01, timeout))
        self.wake.clear()

    # --- sync -------------------------------------------------------------------------------

    async def sync(self) -> bool:
        """One pass; True when the worker is finished (the pod is gone)."""
        meta = self.pod["metadata"]
        if self.gone or meta.get("deletionTimestamp"):
            await self._terminate(self._grace())
            await self.runtime.remove_sandbox(self.uid)
            if not self.gone:
                await self._finalize_deletion()
            return True
        phase = (self.pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and self.last_status is None:
            return False  # already finished before this worker: nothing to run
        if self.sandbox is None and not await self._make_sandbox():
            await self._report()
            return False
        assert self.sandbox is not None
        await self._renew_tokens()
        if await self._run_inits():
            for run in self.apps:
                await self._converge(run)
        await self._report()
        return False

    async def _make_sandbox(self) -> bool:
        try:
            self.sandbox = await self.runtime.run_sandbox(self.pod)
            if host_network(self.pod):  # its address is the node's
                self.sandbox = dataclasses.replace(self.sandbox, ip=self.settings.host_ip)
        except Exception as error:  # CNI and netns failures are reported, then retried
            message = f"failed to create pod sandbox: {error}"
            if message != self.sandbox_error:
                self.events(self.pod, "Warning", "FailedCreatePodSandBox", message)
            self.sandbox_error = message
            for run in [*self.inits, *self.apps]:
                run.track.waiting_reason = "ContainerCreating"
            return False
        volumes.write_pod_files(self.pod, self.sandbox.pod_dir, self.sandbox.ip, self.settings.dns)
        return True

    def _containers_run(self) -> bool:
        return any(run.container is not None for run in [*self.inits, *self.apps])

    async def _renew_tokens(self) -> None:
        """Renew the due tokens of a pod whose containers run, and rewrite their files."""
        if self.sandbox is None or not self._containers_run() or not self.tokens.due():
            return
        try:
            tokens = await self.tokens.current(self.pod)
        except podtokens.TokenUnavailable as error:
            self.events(self.pod, "Warning", "FailedMount", str(error))
            return
        await asyncio.to_thread(volumes.write_tokens, self.pod, self.sandbox.pod_dir, tokens)

    async def _run_inits(self) -> bool:
        """True when every init container has succeeded."""
        for run in self.inits:
            track = run.track
            if track.exit is not None and track.exit.exit_code == 0 and not track.running:
                continue
            await self._converge(run)
            return False
        return True

    def _should_restart(self, run: Run, end: Exit) -> bool:
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        if run.track.init:
            return end.exit_code != 0 and policy != "Never"
        if policy == "Always":
            return True
        return policy == "OnFailure" and end.exit_code != 0

    async def _converge(self, run: Run) -> None:
        track = run.track
        if run.container is not None and not run.container.exited.done():
            return
        if run.container is not None:
            await self._record_exit(run)
        if track.exit is not None:
            track.will_restart = self._should_restart(run, track.exit)
            if not track.will_restart:
                track.waiting_reason = ""
                return
            now = time.time()
            if now < run.backoff_until:
                track.waiting_reason = "CrashLoopBackOff"
                track.waiting_message = (
                    f"back-off {int(run.backoff)}s restarting failed container={track.name} "
                    f"pod={self.pod['metadata']['name']}_{self.pod['metadata'].get('namespace')}"
                    f"({self.uid})"
                )
                return
        await self._start(run)

    async def _record_exit(self, run: Run) -> None:
        assert run.container is not None
        container, track = run.container, run.track
        end = container.exited.result()
        for task in run.probe_tasks:
            task.cancel()
        run.probe_tasks = ()
        track.running = False
        track.ready = False
        track.exit = end
        track.waiting_reason = ""
        track.waiting_message = ""
        ran_for = end.finished_at - container.started_at
        if ran_for >= RESET_AFTER:
            run.backoff = 0.0
        # As the kubelet: the first restart is immediate, then 1, 2, 4... times the base.
        run.backoff_until = end.finished_at + run.backoff
        run.backoff = (
            self.settings.backoff_base
            if run.backoff == 0
            else min(run.backoff * 2, self.settings.backoff_max)
        )
        if end.oom_killed:
            self.events(self.pod, "Warning", "OOMKilling", f"Container {track.name} was OOM-killed")
        run.container = None
        with contextlib.suppress(Exception):
            await self.runtime.remove(container)

    async def _start(self, run: Run) -> None:
        assert self.sandbox is not None
        track = run.track
        image = run.spec.get("image", "")
        if time.time() < run.backoff_until and track.waiting_reason in FAILED_START:
            if track.waiting_reason == "ErrImagePull":
                track.waiting_reason = "ImagePullBackOff"
            return
        if run.image_config is None:
            try:
                policy = run.spec.get("imagePullPolicy", "IfNotPresent")
                run.image_config = await self.runtime.prepare_image(image, policy)
            except ImageNotFound as error:
                run.image_failures += 1
                track.waiting_reason = (
                    "ErrImagePull" if run.image_failures == 1 else "ImagePullBackOff"
                )
                track.waiting_message = error.message
                run.backoff = min(
                    max(run.backoff * 2, self.settings.backoff_base), self.settings.backoff_max
                )
                run.backoff_until = time.time() + run.backoff
                self.events(
                    self.pod,
                    "Warning",
                    "Failed",
                    f'Failed to pull image "{image}": {error.message}',
                )
                return
            track.image_id = image
            run.backoff = 0.0
            run.backoff_until = 0.0
        try:
            config = await self._container_config(run)
        except podtokens.TokenUnavailable as error:
            track.waiting_reason, track.waiting_message = "ContainerCreating", ""
            self.events(self.pod, "Warning", "FailedMount", str(error))
            run.backoff_until = time.time() + self.settings.backoff_base
            return
        except ConfigError as error:
            track.waiting_reason = "CreateContainerConfigError"
            track.waiting_message = str(error)
            self.events(self.pod, "Warning", "Failed", f"Error: {error}")
            run.backoff_until = time.time() + self.settings.backoff_base
            return
        attempt = track.restart_count + (1 if track.exit is not None else 0)
        try:
            container = await self.runtime.start(self.sandbox, config, attempt)
        except Exception as error:
            track.waiting_reason = "RunContainerError"
            track.waiting_message = str(error)
            self.events(self.pod, "Warning", "Failed", f"Error: {error}")
            run.backoff = min(
                max(run.backoff * 2, self.settings.backoff_base), self.settings.backoff_max
            )
            run.backoff_until = time.time() + run.backoff
            return
        if track.exit is not None:
            track.restart_count = attempt
            track.last_exit = track.exit
            track.last_started_at = track.started_at
            track.last_container_id = track.container_id
        track.exit = None
        track.running = True
        track.waiting_reason = ""
        track.waiting_message = ""
        track.started_at = container.started_at
        track.container_id = f"{self.runtime.name}://{container.id}"
        run.container = container
        container.exited.add_done_callback(lambda _: self.wake.set())
        self._start_probes(run)
        self.events(self.pod, "Normal", "Started", f"Started container {track.name}")

    async def _container_config(self, run: Run) -> Any:
        assert self.sandbox is not None
        ip = self.sandbox.ip
        sources = await podsources.fetch(self.client, self.pod, ip, self.settings.host_ip)
        sources = dataclasses.replace(sources, tokens=await self.tokens.current(self.pod))
        claims = await podsources.claim_paths(self.client, self.pod)
        paths = await asyncio.to_thread(
            volumes.prepare, self.pod, self.sandbox.pod_dir, sources, claims
        )
        mounts = volumes.container_mounts(run.spec, paths, self.sandbox.pod_dir)
        return containerspec.build(self.pod, run.spec, run.image_config or {}, sources, mounts)

    # --- probes -----------------------------------------------------------------------------

    def _start_probes(self, run: Run) -> None:
        assert self.sandbox is not None and run.container is not None
        spec, track, container = run.spec, run.track, run.container
        host = self.sandbox.ip

        async def run_exec(argv: list[str], timeout: float) -> int:
            result = await self.runtime.exec(container, argv, timeout)
            return result.exit_code

        tasks: list[asyncio.Task[None]] = []
        startup = spec.get("startupProbe")
        readiness = spec.get("readinessProbe")
        liveness = spec.get("livenessProbe")
        track.started = startup is None
        track.ready = readiness is None and startup is None and not track.init
        if container.adopted and run.was_ready:
            # An agent restart changes nothing in the container: it stays ready (and
            # started) until a probe says otherwise, as it was, so its Endpoints stay put.
            track.started = track.ready = True
            startup = None

        def on_startup(ok: bool, message: str) -> None:
            if ok:
                track.started = True
                startup_task.cancel()
                if readiness is None:
                    track.ready = True
                self._begin(run, readiness, liveness, run_exec, tasks)
            else:
                self._unhealthy(run, "Startup", message)
            self.wake.set()

        if startup is not None:
            startup_task = asyncio.ensure_future(
                probes.prober(startup, host, spec, run_exec, on_startup, initial=False)
            )
            tasks.append(startup_task)
            run.probe_tasks = tuple(tasks)
        else:
            self._begin(run, readiness, liveness, run_exec, tasks)

    def _begin(
        self,
        run: Run,
        readiness: Obj | None,
        liveness: Obj | None,
        run_exec: Callable[[list[str], float], Awaitable[int]],
        tasks: list[asyncio.Task[None]],
    ) -> None:
        """Start the readiness and liveness probers (after the startup probe, if any)."""
        assert self.sandbox is not None
        track, host = run.track, self.sandbox.ip

        def on_ready(ok: bool, message: str) -> None:
            track.ready = ok
            if not ok:
                self.events(self.pod, "Warning", "Unhealthy", f"Readiness probe failed: {message}")
            self.wake.set()

        def on_live(ok: bool, message: str) -> None:
            if not ok:
                self._unhealthy(run, "Liveness", message)

        if readiness is not None:
            tasks.append(
                asyncio.ensure_future(
                    probes.prober(
                        readiness, host, run.spec, run_exec, on_ready, initial=track.ready
                    )
                )
            )
        if liveness is not None:
            tasks.append(
                asyncio.ensure_future(
                    probes.prober(liveness, host, run.spec, run_exec, on_live, initial=True)
                )
            )
        run.probe_tasks = tuple(tasks)

    def _unhealthy(self, run: Run, probe: str, message: str) -> None:
        name = run.track.name
        self.events(self.pod, "Warning", "Unhealthy", f"{probe} probe failed: {message}")
        if run.container is None or run.killing:
            return
        self.events(
            self.pod,
            "Normal",
            "Killing",
            f"Container {name} failed {probe.lower()} probe, will be restarted",
        )
        run.killing = True
        container = run.container

        async def kill() -> None:
            try:
                await self._stop(container, self._termination_grace())
            finally:
                run.killing = False

        self._killers.add(asyncio.ensure_future(kill()))
        self._killers = {task for task in self._killers if not task.done()}

    # --- termination ------------------------------------------------------------------------

    def _termination_grace(self) -> float:
        return float((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))

    def _grace(self) -> float:
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        return float(grace) if grace is not None else self._termination_grace()

    async def _stop(self, container: Container, grace: float) -> None:
        """SIGTERM, wait up to `grace`, then SIGKILL (PID 1 of a pid namespace ignores SIGTERM
        unless it installed a handler, so the SIGKILL is often what ends it)."""
        if container.exited.done():
            return
        await self.runtime.signal(container, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(container.exited), grace)
        except TimeoutError:
            await self.runtime.signal(container, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(container.exited), 10)

    async def _terminate(self, grace: float) -> None:
        runs = [r for r in [*self.inits, *self.apps] if r.container is not None]
        for run in runs:
            for task in run.probe_tasks:
                task.cancel()
            if run.container is not None and not run.container.exited.done():
                self.events(self.pod, "Normal", "Killing", f"Stopping container {run.track.name}")
        await asyncio.gather(*(self._stop(r.container, grace) for r in runs if r.container))
        for run in runs:
            if run.container is not None:
                with contextlib.suppress(Exception):
                    await self.runtime.remove(run.container)
                run.container = None

    async def _finalize_deletion(self) -> None:
        meta = self.pod["metadata"]
        try:
            await self.client.delete(
                PODS,
                meta["name"],
                meta.get("namespace"),
                grace_period=0,
                preconditions={"uid": self.uid},
            )
        except (NotFound, ApiError) as error:
            if not isinstance(error, NotFound):
                log.warning("pod %s: final delete: %s", self.key, error)

    # --- status -----------------------------------------------------------------------------

    async def _report(self) -> None:
        status = podstatus.build(
            self.pod,
            [r.track for r in self.inits],
            [r.track for r in self.apps],
            sandbox_ready=self.sandbox is not None,
            pod_ip=self.sandbox.ip if self.sandbox else "",
            host_ip=self.settings.host_ip,
            now=time.time(),
            start_time=self.start_time,
        )
        if self.last_status is not None and podstatus.same(self.last_status, status):
            return
        meta = self.pod["metadata"]
        try:
            await self.client.patch(
                PODS,
                meta["name"],
                {"status": status},
                namespace=meta.get("namespace"),
                subresource="status",
            )
        except NotFound:
            self.gone = True
            self.wake.set()
            return
        except ApiError as error:
            log.warning("pod %s: status update: %s", self.key, error)
            return
        self.last_status = status
