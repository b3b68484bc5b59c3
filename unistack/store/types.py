"""Values the store hands out: stored objects, list results and watch events.

Objects travel as already-serialised JSON bytes with `metadata.resourceVersion` embedded, so
the API server can answer a GET, LIST or watch without decoding and re-encoding them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class Stored:
    """One object as stored: its key, the revision that last wrote it, and its JSON."""

    key: str
    revision: int
    value: bytes


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[Stored]
    revision: int  # the store revision the list was read at
    remaining: int = 0  # items after this page (for `continue`)


@dataclass(frozen=True, slots=True)
class Event:
    """A committed change. For DELETED, `value` is the object's last state at `revision`.

    `previous` is the value before this change when it is known (always for live events,
    not for events replayed from the log); selector-filtered watchers use it to turn a change
    that leaves or enters their selection into DELETED or ADDED, as Kubernetes does.
    """

    type: EventType
    key: str
    revision: int
    value: bytes
    previous: bytes | None = None
