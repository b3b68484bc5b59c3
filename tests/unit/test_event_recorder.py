"""The EventRecorder's queue: every Event is sent in the background, none is stranded, and
a burst beyond the queue is dropped rather than slowing the work it reports."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from unistack.client.api import Client
from unistack.runtime import events

Obj = dict[str, Any]
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}}


class Sink:
    """Stands in for the API server's Event endpoint: it records what it is sent."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.sent: list[Obj] = []
        self.gate = gate

    async def create(self, _resource: Any, body: Obj, _namespace: str) -> Obj:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        self.sent.append(body)
        return body


def recorder(sink: Sink) -> events.EventRecorder:
    return events.EventRecorder(cast(Client, sink), "test")


async def test_events_recorded_one_at_a_time_are_all_sent() -> None:
    sink = Sink()
    rec = recorder(sink)
    for n in range(5):
        rec.record(POD, "Pod", "Normal", f"Reason{n}", "message")
        for _ in range(3):  # let the sender finish and return, but not its done callback
            await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert [e["reason"] for e in sink.sent] == [f"Reason{n}" for n in range(5)]


async def test_a_burst_beyond_the_queue_is_dropped_and_counted() -> None:
    gate = asyncio.Event()
    sink = Sink(gate)
    rec = recorder(sink)
    burst = events.MAX_QUEUED + events.SENDERS + 10
    for n in range(burst):
        rec.record(POD, "Pod", "Normal", "Burst", str(n))
    await asyncio.sleep(0)  # the senders take one each
    assert rec.dropped > 0
    gate.set()
    await asyncio.sleep(0.2)
    assert len(sink.sent) + rec.dropped == burst
    assert len(sink.sent) >= events.MAX_QUEUED


def test_times_and_micro_times_read_back_as_epoch_seconds() -> None:
    assert events.parse_timestamp(events.timestamp(1_800_000_000)) == 1_800_000_000
    assert events.parse_timestamp("2027-01-15T08:00:00.250000Z") == 1_800_000_000.25
    assert events.parse_timestamp(None) == 0.0
    with pytest.raises(ValueError, match="not a Kubernetes Time"):
        events.parse_timestamp("yesterday")
