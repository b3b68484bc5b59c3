"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it.

Candidates race to write their identity into the Lease's `holderIdentity` with a
compare-and-swap update (resourceVersion), so exactly one wins. The holder renews
`renewTime` every `retry_period`; if it cannot renew within `renew_deadline` it stops leading.
Others take the lease over only after they have seen the same record unchanged for
`lease_duration` by their own clock (no trust in other hosts' clocks). A leader that exits
releases the lease (empties `holderIdentity`) so a successor need not wait; one that is known
to be gone for good (`holder_gone`: its pod was deleted, as `kubectl delete --force` does) and
has missed two renewals need not be waited for either. A leader that sees another holder
stops at once rather than retrying to its deadline. The decisions
(`lease_held_by_other`, `claimed_spec`, `released_spec`) are pure; `LeaderElector` does the I/O.

`stand_by` is the bootstrap's way of leading, as a self-hosted cluster's (bootkube's): it
campaigns only while none of its successors (the pods that take the work over) is ready, or
when the lease has been left vacant too long, and hands the lease over as soon as they are.
`stand_in` is the same without a lease, for work its successors share rather than take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from unistack.client.api import AlreadyExists, ApiError, Client, Conflict, NotFound
from unistack.client.resources import LEASES
from unistack.client.transport import TransportError
from unistack.runtime.events import micro_time

Obj = dict[str, Any]
log = logging.getLogger(__name__)


def lease_held_by_other(spec: Obj, identity: str, unchanged_for: float) -> bool:
    """Someone else holds the lease and its record changed less than a duration ago."""
    holder = spec.get("holderIdentity")
    if not holder or holder == identity:
        return False
    return unchanged_for < float(spec.get("leaseDurationSeconds") or 0)


def claimed_spec(spec: Obj, identity: str, lease_duration: float, now: str) -> Obj:
    """The Lease spec with `identity` holding it (acquired anew or renewed)."""
    claimed = dict(spec)
    claimed["holderIdentity"] = identity
    claimed["leaseDurationSeconds"] = max(1, math.ceil(lease_duration))
    claimed["renewTime"] = now
    if spec.get("holderIdentity") != identity:  # a transition, as client-go counts them
        claimed["acquireTime"] = now
        claimed["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
    return claimed


def released_spec(spec: Obj, now: str) -> Obj:
    """The Lease spec with nobody holding it, so the next candidate takes it at once."""
    released = {k: v for k, v in spec.items() if k != "holderIdentity"}
    released.update(leaseDurationSeconds=1, renewTime=now)
    return released


class LeaderElector:
    """One candidate for one Lease. `run` campaigns, leads, and returns when it stops leading."""

    def __init__(
        self,
        client: Client,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15,
        renew_deadline: float = 10,
        retry_period: float = 2,
        holder_gone: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.client = client
        # Whether a holder is known to be gone for good (its pod deleted): its lease is taken
        # once it has missed two renewals (2 x retry_period) instead of after
        # `lease_duration`. Unknown holders are never gone.
        self.holder_gone = holder_gone
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.is_leader = False
        self._observed_spec: Obj | None = None
        self._observed_at = 0.0

    async def run(
        self,
        on_started_leading: Callable[[], Coroutine[Any, Any, None]],
        on_stopped_leading: Callable[[], Awaitable[None] | None] | None = None,
    ) -> None:
        """Acquire, run `on_started_leading` while renewing, then stop and release.

        Returns when leadership is lost or `on_started_leading` returns; cancelling `run`
        cancels the leading work and releases the lease.
        """
        await self._acquire()
        leading = asyncio.create_task(on_started_leading(), name=f"leading {self.name}")
        renewing = asyncio.create_task(self._renew_until_lost(), name=f"renewing {self.name}")
        try:
            await asyncio.wait([leading, renewing], return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._stop(leading, renewing, on_stopped_leading)
        failure = leading.exception() if leading.done() and not leading.cancelled() else None
        if failure is not None:
            raise failure

    async def _stop(
        self,
        leading: asyncio.Task[None],
        renewing: asyncio.Task[None],
        on_stopped_leading: Callable[[], Awaitable[None] | None] | None,
    ) -> None:
        for task in (leading, renewing):
            task.cancel()
        await asyncio.wait([leading, renewing])
        was_leader, self.is_leader = self.is_leader, False
        if was_leader:
            with contextlib.suppress(ApiError, TransportError, TimeoutError):
                async with asyncio.timeout(self.renew_deadline):
                    await self.release()
        if on_stopped_leading is not None:
            result = on_stopped_leading()
            if result is not None:
                await result

    async def _acquire(self) -> None:
        while not await self._attempt():
            await asyncio.sleep(self.retry_period * random.uniform(1.0, 1.2))
        log.info("%s is now the leader of lease %s/%s", self.identity, self.namespace, self.name)

    async def _renew_until_lost(self) -> None:
        while await self._renew_within_deadline():
            await asyncio.sleep(self.retry_period)
        log.warning("%s lost lease %s/%s", self.identity, self.namespace, self.name)

    async def _renew_within_deadline(self) -> bool:
        deadline = time.monotonic() + self.renew_deadline
        while (remaining := deadline - time.monotonic()) > 0:
            # asyncio.timeout, not wait_for: wait_for (3.11) can swallow a cancellation
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    if await self._attempt():
                        return True
            if self._taken_by_other():  # no use trying again: stop leading now
                return False
            await asyncio.sleep(min(self.retry_period, max(0.0, deadline - time.monotonic())))
        return False

    def named_holder(self) -> bool:
        """Whether the lease, as last read, names this candidate as its holder."""
        return (self._observed_spec or {}).get("holderIdentity") == self.identity

    def _taken_by_other(self) -> bool:
        holder = (self._observed_spec or {}).get("holderIdentity")
        return bool(holder) and holder != self.identity

    async def _attempt(self) -> bool:
        """Try once to acquire or renew; True when we hold the lease afterwards."""
        try:
            held = await self._try_acquire_or_renew()
        except (ApiError, TransportError) as exc:
            log.info("lease %s/%s: %s", self.namespace, self.name, exc)
            held = False
        self.is_leader = held
        return held

    async def _try_acquire_or_renew(self) -> bool:
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except NotFound:
            return await self._create()
        spec = lease.get("spec") or {}
        self._observe(spec)
        if await self._held_by_other(spec):
            return False
        lease["spec"] = claimed_spec(spec, self.identity, self.lease_duration, micro_time())
        try:
            updated = await self.client.update(LEASES, lease)
        except Conflict:
            return False
        self._observe(updated.get("spec") or {})
        return True

    async def _create(self) -> bool:
        spec = claimed_spec({}, self.identity, self.lease_duration, micro_time())
        lease = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {**spec, "leaseTransitions": 0},  # creating is not a transition
        }
        try:
            created = await self.client.create(LEASES, lease, self.namespace)
        except AlreadyExists:
            return False
        self._observe(created.get("spec") or {})
        return True

    def _observe(self, spec: Obj) -> None:
        """Remember when the record last changed, by our own clock."""
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_at = time.monotonic()

    async def vacant(self) -> bool:
        """Whether this candidate could take the lease now: there is none, nobody holds it,
        it is our own, or its holder has not renewed it for its duration (by our clock)."""
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except NotFound:
            return True
        spec = lease.get("spec") or {}
        self._observe(spec)
        return not await self._held_by_other(spec)

    async def _held_by_other(self, spec: Obj) -> bool:
        unchanged_for = time.monotonic() - self._observed_at
        if not lease_held_by_other(spec, self.identity, unchanged_for):
            return False
        # gone: its pod deleted, and it has missed two renewals since we first saw the record
        # (a force-deleted pod's process may still run a moment: it must not be led beside)
        missed = unchanged_for >= 2 * self.retry_period
        if (
            missed
            and self.holder_gone is not None
            and await self.holder_gone(spec["holderIdentity"])
        ):
            log.info("lease %s/%s: its holder %s is gone", self.namespace, self.name,
                     spec["holderIdentity"])  # fmt: skip
            return False
        return True

    async def release(self) -> None:
        """Give the lease up if we hold it."""
        lease = await self.client.get(LEASES, self.name, self.namespace)
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return
        lease["spec"] = released_spec(spec, micro_time())
        with contextlib.suppress(Conflict):
            await self.client.update(LEASES, lease)
        log.info("%s released lease %s/%s", self.identity, self.namespace, self.name)


async def stand_by(
    elector: LeaderElector,
    work: Callable[[], Coroutine[Any, Any, None]],
    successors_ready: Callable[[], Awaitable[bool]],
    *,
    period: float = 1.0,
    grace: float = 10.0,
    hold: float = 30.0,
) -> None:
    """Lead, doing `work`, only while no successor can; forever.

    Campaigns when `successors_ready` says none is ready, or when the lease has stayed
    vacant for `grace` seconds although one is (it is not taking it); leading, hands over
    (stops `work` and releases the lease) once successors have been ready at two checks in a
    row, but not within `hold` seconds of taking a lease they had left vacant."""
    vacant_since: float | None = None
    while True:
        ready, vacant = await _ask(successors_ready, True), await _ask(elector.vacant, False)
        now = time.monotonic()
        vacant_since = (vacant_since or now) if vacant else None
        abandoned = vacant_since is not None and now - vacant_since >= grace
        if ready and not abandoned:
            if vacant and elector.named_holder():  # ours still, from a run before a restart
                await _ask(_released(elector), False)
            await asyncio.sleep(period)
            continue
        keep_until = now + (hold if abandoned else 0.0)
        log.info("%s stands in for its successors on lease %s", elector.identity, elector.name)
        relieved = functools.partial(
            _lead_until_relieved, work, successors_ready, period, keep_until
        )
        await elector.run(relieved)
        vacant_since = None


async def stand_in(
    work: Callable[[], Coroutine[Any, Any, None]],
    successors_ready: Callable[[], Awaitable[bool]],
    *,
    period: float = 1.0,
) -> None:
    """Do `work` only while no successor can, with no lease: for work the successors share
    rather than take over (a port they all listen on). Starts it whenever the successors are
    not ready (or the API cannot say), stops it once they have been ready at two checks in
    a row; forever."""
    while True:
        if await _ask(successors_ready, False):
            await asyncio.sleep(period)
            continue
        log.info("standing in for successors that are not ready")
        await _lead_until_relieved(work, successors_ready, period, 0.0)
        log.info("successors are ready: stood down")


async def _lead_until_relieved(
    work: Callable[[], Coroutine[Any, Any, None]],
    successors_ready: Callable[[], Awaitable[bool]],
    period: float,
    keep_until: float,
) -> None:
    working = asyncio.create_task(work(), name="standing in")
    try:
        ready_checks = 0
        while not working.done():
            await asyncio.wait([working], timeout=period)
            ready = await _ask(successors_ready, False)
            ready_checks = ready_checks + 1 if ready else 0
            if ready_checks >= 2 and time.monotonic() >= keep_until:
                log.info("successors are ready: handing over")
                return
        working.result()
    finally:
        working.cancel()
        await asyncio.wait([working])


def _released(elector: LeaderElector) -> Callable[[], Awaitable[bool]]:
    async def release() -> bool:
        await elector.release()
        return True

    return release


async def _ask(question: Callable[[], Awaitable[bool]], otherwise: bool) -> bool:
    """The answer, or `otherwise` when the API cannot be asked."""
    try:
        return await question()
    except (ApiError, TransportError) as exc:
        log.info("cannot tell: %s", exc)
        return otherwise
