"""Cross-thread event hand-off between workers, the engine loop and the GUI.

The upstream bug this module exists to make impossible: a worker thread
called `asyncio.Queue.put_nowait()` directly (asyncio queues are not
thread-safe) behind a silent `else` branch, and worker output never reached
the window.  Here there is exactly one way in from any thread.

`AsyncEventQueue` keeps its items in a `queue.SimpleQueue` (thread-safe,
FIFO, never drops).  Producers on any thread append to it; a consumer on the
owning asyncio loop awaits `get()`.  A producer that is not on the loop wakes
the consumer with `loop.call_soon_threadsafe`, at most one wake-up pending at
a time, so a burst of a million events costs one self-pipe write per drain,
not one per event.  Per-producer order is kept because every producer
appends to the same FIFO.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

# Event names (payloads are plain dicts; see docs/guide_architecture.md).
RESPONSE = "response"                    # {"text", "stream_id", "status"}
MMA_STREAM = "mma_stream"                # {"stream_id", "text"} one streamed chunk
MMA_STATE_UPDATE = "mma_state_update"    # {"status", "active_tier", "tier_usage", "track", "tickets"}
MMA_SPAWN_APPROVAL = "mma_spawn_approval"
MMA_STEP_APPROVAL = "mma_step_approval"
MMA_APPROVAL_CLOSED = "mma_approval_closed"  # {"request_id", "outcome"} (answered, timed out, cancelled)
MMA_ERROR = "mma_error"                  # {"ticket_id"?, "stream_id"?, "message", "hint"?}
MMA_TRACKS = "mma_tracks"                # {"tracks": [track dicts]} Tier 1 result
MMA_LOG = "mma_log"                      # {"message"} a progress line
COMMS = "comms"                          # one comms log entry


class AsyncEventQueue:
    """`put_threadsafe` from any thread, `await put` / `await get` on the loop.

    The queue binds to the loop that first awaits on it (or the `loop` given).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._loop = loop
        self._wakeup: asyncio.Event | None = None
        self._wake_pending = False
        self._bind_lock = threading.Lock()
        self.total_put = 0  # diagnostic counter (approximate under contention)

    # -- binding -------------------------------------------------------------
    def _bind(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        with self._bind_lock:
            if self._loop is None:
                self._loop = loop
            elif self._loop is not loop:
                raise RuntimeError("AsyncEventQueue is bound to another event loop")
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
        return self._wakeup

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to `loop` (the engine does this before any worker can put)."""
        with self._bind_lock:
            if self._loop is not None and self._loop is not loop:
                raise RuntimeError("AsyncEventQueue is bound to another event loop")
            self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    # -- producers -----------------------------------------------------------
    async def put(self, name: str, payload: Any) -> None:
        wakeup = self._bind()
        self._items.put((name, payload))
        self.total_put += 1
        wakeup.set()

    def put_threadsafe(self, name: str, payload: Any) -> None:
        """Safe from any thread, never blocks, never drops.

        Raises RuntimeError if no loop is bound yet: silently parking an
        event where nobody will ever read it is the upstream bug.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError(
                "AsyncEventQueue has no event loop yet: create it with loop=..., "
                "or start the consumer (await get()) before producers put events")
        self._items.put((name, payload))
        self.total_put += 1
        if not self._wake_pending:
            self._wake_pending = True
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                # Loop closed: the item stays queued for get_nowait(); say so loudly.
                self._wake_pending = False
                raise

    def _wake(self) -> None:
        self._wake_pending = False
        if self._wakeup is not None:
            self._wakeup.set()

    # -- consumer ------------------------------------------------------------
    async def get(self) -> tuple[str, Any]:
        wakeup = self._bind()
        while True:
            try:
                return self._items.get_nowait()
            except queue.Empty:
                pass
            wakeup.clear()
            try:  # re-check after clear so a put between the two is not missed
                return self._items.get_nowait()
            except queue.Empty:
                pass
            await wakeup.wait()

    def get_nowait(self) -> tuple[str, Any]:
        """Non-blocking read from any thread; raises queue.Empty."""
        return self._items.get_nowait()

    def qsize(self) -> int:
        return self._items.qsize()

    def empty(self) -> bool:
        return self._items.empty()


def put_event(event_queue: "AsyncEventQueue | None", loop: asyncio.AbstractEventLoop | None,
              name: str, payload: Any) -> None:
    """Put an event from any thread; `None` queue means nobody listens.

    There is no unsafe fallback: the queue's own `put_threadsafe` is the only
    way in.  If the queue is not bound to a loop yet and `loop` is given, bind
    it; if neither, `put_threadsafe` raises instead of silently losing the event.
    """
    if event_queue is None:
        return
    if event_queue.loop is None and loop is not None:
        event_queue.bind(loop)
    event_queue.put_threadsafe(name, payload)
