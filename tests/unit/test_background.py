from __future__ import annotations

import asyncio

from switchboard_common.background import Periodic


async def test_a_failing_tick_is_followed_by_the_next() -> None:
    calls: list[int] = []
    third = asyncio.Event()

    async def tick() -> None:
        calls.append(len(calls))
        if len(calls) == 3:
            third.set()
        if len(calls) == 1:
            raise ConnectionRefusedError("database away")

    job = Periodic("test-job", tick, 0.001, first_delay_s=0)
    await job.start()
    await asyncio.wait_for(third.wait(), 10)
    await job.stop()
    assert calls[:3] == [0, 1, 2]


async def test_stop_lets_the_running_tick_finish() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    async def tick() -> None:
        started.set()
        await release.wait()
        finished.append(True)

    job = Periodic("test-job", tick, 3600, first_delay_s=0)
    await job.start()
    await asyncio.wait_for(started.wait(), 10)
    stopping = asyncio.create_task(job.stop())
    await asyncio.sleep(0)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert finished == [True]


async def test_no_tick_before_the_first_delay_and_none_after_stop() -> None:
    calls: list[int] = []

    async def tick() -> None:
        calls.append(1)

    job = Periodic("test-job", tick, 3600)
    await job.start()
    await asyncio.sleep(0.01)
    await job.stop()
    assert calls == []
