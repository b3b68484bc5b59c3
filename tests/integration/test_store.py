"""The SQLite store: revisions, compare-and-swap, lists, watch replay, compaction, restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from unistack import store as storage


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


async def test_revisions_increase_and_are_embedded(db: str) -> None:
    s = storage.SqliteStore(db)
    a = await s.create("/core/pods/ns/a", {"metadata": {"name": "a"}})
    b = await s.create("/core/pods/ns/b", {"metadata": {"name": "b"}})
    assert (a.revision, b.revision) == (1, 2)
    assert orjson.loads(b.value)["metadata"]["resourceVersion"] == "2"
    assert s.revision == 2


async def test_compare_and_swap(db: str) -> None:
    s = storage.SqliteStore(db)
    first = await s.create("/core/configmaps/ns/c", {"metadata": {"name": "c"}, "data": {"k": "1"}})
    with pytest.raises(storage.AlreadyExists):
        await s.create("/core/configmaps/ns/c", {"metadata": {"name": "c"}})
    second = await s.update(
        "/core/configmaps/ns/c",
        {"metadata": {"name": "c"}, "data": {"k": "2"}},
        expected_revision=first.revision,
    )
    with pytest.raises(storage.Conflict):
        await s.update(
            "/core/configmaps/ns/c", {"metadata": {"name": "c"}}, expected_revision=first.revision
        )
    with pytest.raises(storage.NotFound):
        await s.update("/core/configmaps/ns/missing", {"metadata": {}})
    got = await s.get("/core/configmaps/ns/c")
    assert got.revision == second.revision
    assert orjson.loads(got.value)["data"] == {"k": "2"}


async def test_conflicting_writes_in_one_batch_are_ordered(db: str) -> None:
    s = storage.SqliteStore(db)
    results = await asyncio.gather(
        s.create("/core/pods/ns/x", {"metadata": {"name": "x"}}),
        s.create("/core/pods/ns/x", {"metadata": {"name": "x"}}),
        return_exceptions=True,
    )
    assert isinstance(results[0], storage.Stored)
    assert isinstance(results[1], storage.AlreadyExists)


async def test_a_write_json_cannot_encode_fails_alone_not_its_batch(db: str) -> None:
    s = storage.SqliteStore(db)
    results = await asyncio.gather(
        s.create("/core/pods/ns/a", {"metadata": {"name": "a"}}),
        s.create("/core/pods/ns/bad", {"metadata": {"name": "bad"}, "data": {1: "x"}}),
        s.create("/core/pods/ns/c", {"metadata": {"name": "c"}}),
        return_exceptions=True,
    )
    assert isinstance(results[0], storage.Stored) and isinstance(results[2], storage.Stored)
    assert isinstance(results[1], TypeError)
    assert [item.key for item in (await s.list("/core/pods/ns/")).items] == [
        "/core/pods/ns/a",
        "/core/pods/ns/c",
    ]
    assert (results[0].revision, results[2].revision, s.revision) == (1, 2, 2)


async def test_list_pages_and_prefixes(db: str) -> None:
    s = storage.SqliteStore(db)
    for ns in ("a", "b"):
        for i in range(5):
            await s.create(f"/core/pods/{ns}/p{i}", {"metadata": {"name": f"p{i}"}})
    await s.create("/core/podtemplates/a/t", {"metadata": {"name": "t"}})
    everything = await s.list("/core/pods/")
    assert len(everything.items) == 10 and everything.revision == 11
    page = await s.list("/core/pods/a/", limit=2)
    assert [i.key for i in page.items] == ["/core/pods/a/p0", "/core/pods/a/p1"]
    assert page.remaining == 3
    rest = await s.list("/core/pods/a/", limit=10, start_after=page.items[-1].key)
    assert [i.key for i in rest.items][-1] == "/core/pods/a/p4" and rest.remaining == 0


async def test_delete_returns_last_state_at_new_revision(db: str) -> None:
    s = storage.SqliteStore(db)
    await s.create("/core/pods/ns/a", {"metadata": {"name": "a"}})
    gone = await s.delete("/core/pods/ns/a")
    assert gone.revision == 2
    assert orjson.loads(gone.value)["metadata"]["resourceVersion"] == "2"
    with pytest.raises(storage.NotFound):
        await s.get("/core/pods/ns/a")


async def test_a_cancelled_writer_keeps_its_batch_and_watchers_whole(db: str) -> None:
    """A caller cancelled while its write waits for the batch (a client gone away): the
    write still commits, the other writers get their answers, and watchers see every write."""
    s = storage.SqliteStore(db)
    watcher = s.watch("/core/pods/", s.revision)
    gone = asyncio.ensure_future(s.create("/core/pods/ns/gone", {"metadata": {"name": "gone"}}))
    kept = asyncio.ensure_future(s.create("/core/pods/ns/kept", {"metadata": {"name": "kept"}}))
    await asyncio.sleep(0)  # both are queued for one batch
    gone.cancel()
    stored = await asyncio.wait_for(kept, 2)
    assert stored.key == "/core/pods/ns/kept"
    seen: list[str] = []
    while len(seen) < 2:
        batch = await asyncio.wait_for(watcher.next_batch(), 2)
        assert batch is not None
        seen += [e.key for e in batch]
    assert seen == ["/core/pods/ns/gone", "/core/pods/ns/kept"]
    watcher.close()


async def test_watch_replays_then_follows(db: str) -> None:
    s = storage.SqliteStore(db)
    await s.create("/core/pods/ns/a", {"metadata": {"name": "a"}})
    await s.create("/core/pods/ns/b", {"metadata": {"name": "b"}})
    watcher = s.watch("/core/pods/", 1)
    await s.update("/core/pods/ns/a", {"metadata": {"name": "a"}, "spec": {}})
    await s.delete("/core/pods/ns/b")
    await s.create("/core/secrets/ns/other", {"metadata": {"name": "other"}})
    seen: list[tuple[str, int]] = []
    while len(seen) < 3:
        batch = await asyncio.wait_for(watcher.next_batch(), 2)
        assert batch is not None
        seen += [(e.type.value, e.revision) for e in batch]
    assert seen == [("ADDED", 2), ("MODIFIED", 3), ("DELETED", 4)]
    watcher.close()


async def test_live_events_carry_previous_value(db: str) -> None:
    s = storage.SqliteStore(db)
    await s.create("/core/pods/ns/a", {"metadata": {"name": "a", "labels": {"x": "1"}}})
    watcher = s.watch("/core/pods/", s.revision)
    await s.update("/core/pods/ns/a", {"metadata": {"name": "a", "labels": {"x": "2"}}})
    batch = await asyncio.wait_for(watcher.next_batch(), 2)
    assert batch and batch[0].previous is not None
    assert orjson.loads(batch[0].previous)["metadata"]["labels"] == {"x": "1"}


async def test_compacted_history_is_gone(db: str) -> None:
    s = storage.SqliteStore(db)
    for i in range(10):
        await s.create(f"/core/pods/ns/p{i}", {"metadata": {"name": f"p{i}"}})
    await s.compact(6)
    with pytest.raises(storage.Compacted) as caught:
        s.watch("/core/pods/", 3)
    assert caught.value.compacted == 6
    watcher = s.watch("/core/pods/", 6)
    batch = await asyncio.wait_for(watcher.next_batch(), 2)
    assert batch is not None and [e.revision for e in batch] == [7, 8, 9, 10]


async def test_state_and_revision_survive_reopen(db: str) -> None:
    s = storage.SqliteStore(db)
    for i in range(3):
        await s.create(f"/core/pods/ns/p{i}", {"metadata": {"name": f"p{i}"}})
    await s.delete("/core/pods/ns/p2")
    await s.compact(4)
    s.close()
    reopened = storage.SqliteStore(db)
    assert reopened.revision == 4 and reopened.compacted_revision == 4
    nxt = await reopened.create("/core/pods/ns/p9", {"metadata": {"name": "p9"}})
    assert nxt.revision == 5
    assert len((await reopened.list("/core/pods/")).items) == 3


async def test_slow_watcher_is_ended_not_buffered_forever(db: str) -> None:
    s = storage.SqliteStore(db, watch_capacity=5)
    watcher = s.watch("/core/pods/", 0)
    for i in range(10):
        await s.create(f"/core/pods/ns/p{i}", {"metadata": {"name": f"p{i}"}})
    assert watcher.overflowed and watcher.closed
    assert s.watcher_count == 0


async def test_replayed_modifications_carry_the_value_they_replaced(db: str) -> None:
    s = storage.SqliteStore(db)
    await s.create("/core/pods/ns/a", {"metadata": {"name": "a", "labels": {"v": "1"}}})
    start = s.revision
    await s.update("/core/pods/ns/a", {"metadata": {"name": "a", "labels": {"v": "2"}}})
    await s.update("/core/pods/ns/a", {"metadata": {"name": "a", "labels": {"v": "3"}}})
    watcher = s.watch("/core/pods/", start)
    batch = await asyncio.wait_for(watcher.next_batch(), 2)
    assert batch is not None
    previous = [orjson.loads(e.previous)["metadata"]["labels"]["v"] for e in batch if e.previous]
    assert previous == ["1", "2"]
