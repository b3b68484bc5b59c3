"""Kubernetes time stamps and v1 Events, as every controller and the node agent write them.

`timestamp` is a `Time` (seconds), `micro_time` a `MicroTime`; `event` builds a v1 Event about
an object (pure); `EventRecorder` sends them best-effort without blocking its caller, as
client-go's recorder does — a lost Event never fails the work it describes. As there, the
Events wait in a queue of at most `MAX_QUEUED` that a few senders drain, and an Event that
finds the queue full is dropped (and counted), so a burst of work is never slowed by
reporting it.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import uuid
from typing import Any

from unistack.client.api import ApiError, Client
from unistack.client.resources import EVENTS
from unistack.client.transport import TransportError

Obj = dict[str, Any]
MAX_QUEUED = 1000
SENDERS = 4
log = logging.getLogger(__name__)


def timestamp(moment: datetime.datetime | float | None = None) -> str:
    """Kubernetes Time, `2026-01-01T00:00:00Z`, of `moment` (a datetime or epoch seconds)."""
    if moment is None:
        moment = datetime.datetime.now(datetime.UTC)
    elif isinstance(moment, int | float):
        moment = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: datetime.datetime | None = None) -> str:
    """Kubernetes MicroTime: `2026-01-01T00:00:00.000000Z`."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str | None) -> float:
    """Epoch seconds of a Kubernetes Time or MicroTime (a Lease's `renewTime`); 0.0 for none.
    ValueError for anything else."""
    if not text:
        return 0.0
    for layout in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            moment = datetime.datetime.strptime(text, layout)
        except ValueError:
            continue
        return moment.replace(tzinfo=datetime.UTC).timestamp()
    raise ValueError(f"not a Kubernetes Time or MicroTime: {text!r}")


def event(
    obj: Obj,
    involved_kind: str,
    event_type: str,
    reason: str,
    message: str,
    *,
    component: str,
    host: str = "",
    now: str | None = None,
) -> Obj:
    """A v1 Event about `obj` (of kind `involved_kind`) from `component` on `host`."""
    meta = obj["metadata"]
    now = now or timestamp()
    source = {"component": component, **({"host": host} if host else {})}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}"},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": involved_kind,
            "namespace": meta.get("namespace"),
            "name": meta["name"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": event_type,
        "source": source,
        "reportingComponent": component,
        "reportingInstance": host or component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventRecorder:
    """Sends Events in the background; `record` never blocks and never raises."""

    def __init__(self, client: Client, component: str, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        self.dropped = 0
        self._queue: collections.deque[Obj] = collections.deque()
        self._senders: set[asyncio.Task[None]] = set()
        self._draining = 0

    def _body(
        self, obj: Obj, involved_kind: str, event_type: str, reason: str, message: str
    ) -> Obj:
        return event(
            obj,
            involved_kind,
            event_type,
            reason,
            message,
            component=self.component,
            host=self.host,
        )

    def record(
        self, obj: Obj, involved_kind: str, event_type: str, reason: str, message: str
    ) -> None:
        body = self._body(obj, involved_kind, event_type, reason, message)
        if len(self._queue) >= MAX_QUEUED:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % MAX_QUEUED == 0:
                log.warning("%s: event queue full, %d dropped", self.component, self.dropped)
            return
        self._queue.append(body)
        if self._draining < min(SENDERS, len(self._queue)):
            self._draining += 1  # counted here and uncounted as it returns: no gap between
            task = asyncio.ensure_future(self._drain())
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._send(self._queue.popleft())
        finally:
            self._draining -= 1

    async def send(
        self, obj: Obj, involved_kind: str, event_type: str, reason: str, message: str
    ) -> None:
        """Send one Event and wait for it (still best effort)."""
        await self._send(self._body(obj, involved_kind, event_type, reason, message))

    async def _send(self, body: Obj) -> None:
        namespace = body["involvedObject"].get("namespace") or "default"
        try:
            await self.client.create(EVENTS, body, namespace)
        except (ApiError, TransportError, OSError) as error:
            log.warning("%s: could not record %s: %s", self.component, body["reason"], error)
