"""Where volumes go and who carries their calls (`unistack.iaas.volume.agentbackend`): the
pure placement decisions, and `HostBackends` dispatching to a recording agent or the fake,
with in-memory stand-ins for the Nodes informer and the volume records (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from unistack.iaas.volume import agentbackend
from unistack.iaas.volume.agentbackend import HostBackends
from unistack.iaas.volume.backend import FAKE_HOST, BackendError, FakeBackend, Placed
from unistack.iaas.volume.kinds import SNAPSHOTS, VOLUMES

Obj = dict[str, Any]
GIB = 1024**3


def _node(name: str, pool: int | None) -> Obj:
    annotations = {} if pool is None else {agentbackend.POOL_ANNOTATION: str(pool)}
    return {"metadata": {"name": name, "annotations": annotations}}


def test_pool_capacity_reads_the_annotation() -> None:
    assert agentbackend.pool_capacity(_node("a", 5 * GIB)) == 5 * GIB
    assert agentbackend.pool_capacity(_node("a", None)) == 0
    assert (
        agentbackend.pool_capacity(
            {"metadata": {"annotations": {agentbackend.POOL_ANNOTATION: "x"}}}
        )
        == 0
    )
    assert agentbackend.pool_capacity(None) == 0


def test_hosts_name_their_node_and_backend() -> None:
    host = agentbackend.pool_host("node1")
    assert host == "node1@unistack-pool#pool"
    assert agentbackend.node_of(host) == "node1"
    assert agentbackend.is_pool_host(host)
    assert not agentbackend.is_pool_host(FAKE_HOST)


def test_choose_pool_takes_the_most_free_that_fits() -> None:
    assert agentbackend.choose_pool({"a": 10 * GIB, "b": 20 * GIB}, GIB) == "b"
    assert agentbackend.choose_pool({"a": 10 * GIB, "b": 20 * GIB}, 15 * GIB) == "b"
    assert agentbackend.choose_pool({"a": 10 * GIB, "b": 10 * GIB}, GIB) == "a"
    assert agentbackend.choose_pool({"a": GIB}, 2 * GIB) is None
    assert agentbackend.choose_pool({}, GIB) is None


def test_agent_source_names_what_the_volume_comes_from() -> None:
    def volume(**spec: Any) -> Obj:
        return {"metadata": {"name": "v"}, "spec": spec}

    assert agentbackend.agent_source(volume()) is None
    assert agentbackend.agent_source(volume(snapshot_id="s")) == {"snapshot": "s"}
    assert agentbackend.agent_source(volume(source_volid="v0")) == {"volume": "v0"}
    assert agentbackend.agent_source(volume(imageRef="i")) == {"image": "i"}
    assert agentbackend.agent_source(volume(backup_id="b")) == {"backup": "b"}


class _Cache:
    def __init__(self, objs: list[Obj]) -> None:
        self.objs = {o["metadata"]["name"]: o for o in objs}

    def get(self, key: str) -> Obj | None:
        return self.objs.get(key)

    def list(self) -> list[Obj]:
        return list(self.objs.values())


class _Nodes:
    def __init__(self, nodes: list[Obj]) -> None:
        self.cache = _Cache(nodes)


class _Records:
    def __init__(self) -> None:
        self.objs: dict[tuple[str, str], Obj] = {}

    def add(self, kind: Any, name: str, spec: Obj, status: Obj | None = None) -> None:
        self.objs[(kind.plural, name)] = {
            "metadata": {"name": name},
            "spec": spec,
            "status": status or {},
        }

    def get(self, kind: Any, name: str | None) -> Obj | None:
        return self.objs.get((kind.plural, str(name)))


class _Agent:
    """AgentBackend's interface, recording the calls; free bytes per node."""

    def __init__(self, free: dict[str, int]) -> None:
        self.free = free
        self.calls: list[tuple[Any, ...]] = []

    async def free_bytes(self, node: str) -> int | None:
        return self.free.get(node)

    async def create_volume(self, node: str, volume_id: str, size: int, source: Obj | None) -> None:
        self.calls.append(("create_volume", node, volume_id, size, source))

    async def extend_volume(self, node: str, volume_id: str, size: int) -> None:
        self.calls.append(("extend_volume", node, volume_id, size))

    async def delete_volume(self, node: str, volume_id: str) -> None:
        self.calls.append(("delete_volume", node, volume_id))

    async def create_snapshot(self, node: str, snapshot_id: str, volume_id: str) -> None:
        self.calls.append(("create_snapshot", node, snapshot_id, volume_id))

    async def delete_snapshot(self, node: str, snapshot_id: str) -> None:
        self.calls.append(("delete_snapshot", node, snapshot_id))

    async def upload_volume(self, node: str, volume_id: str, image_id: str, fmt: str) -> None:
        self.calls.append(("upload_volume", node, volume_id, image_id, fmt))


def _backends(nodes: list[Obj], free: dict[str, int]) -> tuple[HostBackends, _Records, _Agent]:
    records, agent = _Records(), _Agent(free)
    backends = HostBackends(_Nodes(nodes), records, agent, FakeBackend(failing={"bad"}))  # type: ignore[arg-type]
    return backends, records, agent


async def test_a_new_volume_goes_to_the_pool_with_most_free_space() -> None:
    backends, records, _ = _backends(
        [_node("small", 10 * GIB), _node("big", 50 * GIB), _node("none", None)],
        {"small": 9 * GIB, "big": 40 * GIB},
    )
    records.add(VOLUMES, "v", {"size": 1})
    placed = await backends.place(records.get(VOLUMES, "v") or {}, {})
    assert placed == Placed("big@unistack-pool#pool", "unistack-pool")


async def test_without_pools_or_when_the_type_wants_the_fake_the_fake_backend_serves() -> None:
    backends, records, _ = _backends([_node("none", None)], {})
    records.add(VOLUMES, "v", {"size": 1})
    volume = records.get(VOLUMES, "v") or {}
    assert await backends.place(volume, {}) == Placed(FAKE_HOST, "fake-backend")
    pooled, records2, _ = _backends([_node("a", 10 * GIB)], {"a": 9 * GIB})
    records2.add(VOLUMES, "v", {"size": 1})
    wants_fake = {"storage_protocol": "fake"}
    assert await pooled.place(volume, wants_fake) == Placed(FAKE_HOST, "fake-backend")
    assert await pooled.place(volume, {"storage_protocol": "file"}) is not None
    assert await pooled.place(volume, {"storage_protocol": "iscsi"}) is None


async def test_a_clone_goes_where_its_source_is() -> None:
    backends, records, _ = _backends(
        [_node("a", 10 * GIB), _node("b", 50 * GIB)], {"a": 9 * GIB, "b": 40 * GIB}
    )
    records.add(VOLUMES, "src", {"size": 1}, {"host": "a@unistack-pool#pool"})
    records.add(SNAPSHOTS, "snap", {"volume_id": "src"})
    records.add(VOLUMES, "clone", {"size": 2, "source_volid": "src"})
    records.add(VOLUMES, "fromsnap", {"size": 1, "snapshot_id": "snap"})
    for name in ("clone", "fromsnap"):
        placed = await backends.place(records.get(VOLUMES, name) or {}, {})
        assert placed == Placed("a@unistack-pool#pool", "unistack-pool")


async def test_calls_go_to_the_recorded_host_or_the_fake() -> None:
    backends, records, agent = _backends([_node("a", 10 * GIB)], {"a": 9 * GIB})
    records.add(VOLUMES, "real", {"size": 1, "imageRef": "img"}, {"host": "a@unistack-pool#pool"})
    records.add(VOLUMES, "fake", {"size": 1}, {"host": FAKE_HOST})
    records.add(VOLUMES, "gone-host", {"size": 1}, {"host": "b@unistack-pool#pool"})
    records.add(SNAPSHOTS, "s", {"volume_id": "real"})
    await backends.create_volume("real", 1, "image:img")
    await backends.extend_volume("real", 2)
    await backends.create_snapshot("s", "real")
    await backends.delete_snapshot("s")
    await backends.upload_volume("real", "img2", "raw")
    await backends.delete_volume("real")
    await backends.create_volume("fake", 1, None)
    await backends.create_volume("gone-host", 1, None)  # a host without a pool now: the fake
    assert agent.calls == [
        ("create_volume", "a", "real", 1, {"image": "img"}),
        ("extend_volume", "a", "real", 2),
        ("create_snapshot", "a", "s", "real"),
        ("delete_snapshot", "a", "s"),
        ("upload_volume", "a", "real", "img2", "raw"),
        ("delete_volume", "a", "real"),
    ]
    assert backends.holds_data("real") and not backends.holds_data("fake")
    with pytest.raises(BackendError):
        await backends.upload_volume("fake", "img", "raw")
    records.add(VOLUMES, "bad", {"size": 1}, {"host": FAKE_HOST})
    with pytest.raises(BackendError):
        await backends.create_volume("bad", 1, None)


def test_a_volume_uploading_to_an_image_is_uploaded_once() -> None:
    from unistack.iaas.volume import decisions

    def volume(**status: Any) -> Obj:
        return {"metadata": {"name": "v"}, "spec": {}, "status": status}

    upload = {"image_id": "i", "disk_format": "raw"}
    assert decisions.decide(volume(status="uploading", upload=upload)) is decisions.Action.UPLOAD
    assert decisions.decide(volume(status="uploading", upload=None)) is decisions.Action.NOTHING
