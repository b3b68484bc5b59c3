"""Watch streams: initial state, resume, selectors moving objects in and out, 410, CRDs, auth."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Api
from unistack.apiserver import watch
from unistack.apiserver.app import ApiServer
from unistack.apiserver.auth import TokenFileAuthenticator
from unistack.client.transport import AsgiTransport
from unistack.store import SqliteStore
from unistack.store.hub import Watcher

CM = "/api/v1/namespaces/default/configmaps"


async def collect(api: Api, path: str, count: int, **params: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    query = {"watch": "true", **params}
    async with api.transport.stream("GET", path, params=query) as stream:
        assert stream.status == 200

        async def read() -> None:
            async for line in stream:
                events.append(orjson.loads(line))
                if len(events) == count:
                    return

        await asyncio.wait_for(read(), 5)
    return events


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


async def test_watch_without_version_starts_with_current_state(api: Api) -> None:
    await api.call("POST", CM, {"metadata": {"name": "one"}})
    events = await collect(api, CM, 1)
    assert summary(events) == [("ADDED", "one")]


async def test_watch_resumes_after_a_revision(api: Api) -> None:
    _, first = await api.call("POST", CM, {"metadata": {"name": "a"}})
    await api.call("POST", CM, {"metadata": {"name": "b"}})
    await api.call("DELETE", f"{CM}/a")
    events = await collect(api, CM, 2, resourceVersion=first["metadata"]["resourceVersion"])
    assert summary(events) == [("ADDED", "b"), ("DELETED", "a")]


async def test_live_events_and_selector_transitions(api: Api) -> None:
    _, listed = await api.call("GET", CM)
    rv = listed["metadata"]["resourceVersion"]

    async def changes() -> None:
        await asyncio.sleep(0.05)
        await api.call("POST", CM, {"metadata": {"name": "m", "labels": {"watch": "yes"}}})
        patch = {"metadata": {"labels": {"watch": "no"}}}
        await api.call("PATCH", f"{CM}/m", patch, content_type="application/merge-patch+json")
        patch = {"metadata": {"labels": {"watch": "yes"}}}
        await api.call("PATCH", f"{CM}/m", patch, content_type="application/merge-patch+json")

    writer = asyncio.ensure_future(changes())
    events = await collect(api, CM, 3, resourceVersion=rv, labelSelector="watch=yes")
    await writer
    assert summary(events) == [("ADDED", "m"), ("DELETED", "m"), ("ADDED", "m")]


async def test_compacted_revision_gives_410_event(api: Api) -> None:
    _, old = await api.call("POST", CM, {"metadata": {"name": "x"}})
    await api.call("POST", CM, {"metadata": {"name": "y"}})
    status, reply = await api.call("POST", "/unistack/compact")
    assert status == 200 and reply["compacted"] >= 2
    events = await collect(api, CM, 1, resourceVersion=old["metadata"]["resourceVersion"])
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"


async def test_bookmarks_and_initial_events(api: Api) -> None:
    await api.call("POST", CM, {"metadata": {"name": "first"}})
    events = await collect(
        api,
        CM,
        2,
        sendInitialEvents="true",
        allowWatchBookmarks="true",
        resourceVersionMatch="NotOlderThan",
    )
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_an_idle_watch_without_bookmarks_waits(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bookmark interval, a watch that asked for no bookmarks still sleeps until an
    event comes (it used to wait zero seconds in a loop: one core spinning per idle watch)."""
    monkeypatch.setattr(watch, "BOOKMARK_INTERVAL", 0.02)
    waits: list[float | None] = []
    original = Watcher.next_batch

    async def counted(self: Watcher, timeout: float | None = None) -> list[Any] | None:
        waits.append(timeout)
        return await original(self, timeout)

    monkeypatch.setattr(Watcher, "next_batch", counted)
    async with api.transport.stream("GET", CM, params={"watch": "true"}) as stream:
        lines = aiter(stream)
        await asyncio.sleep(0.3)
        await api.call("POST", CM, {"metadata": {"name": "late"}})
        event = orjson.loads(await asyncio.wait_for(anext(lines), 5))
    assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "late"
    assert len(waits) <= 3, f"{len(waits)} waits in 0.3 s"


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "default": 1},
                                },
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}
GADGETS = "/apis/example.com/v1/namespaces/default/gadgets"


async def test_crd_lifecycle(api: Api) -> None:
    status, crd = await api.call(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD
    )
    assert status == 201
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    status, gadget = await api.call(
        "POST",
        GADGETS,
        {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {}},
    )
    assert status == 201 and gadget["spec"] == {"size": 1}
    status, error = await api.call(
        "POST",
        GADGETS,
        {
            "apiVersion": "example.com/v1",
            "kind": "Gadget",
            "metadata": {"name": "h"},
            "spec": {"size": "big"},
        },
    )
    assert status == 422 and error["details"]["causes"][0]["field"] == "spec.size"
    status, pruned = await api.call(
        "POST",
        GADGETS,
        {
            "apiVersion": "example.com/v1",
            "kind": "Gadget",
            "metadata": {"name": "p"},
            "spec": {"size": 2, "extra": 1},
        },
    )
    assert status == 201 and pruned["spec"] == {"size": 2}
    status, _ = await api.call(
        "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com"
    )
    assert status == 200
    status, _ = await api.call("GET", GADGETS)
    assert status == 404
    await asyncio.sleep(0.1)
    listed = await api.server.store.list("/example.com/gadgets/")
    assert listed.items == []


async def test_patch_through_a_version_other_than_the_stored_one(api: Api) -> None:
    v2 = {**CRD["spec"]["versions"][0], "name": "v2", "storage": False}
    crd = {**CRD, "spec": {**CRD["spec"], "versions": [*CRD["spec"]["versions"], v2]}}
    await api.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    gadget = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}
    await api.call("POST", GADGETS, {**gadget, "spec": {"size": 1}})
    status, patched = await api.call(
        "PATCH",
        "/apis/example.com/v2/namespaces/default/gadgets/g",
        {"spec": {"size": 2}},
        content_type="application/merge-patch+json",
    )
    assert status == 200 and patched["apiVersion"] == "example.com/v2"
    _, stored = await api.call("GET", f"{GADGETS}/g")
    assert stored["apiVersion"] == "example.com/v1" and stored["spec"] == {"size": 2}


async def test_a_crd_cannot_take_over_a_builtin_resource(api: Api) -> None:
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    lease = {"metadata": {"name": "held"}, "spec": {"holderIdentity": "me"}}
    assert (await api.call("POST", leases, lease))[0] == 201
    spec = {**CRD["spec"], "group": "coordination.k8s.io"}
    spec["names"] = {"plural": "leases", "kind": "Lease"}
    impostor = {**CRD, "metadata": {"name": "leases.coordination.k8s.io"}, "spec": spec}
    assert (await api.call("POST", crds, impostor))[0] == 201
    status, _ = await api.call("DELETE", f"{crds}/leases.coordination.k8s.io")
    assert status == 200
    await asyncio.sleep(0.1)  # the cleanup of a deleted CRD's objects runs in the background
    status, kept = await api.call("GET", f"{leases}/held")
    assert status == 200 and kept["spec"]["holderIdentity"] == "me"


async def test_crds_are_served_again_after_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "store.db")
    first = ApiServer(SqliteStore(db))
    await first.start()
    api = Api(AsgiTransport(first), first)
    await api.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
    first.store.close()
    second = ApiServer(SqliteStore(db))
    again = Api(AsgiTransport(second), second)
    status, _ = await again.call("GET", GADGETS)
    assert status == 200
    second.store.close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.csv"
    path.write_text('secret-token,admin,uid-1,"system:masters"\n')
    return path


async def test_bearer_tokens(tmp_path: Path, token_file: Path) -> None:
    server = ApiServer(
        SqliteStore(str(tmp_path / "s.db")), authenticator=TokenFileAuthenticator(token_file)
    )
    anonymous = AsgiTransport(server)
    assert (await anonymous.request("GET", "/healthz")).status == 200
    denied = await anonymous.request("GET", "/api/v1/namespaces")
    assert denied.status == 401 and orjson.loads(denied.body)["reason"] == "Unauthorized"
    wrong = AsgiTransport(server, token="guess")
    assert (await wrong.request("GET", "/api/v1/namespaces")).status == 401
    admin = AsgiTransport(server, token="secret-token")
    assert (await admin.request("GET", "/api/v1/namespaces")).status == 200
    server.store.close()


async def test_resumed_selector_watch_sees_an_object_leave(api: Api) -> None:
    await api.call("POST", CM, {"metadata": {"name": "leaver", "labels": {"watch": "yes"}}})
    _, listed = await api.call("GET", CM, params={"labelSelector": "watch=yes"})
    patch = {"metadata": {"labels": {"watch": "no"}}}
    await api.call("PATCH", f"{CM}/leaver", patch, content_type="application/merge-patch+json")
    rv = listed["metadata"]["resourceVersion"]
    events = await collect(api, CM, 1, resourceVersion=rv, labelSelector="watch=yes")
    assert summary(events) == [("DELETED", "leaver")]


async def test_self_subject_access_review(tmp_path: Path, token_file: Path) -> None:
    server = ApiServer(
        SqliteStore(str(tmp_path / "s.db")), authenticator=TokenFileAuthenticator(token_file)
    )
    admin = AsgiTransport(server, token="secret-token")
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "create", "resource": "pods", "namespace": "x"}},
    }
    answer = await admin.request("POST", path, body=orjson.dumps(review))
    assert answer.status == 201 and orjson.loads(answer.body)["status"] == {"allowed": True}
    both = {**review, "spec": {"resourceAttributes": {}, "nonResourceAttributes": {}}}
    assert (await admin.request("POST", path, body=orjson.dumps(both))).status == 422
    assert (await admin.request("GET", path)).status == 405
    server.store.close()
