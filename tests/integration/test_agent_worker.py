"""The node agent's pod workers against the real in-process API, on the fake runtime.

The fake runtime stands in for runc only; what is checked is the agent's own logic: Node
registration, the status it reports, restart policies with back-off, image failures and
graceful deletion ending in the pod's final removal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from unistack.agent.fake import FakeRuntime
from unistack.agent.main import Agent, AgentSettings
from unistack.client.api import Client, NotFound
from unistack.client.resources import LEASES, NODES, PODS

NODE = "worker-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def agent(client: Client, tmp_path: Path) -> AsyncIterator[Agent]:
    settings = AgentSettings(
        root=tmp_path / "agent",
        node_name=NODE,
        runtime="fake",
        address="127.0.0.1",
        port=free_port(),
        token="t",
        backoff_base=0.05,
    )
    runtime = FakeRuntime(settings.root, settings.pod_cidr, missing_images=frozenset({"ghost"}))
    running_agent = Agent(client, settings, runtime)
    async with running(running_agent):
        yield running_agent
    await running_agent.stop()


def pod(name: str, command: list[str], restart: str = "Always", image: str = "busybox") -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": image, "command": command}],
        },
    }


async def status_of(client: Client, name: str) -> dict[str, Any]:
    found = await client.get(PODS, name, "default")
    return dict(found.get("status") or {})


async def test_the_node_is_registered_with_capacity_and_a_lease(
    client: Client, agent: Agent
) -> None:
    async def registered() -> bool:
        with contextlib.suppress(NotFound):
            node = await client.get(NODES, NODE)
            return "cpu" in (node.get("status") or {}).get("capacity", {})
        return False

    await eventually(registered)
    node = await client.get(NODES, NODE)
    assert node["metadata"]["labels"]["unistack.io/runtime"] == "fake"
    assert node["spec"]["podCIDR"] == "10.244.0.0/24"
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == agent.settings.port
    await eventually(lambda: _exists(client, LEASES, NODE, "kube-node-lease"))


async def _exists(client: Client, ref: Any, name: str, namespace: str | None = None) -> bool:
    try:
        await client.get(ref, name, namespace)
    except NotFound:
        return False
    return True


async def test_a_pod_that_exits_0_with_restart_never_succeeds(client: Client, agent: Agent) -> None:
    await client.create(PODS, pod("done", ["fake-exit", "0"], restart="Never"))

    async def succeeded() -> bool:
        return (await status_of(client, "done")).get("phase") == "Succeeded"

    await eventually(succeeded)
    status = await status_of(client, "done")
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert status["podIP"].startswith("10.244.0.")
    assert status["hostIP"] == "127.0.0.1"


async def test_a_failing_container_restarts_with_back_off(client: Client, agent: Agent) -> None:
    await client.create(PODS, pod("crash", ["fake-exit", "1"], restart="OnFailure"))

    async def restarted_twice() -> bool:
        statuses = (await status_of(client, "crash")).get("containerStatuses") or []
        return bool(statuses) and statuses[0]["restartCount"] >= 2

    await eventually(restarted_twice)
    status = await status_of(client, "crash")
    container = status["containerStatuses"][0]
    assert container["lastState"]["terminated"]["exitCode"] == 1
    assert container["lastState"]["terminated"]["reason"] == "Error"
    assert status["phase"] == "Running"  # it will be restarted: not Failed


async def test_a_missing_image_is_reported_then_backed_off(client: Client, agent: Agent) -> None:
    await client.create(PODS, pod("ghost", ["sleep"], image="ghost"))

    async def reason() -> str:
        statuses = (await status_of(client, "ghost")).get("containerStatuses") or []
        return str(statuses[0]["state"].get("waiting", {}).get("reason")) if statuses else ""

    async def pull_failed() -> bool:
        return await reason() in ("ErrImagePull", "ImagePullBackOff")

    await eventually(pull_failed)
    waiting = (await status_of(client, "ghost"))["containerStatuses"][0]["state"]["waiting"]
    assert "ghost" in waiting["message"]
    assert (await status_of(client, "ghost"))["phase"] == "Pending"


async def test_deleting_a_running_pod_stops_it_then_removes_it(
    client: Client, agent: Agent
) -> None:
    await client.create(PODS, pod("web", ["sleep"]))

    async def ready() -> bool:
        conditions = (await status_of(client, "web")).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    await eventually(ready)
    await client.delete(PODS, "web", "default")
    assert await _exists(client, PODS, "web", "default"), "graceful: kept until the agent is done"

    async def gone() -> bool:
        return not await _exists(client, PODS, "web", "default")

    await eventually(gone)
    assert not agent.workers


class AdoptingRuntime(FakeRuntime):
    """runc after an agent restart, for the worker: every container is found running
    (`adopted`), and the readiness command exits with `probe_exit`."""

    probe_exit = 0

    async def start(self, sandbox: Any, config: Any, attempt: int) -> Any:
        container = await super().start(sandbox, config, attempt)
        container.adopted = True
        return container

    async def exec(self, container: Any, argv: list[str], timeout: float) -> Any:
        result = await super().exec(container, argv, timeout)
        return dataclasses.replace(result, exit_code=self.probe_exit)


@pytest.mark.parametrize("was_ready", [True, False])
async def test_an_adopted_container_keeps_the_readiness_it_had(
    client: Client, tmp_path: Path, was_ready: bool
) -> None:
    """An agent restart changes nothing in a running container: what was ready stays ready
    (its Endpoints do not drop it) until its probe fails; what was not ready stays not."""
    probed = pod("api", ["serve"])
    probe = {"exec": {"command": ["check"]}, "periodSeconds": 1, "failureThreshold": 2}
    probed["spec"]["containers"][0]["readinessProbe"] = probe
    await client.create(PODS, probed)
    before = {"name": "c", "ready": was_ready, "restartCount": 0, "image": "busybox"}
    status = {"phase": "Running", "containerStatuses": [before]}
    await client.patch(PODS, "api", {"status": status}, namespace="default", subresource="status")
    settings = AgentSettings(
        root=tmp_path / "agent", node_name=NODE, runtime="fake", address="127.0.0.1",
        port=free_port(), token="t", backoff_base=0.05,
    )  # fmt: skip
    runtime = AdoptingRuntime(settings.root, settings.pod_cidr)
    runtime.probe_exit = 1  # the probe fails from now on
    restarted = Agent(client, settings, runtime)
    seen: list[bool] = []

    async def reported() -> bool:
        statuses = (await status_of(client, "api")).get("containerStatuses") or [{}]
        if "running" not in (statuses[0].get("state") or {}):
            return False
        seen.append(statuses[0]["ready"])
        return True

    async with running(restarted):
        await eventually(reported)
        assert seen[0] is was_ready  # as it was, not reset by the restart

        async def not_ready() -> bool:
            statuses = (await status_of(client, "api")).get("containerStatuses") or [{}]
            return statuses[0].get("ready") is False

        await eventually(not_ready, timeout=10)  # and the failing probe still takes it out
    await restarted.stop()


async def test_a_pod_on_the_hosts_network_has_the_nodes_address(
    client: Client, agent: Agent
) -> None:
    on_host = pod("on-host", ["sleep", "60"])
    on_host["spec"]["hostNetwork"] = True
    await client.create(PODS, on_host, "default")
    await client.create(PODS, pod("beside", ["sleep", "60"]), "default")

    async def running_both() -> bool:
        statuses = [await status_of(client, name) for name in ("on-host", "beside")]
        return all(s.get("phase") == "Running" for s in statuses)

    await eventually(running_both)
    status = await status_of(client, "on-host")
    assert status["podIP"] == status["hostIP"] == "127.0.0.1"
    assert (await status_of(client, "beside"))["podIP"] != "127.0.0.1"  # a namespace's own
