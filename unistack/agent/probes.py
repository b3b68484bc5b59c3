"""Liveness, readiness and startup probes: run one probe, and a prober loop per probe.

A probe is HTTP GET (2xx/3xx is success), TCP connect, exec (exit 0) or gRPC health (run as a
TCP connect here: no gRPC client is shipped). The prober follows the kubelet's timing:
`initialDelaySeconds`, then every `periodSeconds`, each attempt bounded by
`timeoutSeconds`; the result flips after `failureThreshold` failures in a row or
`successThreshold` successes. Results go to a callback; the pod worker decides what they mean.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

Obj = dict[str, Any]
ExecProbe = Callable[[list[str], float], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Outcome:
    success: bool
    message: str = ""


def _port(value: Any, container: Obj) -> int:
    if isinstance(value, int):
        return value
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    return int(value)


async def _http(probe: Obj, host: str, container: Obj, timeout: float) -> Outcome:
    scheme = probe.get("scheme", "HTTP").lower()
    target = probe.get("host") or host
    path = probe.get("path") or "/"
    path = path if path.startswith("/") else "/" + path
    url = f"{scheme}://{target}:{_port(probe.get('port'), container)}{path}"
    headers = {h["name"]: h["value"] for h in probe.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/1.32")
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, headers=headers, ssl=False, allow_redirects=False) as response,
        ):
            if 200 <= response.status < 400:
                return Outcome(True)
            return Outcome(False, f"HTTP probe failed with statuscode: {response.status}")
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        return Outcome(False, f'Get "{url}": {error or type(error).__name__}')


async def _tcp(port: int, host: str, timeout: float) -> Outcome:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as error:
        return Outcome(False, f"dial tcp {host}:{port}: {error or 'i/o timeout'}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Outcome(True)


async def run_once(probe: Obj, host: str, container: Obj, run_exec: ExecProbe) -> Outcome:
    timeout = float(probe.get("timeoutSeconds") or 1)
    if "httpGet" in probe:
        return await _http(probe["httpGet"], host, container, timeout)
    if "tcpSocket" in probe:
        socket = probe["tcpSocket"]
        return await _tcp(_port(socket.get("port"), container), socket.get("host") or host, timeout)
    if "grpc" in probe:
        return await _tcp(int(probe["grpc"]["port"]), host, timeout)
    if "exec" in probe:
        code = await run_exec(list(probe["exec"].get("command") or []), timeout)
        if code == 0:
            return Outcome(True)
        return Outcome(False, f"command exited with {code}")
    return Outcome(False, "probe has no handler")


async def prober(
    probe: Obj,
    host: str,
    container: Obj,
    run_exec: ExecProbe,
    report: Callable[[bool, str], None],
    *,
    initial: bool,
) -> None:
    """Probe until cancelled; call `report(result, message)` whenever the result flips.

    `initial` is the result before the first flip (False for readiness and startup, True for
    liveness, as the kubelet assumes)."""
    await asyncio.sleep(float(probe.get("initialDelaySeconds") or 0))
    period = float(probe.get("periodSeconds") or 10)
    failures_needed = int(probe.get("failureThreshold") or 3)
    successes_needed = int(probe.get("successThreshold") or 1)
    current, streak_ok, streak_bad = initial, 0, 0
    while True:
        outcome = await run_once(probe, host, container, run_exec)
        if outcome.success:
            streak_ok, streak_bad = streak_ok + 1, 0
            if not current and streak_ok >= successes_needed:
                current = True
                report(True, "")
        else:
            streak_ok, streak_bad = 0, streak_bad + 1
            if streak_bad >= failures_needed and (current or streak_bad == failures_needed):
                current = False
                report(False, outcome.message)
        await asyncio.sleep(period)
