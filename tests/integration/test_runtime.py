"""The client, the controller runtime and the first controllers against the real API server.

Everything goes through `AsgiTransport(ApiServer(SqliteStore(...)))`: the real HTTP semantics,
in-process. Covers watch streaming, informer sync and relist (after 410 Gone and after a broken
stream), leader election handover, and the garbage collector and namespace controller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from unistack.apiserver.app import ApiServer
from unistack.client import resources
from unistack.client.api import Client, Gone, NotFound
from unistack.client.resources import CONFIGMAPS, LEASES, NAMESPACES, ResourceRef
from unistack.client.transport import AsgiTransport, Params, StreamResponse, TransportError
from unistack.kube.garbagecollector import GarbageCollector
from unistack.kube.main import run_elected
from unistack.kube.namespace import NamespaceController
from unistack.runtime.controller import Controller, enqueue_owners
from unistack.runtime.informer import Informer, SharedInformers
from unistack.runtime.leader import LeaderElector, stand_by, stand_in
from unistack.runtime.workqueue import WorkQueue
from unistack.store import SqliteStore

Obj = dict[str, Any]
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ApiServer]:
    store = SqliteStore(str(tmp_path / "store.db"))
    app = ApiServer(store)
    yield app
    app.stop()
    store.close()


@pytest.fixture
def client(server: ApiServer) -> Client:
    return Client(AsgiTransport(server))


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 10) -> None:
    """Poll until `check` is true."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if isinstance(result, Awaitable):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(coroutine: Awaitable[Any]) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.ensure_future(coroutine)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def configmap(name: str, namespace: str = "default", **meta: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "data": {"k": name},
    }


def owned_by(owner: Obj, *, block: bool = False) -> list[Obj]:
    return [
        {
            "apiVersion": owner.get("apiVersion", "v1"),
            "kind": owner.get("kind", "ConfigMap"),
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": block,
        }
    ]


async def exists(client: Client, ref: ResourceRef, name: str, namespace: str | None) -> bool:
    try:
        await client.get(ref, name, namespace)
    except NotFound:
        return False
    return True


async def gone(client: Client, ref: ResourceRef, name: str, namespace: str | None) -> bool:
    return not await exists(client, ref, name, namespace)


# -- client -------------------------------------------------------------------------------------


async def test_watch_streams_changes_after_a_resource_version(client: Client) -> None:
    await client.create(CONFIGMAPS, configmap("a"))
    listing = await client.list(CONFIGMAPS, "default")
    events = client.watch(
        CONFIGMAPS, "default", resource_version=listing["metadata"]["resourceVersion"]
    )
    seen: list[tuple[str, str]] = []
    async with contextlib.aclosing(events):
        await client.patch(CONFIGMAPS, "a", {"data": {"k": "2"}}, namespace="default")
        await client.delete(CONFIGMAPS, "a", "default")
        async for event in events:
            if event.type != "BOOKMARK":
                seen.append((event.type, event.object["metadata"]["name"]))
            if len(seen) == 2:
                break
    assert seen == [("MODIFIED", "a"), ("DELETED", "a")]


async def test_discovery_resolves_built_in_kinds(client: Client) -> None:
    assert await resources.resolve(client, "apps/v1", "Deployment") == resources.DEPLOYMENTS
    found = {r.ref for r in await resources.discover(client)}
    assert {CONFIGMAPS, NAMESPACES, LEASES, resources.REPLICASETS} <= found


# -- informers ----------------------------------------------------------------------------------


async def test_informer_lists_then_follows_the_watch(client: Client) -> None:
    await client.create(CONFIGMAPS, configmap("a"))
    await client.create(CONFIGMAPS, configmap("b"))
    informer = Informer(client, CONFIGMAPS, "default")
    seen: list[tuple[str, str]] = []
    informer.add_handlers(
        on_add=lambda o: seen.append(("add", o["metadata"]["name"])),
        on_update=lambda old, new: seen.append(("update", new["metadata"]["name"])),
        on_delete=lambda o: seen.append(("delete", o["metadata"]["name"])),
    )
    async with running(informer.run()):
        await informer.wait_synced(5)
        assert sorted(o["metadata"]["name"] for o in informer.cache.list()) == ["a", "b"]
        await client.create(CONFIGMAPS, configmap("c"))
        await client.patch(CONFIGMAPS, "a", {"data": {"k": "changed"}}, namespace="default")
        await client.delete(CONFIGMAPS, "b", "default")
        await eventually(lambda: len(seen) == 5)
        assert informer.cache.get("default/a")["data"] == {"k": "changed"}  # type: ignore[index]
        assert informer.cache.get("default/b") is None
        assert informer.cache.get("default/c") is not None
        assert informer.last_resource_version
    assert seen[2:] == [("add", "c"), ("update", "a"), ("delete", "b")]


async def test_shared_informers_give_every_reader_one_watch_with_its_indexes(
    server: ApiServer,
) -> None:
    transport = RewindingTransport(server)
    transport.rewound = True  # only count the lists
    shared = SharedInformers(Client(transport))
    first = shared.informer(CONFIGMAPS, indexers={"by-name": lambda o: [o["metadata"]["name"]]})
    second = shared.informer(CONFIGMAPS, indexers={"by-ns": lambda o: [o["metadata"]["namespace"]]})
    assert first is second
    await Client(transport).create(CONFIGMAPS, configmap("a"))
    first.start()
    second.start()
    await first.wait_synced(5)
    late: list[str] = []  # a handler added after the sync sees what is cached already
    second.add_handlers(on_add=lambda o: late.append(o["metadata"]["name"]))
    assert late == ["a"]
    assert [o["metadata"]["name"] for o in first.cache.by_index("by-ns", "default")] == ["a"]
    assert transport.lists == 1
    await first.stop()
    await Client(transport).create(CONFIGMAPS, configmap("b"))
    await eventually(lambda: late == ["a", "b"])  # still running for the second reader
    await second.stop()
    await Client(transport).create(CONFIGMAPS, configmap("c"))
    await asyncio.sleep(0.2)
    assert late == ["a", "b"]  # stopped with its last reader


class RewindingTransport(AsgiTransport):
    """Its first watch asks for revision 1, which compaction has removed: the server says 410."""

    def __init__(self, app: ApiServer) -> None:
        super().__init__(app)
        self.lists = 0
        self.rewound = False

    def stream(
        self, method: str, path: str, *, params: Params | None = None, headers: Any = None
    ) -> contextlib.AbstractAsyncContextManager[StreamResponse]:
        if params and params.get("watch") and not self.rewound:
            self.rewound = True
            params = {**params, "resourceVersion": "1"}
        return super().stream(method, path, params=params, headers=headers)

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if method == "GET" and path.endswith("/configmaps"):
            self.lists += 1
        return await super().request(method, path, **kwargs)


async def test_informer_relists_when_its_resource_version_is_gone(server: ApiServer) -> None:
    transport = RewindingTransport(server)
    client = Client(transport)
    for name in "abc":
        await client.create(CONFIGMAPS, configmap(name))
    await server.store.compact(server.store.revision)
    with pytest.raises(Gone):
        async for _ in client.watch(CONFIGMAPS, resource_version="1"):
            pass
    transport.rewound = False
    informer = Informer(client, CONFIGMAPS, "default")
    async with running(informer.run()):
        await informer.wait_synced(5)
        await eventually(lambda: transport.lists == 2)  # listed, got 410 watching, listed again
        await client.create(CONFIGMAPS, configmap("d"))
        await eventually(lambda: informer.cache.get("default/d") is not None)
    assert len(informer.cache) == 4


class BreakingTransport(AsgiTransport):
    """Its first watch stream breaks after the first line."""

    def __init__(self, app: ApiServer) -> None:
        super().__init__(app)
        self.broken = False

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, path: str, *, params: Params | None = None, headers: Any = None
    ) -> AsyncIterator[StreamResponse]:
        async with super().stream(method, path, params=params, headers=headers) as response:
            if self.broken:
                yield response
                return
            self.broken = True
            yield StreamResponse(response.status, response.headers, self._break(response))

    async def _break(self, response: StreamResponse) -> AsyncIterator[bytes]:
        async for line in response:
            yield line + b"\n"
            raise TransportError("connection reset")


async def test_informer_relists_after_a_broken_stream(server: ApiServer) -> None:
    client = Client(BreakingTransport(server))
    informer = Informer(client, CONFIGMAPS, "default", backoff_initial=0.01)
    deleted: list[str] = []
    informer.add_handlers(on_delete=lambda o: deleted.append(o["metadata"]["name"]))
    await client.create(CONFIGMAPS, configmap("a"))
    async with running(informer.run()):
        await informer.wait_synced(5)
        await client.create(CONFIGMAPS, configmap("b"))  # delivered, then the stream breaks
        await client.delete(CONFIGMAPS, "a", "default")  # seen by the relist
        await client.create(CONFIGMAPS, configmap("c"))
        await eventually(lambda: sorted(informer.cache.keys()) == ["default/b", "default/c"])
    assert deleted == ["a"]


async def test_controller_reconciles_owner_keys_and_retries_failures(client: Client) -> None:
    informer = Informer(client, CONFIGMAPS, "default")
    queue = WorkQueue("test")
    enqueue_owners(informer, queue, resources.DEPLOYMENTS)
    calls: list[str] = []

    async def reconcile(key: str) -> None:
        calls.append(key)
        if calls.count(key) == 1:
            raise RuntimeError("first attempt fails")

    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "uid": "u1"},
    }
    await client.create(CONFIGMAPS, configmap("not-owned"))
    await client.create(CONFIGMAPS, configmap("owned", ownerReferences=owned_by(deployment)))
    async with running(informer.run()), running(Controller("test", queue, reconcile).run()):
        await eventually(lambda: calls == ["default/web", "default/web"])
        assert queue.retries("default/web") == 0  # forgotten after the success


# -- leader election ----------------------------------------------------------------------------


def elector(client: Client, identity: str) -> LeaderElector:
    return LeaderElector(
        client,
        "kube-system",
        "test-lock",
        identity,
        lease_duration=1,
        renew_deadline=0.6,
        retry_period=0.05,
    )


async def lead(flag: asyncio.Event) -> None:
    flag.set()
    await asyncio.Event().wait()


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_leadership_passes_on_when_the_leader_releases(client: Client) -> None:
    a, b = elector(client, "a"), elector(client, "b")
    a_leads, b_leads = asyncio.Event(), asyncio.Event()
    a_task = asyncio.create_task(a.run(lambda: lead(a_leads)))
    await asyncio.wait_for(a_leads.wait(), 5)
    b_task = asyncio.create_task(b.run(lambda: lead(b_leads)))
    await asyncio.sleep(0.3)
    assert a.is_leader and not b_leads.is_set()
    await stop(a_task)
    await asyncio.wait_for(b_leads.wait(), 0.5)  # released: no lease duration to wait out
    lease = await client.get(LEASES, "test-lock", "kube-system")
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    await stop(b_task)
    lease = await client.get(LEASES, "test-lock", "kube-system")
    assert not lease["spec"].get("holderIdentity")


class Partition(AsgiTransport):
    """A transport that can be cut off from the server."""

    cut = False

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self.cut:
            raise TransportError("network unreachable")
        return await super().request(method, path, **kwargs)


async def test_a_partitioned_leader_steps_down_and_another_takes_over(server: ApiServer) -> None:
    partition = Partition(server)
    a = elector(Client(partition), "a")
    b = elector(Client(AsgiTransport(server)), "b")
    a_leads, b_leads, a_stopped = asyncio.Event(), asyncio.Event(), asyncio.Event()
    async with running(a.run(lambda: lead(a_leads), a_stopped.set)) as a_task:
        await asyncio.wait_for(a_leads.wait(), 5)
        async with running(b.run(lambda: lead(b_leads))):
            await asyncio.sleep(0.2)
            assert not b_leads.is_set()
            partition.cut = True
            await asyncio.wait_for(a_stopped.wait(), 2)  # could not renew within the deadline
            await asyncio.wait_for(b_leads.wait(), 3)  # took over once the lease expired
            assert a_task.done() and not a.is_leader


async def test_a_holder_known_to_be_gone_is_not_waited_for(server: ApiServer) -> None:
    """A leader killed without releasing (its pod force-deleted): a candidate that is told its
    holder is gone takes the lease at once, not after the lease's duration; one that is not
    told waits."""
    partition = Partition(server)

    async def gone(identity: str) -> bool:
        return identity == "a"

    def slow(client: Client, identity: str, **options: Any) -> LeaderElector:
        return LeaderElector(
            client, "kube-system", "gone-lock", identity,
            lease_duration=30, renew_deadline=20, retry_period=0.05, **options,
        )  # fmt: skip

    a = slow(Client(partition), "a")
    a_leads, b_leads, c_leads = asyncio.Event(), asyncio.Event(), asyncio.Event()
    async with running(a.run(lambda: lead(a_leads))):
        await asyncio.wait_for(a_leads.wait(), 5)
        partition.cut = True  # it can neither renew nor release: as if killed
        b = slow(Client(AsgiTransport(server)), "b")
        c = slow(Client(AsgiTransport(server)), "c", holder_gone=gone)
        async with running(b.run(lambda: lead(b_leads))), running(c.run(lambda: lead(c_leads))):
            await asyncio.wait_for(c_leads.wait(), 2)  # far less than 30 s
            await asyncio.sleep(0.2)
            assert not b_leads.is_set()


async def leading_while(flag: asyncio.Event) -> None:
    flag.set()
    try:
        await asyncio.Event().wait()
    finally:
        flag.clear()


async def test_a_bootstrap_stands_in_until_its_successors_are_ready(client: Client) -> None:
    ready = False

    async def successors_ready() -> bool:
        return ready

    boot, pod = elector(client, "bootstrap"), elector(client, "pod")
    boot_leads, pod_leads = asyncio.Event(), asyncio.Event()
    standing = stand_by(boot, lambda: leading_while(boot_leads), successors_ready, period=0.05)
    async with running(standing):
        await asyncio.wait_for(boot_leads.wait(), 5)  # nobody else can: it leads
        async with running(pod.run(lambda: lead(pod_leads))) as pod_task:
            await asyncio.sleep(0.3)
            assert not pod_leads.is_set()  # the bootstrap holds the lease
            ready = True
            await asyncio.wait_for(pod_leads.wait(), 2)  # handed over, not expired
            assert not boot_leads.is_set()
            ready = False
            await stop(pod_task)  # the successor goes (and releases)
        await asyncio.wait_for(boot_leads.wait(), 2)  # stands in again
    lease = await client.get(LEASES, "test-lock", "kube-system")
    assert not lease["spec"].get("holderIdentity")  # stopped: released


async def test_a_restarted_bootstrap_gives_back_the_lease_it_held(client: Client) -> None:
    """The bootstrap restarted while leading: the lease still names it. With its successors
    ready it releases at once, rather than waiting out its own lease or leading again."""
    held = LeaderElector(client, "kube-system", "test-lock", "bootstrap", lease_duration=30)
    assert await held._attempt()  # the run before the restart

    async def successors_ready() -> bool:
        return True

    boot = elector(client, "bootstrap")
    pod, pod_leads = LeaderElector(
        client, "kube-system", "test-lock", "pod", lease_duration=30, retry_period=0.05
    ), asyncio.Event()  # fmt: skip
    standing = stand_by(boot, lambda: lead(asyncio.Event()), successors_ready, period=0.05)
    async with running(standing), running(pod.run(lambda: lead(pod_leads))):
        await asyncio.wait_for(pod_leads.wait(), 2)  # not the 30 s of the old lease


async def test_a_bootstrap_takes_a_lease_its_ready_successors_leave_vacant(client: Client) -> None:
    async def successors_ready() -> bool:
        return True  # they say so, yet none campaigns

    boot = elector(client, "bootstrap")
    boot_leads = asyncio.Event()
    standing = stand_by(
        boot, lambda: leading_while(boot_leads), successors_ready, period=0.05, grace=0.5, hold=60
    )
    async with running(standing):
        await asyncio.sleep(0.3)
        assert not boot_leads.is_set()  # within the grace: waits for them
        await asyncio.wait_for(boot_leads.wait(), 2)
        await asyncio.sleep(0.3)
        assert boot_leads.is_set()  # held, although they say they are ready


async def test_a_bootstrap_without_a_lease_serves_while_no_successor_is_ready() -> None:
    answers: list[bool | Exception] = [False]

    async def successors_ready() -> bool:
        answer = answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    serving = asyncio.Event()
    async with running(stand_in(lambda: leading_while(serving), successors_ready, period=0.05)):
        await asyncio.wait_for(serving.wait(), 2)  # none ready: it serves
        answers[0] = True
        await asyncio.sleep(0.03)
        assert serving.is_set()  # one ready answer is not enough
        await asyncio.sleep(0.3)
        assert not serving.is_set()  # ready at two checks: stood down
        answers[0] = TransportError("the API server does not answer")
        await asyncio.wait_for(serving.wait(), 2)  # cannot tell: it serves again
        answers[0] = True
        await asyncio.sleep(0.3)
        assert not serving.is_set()


# -- garbage collector --------------------------------------------------------------------------


@pytest.fixture
async def collector(client: Client) -> AsyncIterator[GarbageCollector]:
    gc = GarbageCollector(client, resync_interval=0.2)
    async with running(gc.run()):
        yield gc


async def test_gc_deletes_dependents_of_a_deleted_owner(
    client: Client, collector: GarbageCollector
) -> None:
    owner = await client.create(CONFIGMAPS, configmap("owner"))
    other = await client.create(CONFIGMAPS, configmap("other"))
    await client.create(CONFIGMAPS, configmap("child", ownerReferences=owned_by(owner)))
    both = [*owned_by(owner), {**owned_by(other)[0], "controller": False}]
    await client.create(CONFIGMAPS, configmap("shared", ownerReferences=both))
    await client.delete(CONFIGMAPS, "owner", "default", propagation_policy="Background")
    await eventually(lambda: gone(client, CONFIGMAPS, "child", "default"))
    shared = await client.get(CONFIGMAPS, "shared", "default")
    assert [r["name"] for r in shared["metadata"]["ownerReferences"]] == ["other"]


async def test_gc_deletes_dependents_created_after_their_owner_vanished(
    client: Client, collector: GarbageCollector
) -> None:
    ghost = {"metadata": {"name": "ghost", "uid": "no-such-uid"}}
    await client.create(CONFIGMAPS, configmap("orphan", ownerReferences=owned_by(ghost)))
    await eventually(lambda: gone(client, CONFIGMAPS, "orphan", "default"))


async def test_gc_foreground_deletion_waits_for_blocking_dependents(
    client: Client, collector: GarbageCollector
) -> None:
    owner = await client.create(CONFIGMAPS, configmap("owner"))
    for name in ("blocking", "loose"):
        refs = owned_by(owner, block=name == "blocking")
        await client.create(CONFIGMAPS, configmap(name, ownerReferences=refs))
    await client.delete(CONFIGMAPS, "owner", "default", propagation_policy="Foreground")
    await eventually(lambda: gone(client, CONFIGMAPS, "owner", "default"))
    assert await gone(client, CONFIGMAPS, "blocking", "default")
    await eventually(lambda: gone(client, CONFIGMAPS, "loose", "default"))


async def test_gc_orphan_deletion_keeps_dependents(
    client: Client, collector: GarbageCollector
) -> None:
    owner = await client.create(CONFIGMAPS, configmap("owner"))
    await client.create(CONFIGMAPS, configmap("child", ownerReferences=owned_by(owner)))
    await client.delete(CONFIGMAPS, "owner", "default", propagation_policy="Orphan")
    await eventually(lambda: gone(client, CONFIGMAPS, "owner", "default"))
    child = await client.get(CONFIGMAPS, "child", "default")
    assert not child["metadata"].get("ownerReferences")


WIDGETS = ResourceRef("example.com", "v1", "widgets", True, "Widget")
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


async def test_gc_collects_custom_resources_whose_crd_came_later(
    client: Client, collector: GarbageCollector
) -> None:
    await client.create(resources.CUSTOMRESOURCEDEFINITIONS, WIDGET_CRD)
    await eventually(lambda: served(client, "example.com/v1", "Widget"))
    owner = await client.create(CONFIGMAPS, configmap("owner"))
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default", "ownerReferences": owned_by(owner)},
    }
    await client.create(WIDGETS, widget)
    await client.delete(CONFIGMAPS, "owner", "default")
    await eventually(lambda: gone(client, WIDGETS, "w", "default"))


async def served(client: Client, api_version: str, kind: str) -> bool:
    try:
        await resources.resolve(client, api_version, kind)
    except NotFound:
        return False
    return True


# -- namespace controller -----------------------------------------------------------------------


async def condition(client: Client, namespace: str, kind: str) -> Obj:
    obj = await client.get(NAMESPACES, namespace)
    found = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind]
    return found[0] if found else {}


async def test_deleting_a_namespace_removes_its_content_then_the_namespace(
    client: Client,
) -> None:
    await client.create(NAMESPACES, {"metadata": {"name": "team"}})
    for name in ("a", "b"):
        await client.create(CONFIGMAPS, configmap(name, "team"))
    await client.create(CONFIGMAPS, configmap("held", "team", finalizers=["example.com/hold"]))
    controller = NamespaceController(client, poll_interval=0.05)
    async with running(controller.run()):
        await client.delete(NAMESPACES, "team")
        await eventually(lambda: gone(client, CONFIGMAPS, "a", "team"))
        assert await gone(client, CONFIGMAPS, "b", "team")

        async def finalizers_reported() -> bool:
            found = await condition(client, "team", "NamespaceFinalizersRemaining")
            return found.get("status") == "True"

        await eventually(finalizers_reported)
        namespace = await client.get(NAMESPACES, "team")
        assert namespace["status"]["phase"] == "Terminating"
        held = await client.get(CONFIGMAPS, "held", "team")
        held["metadata"]["finalizers"] = []
        await client.update(CONFIGMAPS, held)
        await eventually(lambda: gone(client, NAMESPACES, "team", None))


async def test_controllers_run_under_their_lease(client: Client) -> None:
    await client.create(NAMESPACES, {"metadata": {"name": "scratch"}})
    await client.create(CONFIGMAPS, configmap("a", "scratch"))
    async with running(
        run_elected(client, "me", lease_duration=1, renew_deadline=0.6, retry_period=0.05)
    ):
        await eventually(lambda: exists(client, LEASES, "unistack-controllers", "kube-system"))
        await client.delete(NAMESPACES, "scratch")
        await eventually(lambda: gone(client, NAMESPACES, "scratch", None))
    lease = await client.get(LEASES, "unistack-controllers", "kube-system")
    assert not lease["spec"].get("holderIdentity")  # released on the way out
