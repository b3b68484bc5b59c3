"""A StoreFollower keeps a mirror in step with a real SQLite store, and a mirror that fails
on an event is read afresh rather than left stale."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.harness import eventually
from unistack import store as storage
from unistack.apiserver.following import StoreFollower
from unistack.store import SqliteStore

PREFIX = "/following.test/"


class Names:
    """The names under the prefix; fails once on the event for `poison`."""

    def __init__(self, poison: str) -> None:
        self.names: set[str] = set()
        self.poison = poison
        self.replaced = 0

    def replace(self, items: list[storage.Stored]) -> None:
        self.replaced += 1
        self.names = {item.key.rsplit("/", 1)[-1] for item in items}

    def apply(self, event: storage.Event) -> None:
        name = event.key.rsplit("/", 1)[-1]
        if name == self.poison:
            self.poison = ""
            raise ValueError("cannot read this one")
        self.names.add(name)


async def test_a_failed_event_reads_the_prefix_again(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "store.db"))
    mirror = Names(poison="b")
    follower = StoreFollower(store, PREFIX, mirror)
    try:
        await store.create(f"{PREFIX}a", {"n": 1})
        await follower.start()
        assert mirror.names == {"a"} and mirror.replaced == 1
        await store.create(f"{PREFIX}b", {"n": 2})

        async def caught_up() -> bool:
            return mirror.names == {"a", "b"}

        await eventually(caught_up)  # b came by the second list, not by its event
        assert mirror.replaced == 2
        await store.create(f"{PREFIX}c", {"n": 3})

        async def followed_on() -> bool:
            return "c" in mirror.names

        await eventually(followed_on)
        await asyncio.sleep(0.05)
        assert mirror.replaced == 2
    finally:
        follower.stop()
        store.close()
