"""Image data from a URL, for Glance's `import` tasks (`task_import`): an HTTP(S) GET whose
body is streamed in chunks, as the image store's `receive` takes them.

`Fetcher` is what the task runner needs; `HttpFetcher` is the real one (aiohttp). Only
`http` and `https` are fetched, as Glance's default `allowed_schemes`; any other scheme,
an unreachable host, an answer other than 200 or a stalled transfer is a `FetchError` with
a message the task shows.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

SCHEMES = ("http", "https")
CHUNK_BYTES = 256 * 1024


class FetchError(Exception):
    """The data could not be fetched; the message says why."""


class Fetcher(Protocol):
    def chunks(self, url: str) -> AsyncGenerator[bytes, None]:
        """The body at `url`, chunk by chunk; FetchError when it cannot be had."""
        ...


def check_url(url: str) -> None:
    """FetchError unless `url` is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise FetchError(
            f"The given uri is not valid. Please specify a valid uri from the following "
            f"list of supported uri {list(SCHEMES)}"
        )


class HttpFetcher:
    """GET over HTTP(S) with aiohttp: connecting may take `connect_timeout` seconds, and
    the transfer may stall `read_timeout` seconds between chunks."""

    def __init__(self, connect_timeout: float = 30.0, read_timeout: float = 60.0) -> None:
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )

    async def chunks(self, url: str) -> AsyncGenerator[bytes, None]:
        check_url(url)
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as session,
                session.get(url) as response,
            ):
                if response.status != 200:
                    raise FetchError(f"GET {url} answered {response.status} {response.reason}")
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    yield chunk
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            raise FetchError(f"Could not fetch {url}: {error or type(error).__name__}") from error
