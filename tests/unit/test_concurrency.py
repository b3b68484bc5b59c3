import asyncio

import pytest

from unistack.concurrency import at_once


async def test_results_come_in_the_order_the_calls_were_given() -> None:
    async def late(value: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return value

    assert await at_once(late(1, 0.02), late(2, 0.0), late(3, 0.01)) == [1, 2, 3]


async def test_the_first_error_is_raised_as_itself_once_every_call_has_ended() -> None:
    ended: list[str] = []

    async def fails(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        ended.append(name)
        raise ConnectionError(name)

    async def succeeds() -> None:
        await asyncio.sleep(0.03)
        ended.append("slow")

    with pytest.raises(ConnectionError, match=r"^second$"):
        await at_once(succeeds(), fails("second", 0.01), fails("third", 0.0))
    assert sorted(ended) == ["second", "slow", "third"]  # none left running behind
