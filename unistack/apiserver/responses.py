"""What handlers return: a whole body, or a stream of chunks (watch)."""

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
class StreamingResponse:
    status: int
    chunks: AsyncIterator[bytes]
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
