"""The revisioned object store: get, list, compare-and-swap writes, watch from a revision.

Public names: `ObjectStore` (the Protocol), `SqliteStore` (the embedded backend), the value
types and the errors. The API server (`unistack.apiserver`) is its only user.
"""

from unistack.store.errors import AlreadyExists, Compacted, Conflict, NotFound, StoreError
from unistack.store.hub import Watcher
from unistack.store.protocol import ObjectStore
from unistack.store.sqlite import SqliteStore
from unistack.store.types import Event, EventType, ListResult, Stored

__all__ = [
    "AlreadyExists",
    "Compacted",
    "Conflict",
    "Event",
    "EventType",
    "ListResult",
    "NotFound",
    "ObjectStore",
    "SqliteStore",
    "StoreError",
    "Stored",
    "Watcher",
]
