"""SQLite (WAL) backend of the revisioned object store.

Layout: `objects` holds the current value of every key; `log` holds one row per committed
revision (the history a watch resumes from, trimmed by compaction); `meta` holds the compacted
revision. Writes are grouped: every write submitted in one event-loop turn is applied in one
transaction (compare-and-swap checked per write, in order) and acknowledged only after COMMIT.
With `synchronous=NORMAL` in WAL mode a committed transaction survives `kill -9` of the process.

Everything runs on the event loop's thread, so the order of revisions, commits and published
events is the order of the writes. Large lists read through a separate connection inside one
read transaction (a consistent WAL snapshot) and yield to the loop between chunks, so a LIST of
ten thousand objects does not stall the GETs queued behind it.
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from unistack.store import errors
from unistack.store.hub import Hub, Watcher
from unistack.store.types import Event, EventType, ListResult, Stored

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY, revision INTEGER NOT NULL, value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY, key TEXT NOT NULL, type TEXT NOT NULL, value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_by_key ON log (key, revision);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_LIST_CHUNK = 500


class _Op(enum.Enum):
    CREATE = 1
    UPDATE = 2
    DELETE = 3


@dataclass(slots=True)
class _Write:
    op: _Op
    key: str
    obj: dict[str, Any] | None
    expected: int | None
    previous: bytes | None = None
    future: asyncio.Future[Stored] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _connect(path: str, cache_kib: int = 32768) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA cache_size=-{cache_kib}")
    db.execute("PRAGMA busy_timeout=5000")
    return db


def _encode(obj: dict[str, Any], revision: int) -> bytes:
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return orjson.dumps(obj)


def _prefix_end(prefix: str) -> str:
    return prefix + "\U0010ffff"


class SqliteStore:
    """The embedded store. Create it inside a running event loop."""

    def __init__(self, path: str, *, watch_capacity: int = 100_000) -> None:
        self._path = path
        self._db = _connect(path)
        self._db.executescript(_SCHEMA)
        self._readers: list[sqlite3.Connection] = []
        self._hub = Hub(watch_capacity)
        self._pending: list[_Write] = []
        self._flush_scheduled = False
        self._compacted = self._read_meta("compacted")
        self._revision = max(self._compacted, self._max_revision())

    # -- reads -----------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> Stored:
        row = self._db.execute(
            "SELECT revision, value FROM objects WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            raise errors.NotFound(key)
        return Stored(key, row[0], row[1])

    async def list(
        self, prefix: str, *, limit: int | None = None, start_after: str | None = None
    ) -> ListResult:
        # Readers scan; the OS page cache serves their re-reads, so they keep a small cache.
        reader = self._readers.pop() if self._readers else _connect(self._path, cache_kib=8192)
        try:
            return await self._list_snapshot(reader, prefix, limit, start_after)
        finally:
            if reader.in_transaction:
                reader.execute("ROLLBACK")
            self._readers.append(reader)

    async def _list_snapshot(
        self, reader: sqlite3.Connection, prefix: str, limit: int | None, start_after: str | None
    ) -> ListResult:
        low = start_after if start_after is not None and start_after > prefix else prefix
        op = ">" if start_after is not None and start_after > prefix else ">="
        sql = f"SELECT key, revision, value FROM objects WHERE key {op} ? AND key < ? ORDER BY key"
        args: tuple[Any, ...] = (low, _prefix_end(prefix))
        if limit:
            sql += " LIMIT ?"
            args += (limit + 1,)
        reader.execute("BEGIN")
        cursor = reader.execute(sql, args)
        items = [Stored(*row) for row in cursor.fetchmany(_LIST_CHUNK)]
        revision = self._revision  # the snapshot began with the first fetch, in this same turn
        while len(items) % _LIST_CHUNK == 0 and items:
            await asyncio.sleep(0)
            chunk = cursor.fetchmany(_LIST_CHUNK)
            if not chunk:
                break
            items.extend(Stored(*row) for row in chunk)
        remaining = 0
        if limit and len(items) > limit:
            items = items[:limit]
            remaining = reader.execute(
                "SELECT count(*) FROM objects WHERE key > ? AND key < ?",
                (items[-1].key, _prefix_end(prefix)),
            ).fetchone()[0]
        reader.execute("ROLLBACK")
        return ListResult(items, revision, remaining)

    # -- writes ----------------------------------------------------------------------------

    async def create(self, key: str, obj: dict[str, Any]) -> Stored:
        return await self._submit(_Write(_Op.CREATE, key, obj, None))

    async def update(
        self, key: str, obj: dict[str, Any], *, expected_revision: int | None = None
    ) -> Stored:
        return await self._submit(_Write(_Op.UPDATE, key, obj, expected_revision))

    async def delete(self, key: str, *, expected_revision: int | None = None) -> Stored:
        return await self._submit(_Write(_Op.DELETE, key, None, expected_revision))

    async def _submit(self, write: _Write) -> Stored:
        self._pending.append(write)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await write.future

    def _flush(self) -> None:
        """Apply every pending write in one transaction, then acknowledge and publish."""
        batch, self._pending, self._flush_scheduled = self._pending, [], False
        start_revision = self._revision
        outcomes: list[tuple[_Write, Stored | Exception]] = []
        events: list[Event] = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for write in batch:
                outcome = self._apply(write)
                outcomes.append((write, outcome))
                if isinstance(outcome, Stored):
                    events.append(self._event_for(write, outcome))
            self._db.execute("COMMIT")
        except Exception as exc:  # the disk failed us: nothing in this batch was written
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._revision = start_revision
            for write in batch:
                if not write.future.done():
                    write.future.set_exception(exc)
            return
        for write, outcome in outcomes:
            if write.future.done():  # its caller was cancelled; the write stands all the same
                continue
            if isinstance(outcome, Stored):
                write.future.set_result(outcome)
            else:
                write.future.set_exception(outcome)
        self._hub.publish(events)

    def _apply(self, write: _Write) -> Stored | Exception:
        """Apply one write of the batch, or return why it fails; a failure is that write's
        alone (an object JSON cannot encode fails before anything is written)."""
        row = self._db.execute(
            "SELECT revision, value FROM objects WHERE key = ?", (write.key,)
        ).fetchone()
        failure = self._check(write, row)
        if failure is not None:
            return failure
        revision = self._revision + 1
        if write.op is _Op.DELETE:
            value = _encode(orjson.loads(row[1]), revision)
            self._db.execute("DELETE FROM objects WHERE key = ?", (write.key,))
        else:
            assert write.obj is not None
            try:
                value = _encode(write.obj, revision)
            except TypeError as exc:
                return exc
            self._db.execute(
                "INSERT OR REPLACE INTO objects (key, revision, value) VALUES (?, ?, ?)",
                (write.key, revision, value),
            )
        self._db.execute(
            "INSERT INTO log (revision, key, type, value) VALUES (?, ?, ?, ?)",
            (revision, write.key, _EVENT_TYPE[write.op].value, value),
        )
        self._revision = revision
        write.previous = row[1] if row is not None else None
        return Stored(write.key, revision, value)

    @staticmethod
    def _check(write: _Write, row: tuple[int, bytes] | None) -> errors.StoreError | None:
        if write.op is _Op.CREATE:
            return errors.AlreadyExists(write.key) if row is not None else None
        if row is None:
            return errors.NotFound(write.key)
        if write.expected is not None and write.expected != row[0]:
            return errors.Conflict(write.key, write.expected, row[0])
        return None

    @staticmethod
    def _event_for(write: _Write, stored: Stored) -> Event:
        return Event(
            _EVENT_TYPE[write.op], stored.key, stored.revision, stored.value, write.previous
        )

    # -- watch and compaction ----------------------------------------------------------------

    def watch(self, prefix: str, from_revision: int) -> Watcher:
        """Replay the log after `from_revision` into a new watcher, then follow live events.

        Replay and subscription happen in one synchronous step on the loop's thread, so no
        commit can fall between them.
        """
        if from_revision < self._compacted:
            raise errors.Compacted(from_revision, self._compacted)
        watcher = self._hub.subscribe(prefix)
        if from_revision < self._revision:
            rows = self._db.execute(
                "SELECT revision, key, type, value FROM log WHERE revision > ? "
                "AND key >= ? AND key < ? ORDER BY revision",
                (from_revision, prefix, _prefix_end(prefix)),
            ).fetchall()
            watcher.offer(self._replayed(rows))
        return watcher

    def _replayed(self, rows: Sequence[tuple[int, str, str, bytes]]) -> Sequence[Event]:
        """Replayed events, each MODIFIED one with the value it replaced, as live events have
        (a selector-filtered watch needs it to see an object leave its selection)."""
        last: dict[str, bytes] = {}
        events: list[Event] = []
        for revision, key, kind, value in rows:
            previous = None
            if kind == EventType.MODIFIED.value:
                previous = last.get(key) or self._value_before(key, revision)
            events.append(Event(EventType(kind), key, revision, value, previous))
            last[key] = value
        return events

    def _value_before(self, key: str, revision: int) -> bytes | None:
        row = self._db.execute(
            "SELECT value FROM log WHERE key = ? AND revision < ? ORDER BY revision DESC LIMIT 1",
            (key, revision),
        ).fetchone()
        return row[0] if row else None

    async def compact(self, revision: int) -> None:
        revision = min(revision, self._revision)
        if revision <= self._compacted:
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("DELETE FROM log WHERE revision <= ?", (revision,))
        self._db.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('compacted', ?)", (revision,)
        )
        self._db.execute("COMMIT")
        self._compacted = revision

    def close(self) -> None:
        self._hub.close_all()
        for reader in self._readers:
            reader.close()
        self._db.close()

    @property
    def watcher_count(self) -> int:
        return len(self._hub)

    # -- startup ---------------------------------------------------------------------------

    def _read_meta(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _max_revision(self) -> int:
        log_max = self._db.execute("SELECT max(revision) FROM log").fetchone()[0] or 0
        obj_max = self._db.execute("SELECT max(revision) FROM objects").fetchone()[0] or 0
        return max(log_max, obj_max)


_EVENT_TYPE = {
    _Op.CREATE: EventType.ADDED,
    _Op.UPDATE: EventType.MODIFIED,
    _Op.DELETE: EventType.DELETED,
}
