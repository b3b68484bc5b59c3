"""A pod's API credentials end to end in-process: the root CA publisher, the API server's
ServiceAccount admission and TokenRequest, and the node agent (fake runtime) filling the
pod's `kube-api-access-*` volume — a token that authenticates as the pod's ServiceAccount,
the CA, the namespace — and telling its containers where the API server is. A token that
cannot be had is a FailedMount the agent retries; a due token is renewed in place."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import eventually, running
from tests.integration.test_agent_worker import NODE, free_port, pod, status_of
from unistack.agent.fake import FakeRuntime
from unistack.agent.main import Agent, AgentSettings
from unistack.apiserver.serviceaccount_admission import MOUNT_PATH
from unistack.client.api import Client
from unistack.client.resources import EVENTS, NAMESPACES, PODS, SERVICEACCOUNTS, SERVICES
from unistack.client.transport import AsgiTransport
from unistack.kube.serviceaccounts import RootCAPublisher

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)
CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


@pytest.fixture
async def agent(client: Client, tmp_path: Path) -> AsyncIterator[Agent]:
    settings = AgentSettings(
        root=tmp_path / "agent", node_name=NODE, runtime="fake", address="127.0.0.1",
        port=free_port(), token="t", backoff_base=0.05,
    )  # fmt: skip
    running_agent = Agent(client, settings, FakeRuntime(settings.root, settings.pod_cidr))
    async with running(running_agent, RootCAPublisher(client, CA)):
        yield running_agent
    await running_agent.stop()


def access_volume(agent: Agent, name: str, namespace: str = "default") -> Path:
    worker = agent.workers[agent.by_name[(namespace, name)]]
    [volume] = [v["name"] for v in worker.pod["spec"]["volumes"] if "projected" in v]
    assert worker.sandbox is not None
    return worker.sandbox.pod_dir / "volumes" / "projected" / volume


async def is_running(client: Client, name: str, namespace: str = "default") -> bool:
    found = await client.get(PODS, name, namespace)
    return (found.get("status") or {}).get("phase") == "Running"


async def who(client: Client, token: str) -> str:
    """The user the API server takes `token` for (a SelfSubjectReview made with it)."""
    server = client.transport.app  # type: ignore[attr-defined]
    as_the_pod = Client(AsgiTransport(server, token=token))
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    answer = await as_the_pod.request_json(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=review
    )
    return str(answer["status"]["userInfo"]["username"])


async def test_a_pods_volume_holds_its_token_the_ca_and_its_namespace(
    client: Client, agent: Agent
) -> None:
    front = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web-front", "namespace": "default"},
        "spec": {"ports": [{"port": 80, "protocol": "TCP"}]},
    }
    front = await client.create(SERVICES, front)
    await client.create(PODS, pod("web", ["sleep"]))
    await eventually(lambda: is_running(client, "web"))
    volume = access_volume(agent, "web")
    token = (volume / "token").read_text()
    assert await who(client, token) == "system:serviceaccount:default:default"
    await eventually(lambda: _has_file(volume / "ca.crt"))
    assert (volume / "ca.crt").read_text() == CA
    assert (volume / "namespace").read_text() == "default"
    created = await client.get(PODS, "web", "default")
    mounts = created["spec"]["containers"][0]["volumeMounts"]
    assert [m["mountPath"] for m in mounts] == [MOUNT_PATH]

    [config] = agent.runtime.configs.values()  # type: ignore[attr-defined]
    env = dict(entry.split("=", 1) for entry in config.env)
    kubernetes = await client.get_path("/api/v1/namespaces/default/services/kubernetes")
    assert env["KUBERNETES_SERVICE_HOST"] == kubernetes["spec"]["clusterIP"]
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    # enableServiceLinks (the default): the namespace's Services too
    assert env["WEB_FRONT_SERVICE_HOST"] == front["spec"]["clusterIP"]
    assert env["WEB_FRONT_PORT"] == f"tcp://{front['spec']['clusterIP']}:80"
    assert any(m.destination == MOUNT_PATH and m.read_only for m in config.mounts)


async def _has_file(path: Path) -> bool:
    return path.exists()


async def test_no_token_is_a_failed_mount_until_the_service_account_exists(
    client: Client, agent: Agent
) -> None:
    """A namespace the ServiceAccount controller has not served yet: its pod is admitted
    (`default`), waits in ContainerCreating with FailedMount, and starts once it exists."""
    await client.create(NAMESPACES, {"metadata": {"name": "fresh"}})
    early = pod("early", ["sleep"])
    early["metadata"]["namespace"] = "fresh"
    await client.create(PODS, early)

    async def failed_mount() -> list[Obj]:
        listed = await client.list(EVENTS, "fresh")
        return [e for e in listed["items"] if e["reason"] == "FailedMount"]

    async def mount_failed() -> bool:
        return bool(await failed_mount())

    await eventually(mount_failed)
    message = (await failed_mount())[0]["message"]
    assert message.startswith('MountVolume.SetUp failed for volume "kube-api-access-')
    assert "failed to fetch token" in message
    status = await status_of_in(client, "early", "fresh")
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"

    account = {"metadata": {"name": "default", "namespace": "fresh"}}
    await client.create(SERVICEACCOUNTS, account)
    await eventually(lambda: is_running(client, "early", "fresh"))


async def status_of_in(client: Client, name: str, namespace: str) -> Obj:
    return dict((await client.get(PODS, name, namespace)).get("status") or {})


async def test_a_due_token_is_renewed_in_place(client: Client, agent: Agent) -> None:
    await client.create(PODS, pod("long", ["sleep"]))
    await eventually(lambda: is_running(client, "long"))
    token_file = access_volume(agent, "long") / "token"
    first = token_file.read_text()
    worker = agent.workers[agent.by_name[("default", "long")]]
    worker.tokens.clock = lambda: time.time() + 0.9 * 3607  # most of its life has passed
    worker.wake.set()

    async def renewed() -> bool:
        return token_file.read_text() != first

    await eventually(renewed)
    assert await who(client, token_file.read_text()) == "system:serviceaccount:default:default"
    assert (await status_of(client, "long"))["phase"] == "Running"  # nothing restarted
