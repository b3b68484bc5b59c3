"""`watch=true`: a stream of newline-delimited watch events.

Without a resourceVersion (or with "0") the stream starts with an ADDED event per existing
object and continues from the revision that list was read at; with one, it resumes from the
store's history, or answers with an ERROR event carrying a 410 Expired Status when that
revision has been compacted, as kube-apiserver does. A watch with a label or field selector
sees an object that moves into its selection as ADDED and one that moves out as DELETED.
BOOKMARK events carry the newest revision when the client asked for them.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import orjson

from unistack import store as storage
from unistack.apiserver import codec, errors, tables
from unistack.apiserver.request import Request
from unistack.apiserver.resources import ResourceType
from unistack.apiserver.responses import StreamingResponse
from unistack.apiserver.routing import ResourcePath
from unistack.apiserver.selectors import Selection

Obj = dict[str, Any]

BOOKMARK_INTERVAL = 15.0


class Streams:
    """The watches a server is streaming to its clients, to end them together when it shuts
    down (`end`): each stream then closes with its last chunk and its client resumes from
    its resourceVersion elsewhere, as with kube-apiserver. The server's own followers of the
    store are not among them. A watch that begins once the end has come ends at once."""

    def __init__(self) -> None:
        self._open: set[storage.Watcher] = set()
        self.ended = False

    def add(self, watcher: storage.Watcher) -> None:
        if self.ended:
            watcher.close()
        else:
            self._open.add(watcher)

    def discard(self, watcher: storage.Watcher) -> None:
        self._open.discard(watcher)

    def end(self) -> None:
        self.ended = True
        for watcher in list(self._open):
            watcher.close()
        self._open.clear()

    def __len__(self) -> int:
        return len(self._open)


class WatchStream:
    """One client's watch: initial state, then committed events, bookmarks, a deadline."""

    def __init__(
        self,
        req: Request,
        rt: ResourceType,
        rp: ResourcePath,
        store: storage.ObjectStore,
        clock: Callable[[], datetime],
        streams: Streams,
    ) -> None:
        self.rt, self.rp, self.store, self.clock = rt, rp, store, clock
        self.streams = streams
        fields_text = req.param("fieldSelector") or ""
        if rp.name:
            fields_text = ",".join(filter(None, [fields_text, f"metadata.name={rp.name}"]))
        self.filter = Selection.parse(req.param("labelSelector"), fields_text, rt.kind)
        self.bookmarks = req.flag("allowWatchBookmarks")
        self.initial_events = req.flag("sendInitialEvents")
        self.table = req.wants_table()
        self.include = req.param("includeObject") or "Metadata"
        timeout = req.int_param("timeoutSeconds")
        self.deadline = time.monotonic() + (timeout if timeout else random.uniform(1800, 3600))
        self.resource_version = req.param("resourceVersion") or ""
        self.start = 0
        if self.resource_version not in ("", "0"):
            self.start = _parse_revision(self.resource_version)
        self.last_revision = 0

    def response(self) -> StreamingResponse:
        return StreamingResponse(200, self._chunks())

    async def _chunks(self) -> AsyncIterator[bytes]:
        prefix = self.rt.prefix(self.rp.namespace)
        initial: list[bytes] = []
        if self.resource_version in ("", "0") or self.initial_events:
            listed = await self.store.list(prefix)
            initial = [
                self._line("ADDED", codec.for_version(self.rt, s.value))
                for s in listed.items
                if self._initial_match(s.value)
            ]
            start = listed.revision
        else:
            start = self.start
        try:
            watcher = self.store.watch(prefix, start)
        except storage.Compacted as exc:
            yield self._expired(exc)
            return
        self.last_revision = start
        self.streams.add(watcher)
        try:
            if initial:
                yield b"".join(initial)
            if self.initial_events and self.bookmarks:
                yield self._bookmark(initial_end=True)
            async for chunk in self._follow(watcher):
                yield chunk
        finally:
            self.streams.discard(watcher)
            watcher.close()

    async def _follow(self, watcher: storage.Watcher) -> AsyncIterator[bytes]:
        # Without bookmarks asked for, a wait ends only at the deadline (an interval that had
        # passed would make every wait zero: a watch spinning on the CPU).
        next_bookmark = time.monotonic() + BOOKMARK_INTERVAL if self.bookmarks else math.inf
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                return
            wait = min(self.deadline, next_bookmark) - now
            batch = await watcher.next_batch(max(wait, 0.0))
            if batch is None:
                return
            lines = [line for event in batch if (line := self._event_line(event))]
            if lines:
                yield b"".join(lines)
            if self.bookmarks and time.monotonic() >= next_bookmark:
                # The store's revision only when every event up to it has been sent: with
                # events still queued, a bookmark past them would let a client resuming from
                # it skip them.
                if not watcher.pending:
                    self.last_revision = max(self.last_revision, self.store.revision)
                yield self._bookmark()
                next_bookmark = time.monotonic() + BOOKMARK_INTERVAL

    def _initial_match(self, value: bytes) -> bool:
        return self.filter.everything or self.filter.matches(codec.load(value))

    def _event_line(self, event: storage.Event) -> bytes | None:
        self.last_revision = event.revision
        value = codec.for_version(self.rt, event.value)
        if self.filter.everything:
            return self._line(event.type.value, value)
        kind = self._filtered_type(event, codec.load(value))
        return self._line(kind, value) if kind else None

    def _filtered_type(self, event: storage.Event, obj: Obj) -> str | None:
        now_matches = self.filter.matches(obj)
        if event.type is not storage.EventType.MODIFIED:
            return event.type.value if now_matches else None
        before = self.filter.matches(codec.load(event.previous)) if event.previous else now_matches
        if now_matches:
            return "MODIFIED" if before else "ADDED"
        return "DELETED" if before else None

    def _line(self, kind: str, value: bytes) -> bytes:
        if self.table:
            obj = tables.to_table(
                self.rt,
                [codec.load(value)],
                include_object=self.include,
                list_meta={},
                now=self.clock(),
            )
            value = orjson.dumps(obj)
        return b'{"type":"' + kind.encode() + b'","object":' + value + b"}\n"

    def _bookmark(self, *, initial_end: bool = False) -> bytes:
        meta: Obj = {"resourceVersion": str(self.last_revision)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": self.rt.kind, "apiVersion": self.rt.api_version, "metadata": meta}
        return b'{"type":"BOOKMARK","object":' + orjson.dumps(obj) + b"}\n"

    def _expired(self, exc: storage.Compacted) -> bytes:
        error = errors.gone(f"too old resource version: {exc.requested} ({exc.compacted + 1})")
        return b'{"type":"ERROR","object":' + orjson.dumps(error.status()) + b"}\n"


def _parse_revision(text: str) -> int:
    try:
        revision = int(text)
    except ValueError:
        raise errors.bad_request(f"invalid resource version: {text!r}") from None
    if revision < 0:
        raise errors.bad_request(f"invalid resource version: {text!r}")
    return revision
