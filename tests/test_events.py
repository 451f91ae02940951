import asyncio
import threading

import pytest

from events import AsyncEventQueue


async def test_put_and_get_on_loop_keep_order():
    q = AsyncEventQueue()
    for i in range(5):
        await q.put("e", i)
    assert [(await q.get())[1] for _ in range(5)] == [0, 1, 2, 3, 4]


async def test_get_wakes_when_a_thread_puts():
    q = AsyncEventQueue()
    q.bind(asyncio.get_running_loop())
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)                       # getter is now waiting
    threading.Thread(target=q.put_threadsafe, args=("response", {"x": 1})).start()
    assert await asyncio.wait_for(getter, 5) == ("response", {"x": 1})


def test_put_threadsafe_without_loop_raises_instead_of_dropping():
    q = AsyncEventQueue()
    with pytest.raises(RuntimeError, match="no event loop"):
        q.put_threadsafe("response", {})


async def test_bound_to_one_loop_only():
    q = AsyncEventQueue()
    await q.put("a", 1)
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="another event loop"):
            q.bind(other)
    finally:
        other.close()


async def test_16_threads_50k_events_each_no_loss_per_producer_order():
    q = AsyncEventQueue()
    q.bind(asyncio.get_running_loop())
    producers, per = 16, 50_000
    start = threading.Barrier(producers)

    def produce(pid: int) -> None:
        start.wait()
        for i in range(per):
            q.put_threadsafe("ev", (pid, i))

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    last = [-1] * producers

    async def consume() -> None:
        for _ in range(producers * per):
            name, (pid, i) = await q.get()
            assert i == last[pid] + 1, f"producer {pid}: got {i} after {last[pid]}"
            last[pid] = i

    await asyncio.wait_for(consume(), 60)
    for t in threads:
        t.join()
    assert last == [per - 1] * producers
    assert q.empty()
