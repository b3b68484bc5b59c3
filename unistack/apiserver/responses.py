"""What handlers return: a whole body, a body held in parts (a large LIST), or a stream of
chunks (watch)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

JSON = "application/json"


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class PartsResponse:
    """A body whose size is known but which is never joined into one buffer: joining a LIST
    of ten thousand objects would hold the event loop for tens of milliseconds."""

    status: int
    parts: list[bytes]
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StreamingResponse:
    status: int
    chunks: AsyncIterator[bytes]
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


AnyResponse = Response | PartsResponse | StreamingResponse
