"""Lame-duck shutdown for a uvicorn server behind a load balancer.

When a pod is deleted its process gets SIGTERM at about the moment the Endpoints lose its
address, but the proxy in front (the gateway's HAProxy) learns that a little later: from its
next health check, or from the reload the Endpoints change causes. uvicorn's own handling
closes the listening socket at once, so a request routed in that window is refused. A lame
duck instead keeps serving for `drain_seconds` after the first SIGTERM or SIGINT while its
health endpoint answers 503 (`Draining.active`), so the proxy takes it out of rotation first;
then it shuts down as uvicorn does, finishing the requests in flight. A second signal ends
the wait at once. This is what Kubernetes' docs suggest a preStop `sleep` for; doing it in
the process needs no hook support from the agent and lets `/healthz` tell the truth.

uvicorn's `Server` checks `should_exit` on every tick (0.1 s), so the drain is a deadline
that `on_tick` compares against; the signal handler only records it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import FrameType

import uvicorn


@dataclass
class Draining:
    """Shared between the server and the app: true once the drain has begun."""

    active: bool = False


class LameDuckServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_seconds: float, draining: Draining) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.draining = draining
        self.drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_until is None and self.drain_seconds > 0:
            self.draining.active = True
            self.drain_until = time.monotonic() + self.drain_seconds
            self._captured_signals.append(sig)  # re-raised after shutdown, as uvicorn does
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            self.should_exit = True
        return await super().on_tick(counter)
