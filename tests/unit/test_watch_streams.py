"""`watch.Streams`: the clients' watches end together at shutdown; the server's own
followers of the store do not; a watch that begins after the end ends at once."""

from __future__ import annotations

from unistack.apiserver.watch import Streams
from unistack.store.hub import Hub


async def test_end_closes_the_clients_watches_and_any_that_begin_later() -> None:
    hub, streams = Hub(), Streams()
    client, follower = hub.subscribe("/registry/pods/"), hub.subscribe("/registry/")
    streams.add(client)
    assert len(streams) == 1
    streams.end()
    assert await client.next_batch(1) is None  # its stream ends
    assert not follower.closed and len(hub) == 1  # the follower goes on
    late = hub.subscribe("/registry/pods/")
    streams.add(late)
    assert await late.next_batch(1) is None
    assert len(streams) == 0


async def test_a_finished_watch_leaves_the_streams() -> None:
    hub, streams = Hub(), Streams()
    watcher = hub.subscribe("/registry/pods/")
    streams.add(watcher)
    streams.discard(watcher)
    watcher.close()
    streams.end()
    assert len(streams) == 0 and len(hub) == 0
