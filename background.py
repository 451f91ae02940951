"""Blocking calls for the asyncio loop, on daemon threads: nothing here keeps the process alive.

`loop.run_in_executor` runs on a `ThreadPoolExecutor`, whose threads the interpreter joins
at exit, so one model call that never answered kept `mma-desk run` and the desktop app
from exiting until it ended.  `start(loop, fn, *args)` runs `fn` on a new daemon thread
and returns an asyncio future of its result; the result crosses back with
`loop.call_soon_threadsafe` (and is dropped, with a log line, if the loop has closed by
then: nobody is waiting for it any more).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def start(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any, name: str,
          on_exit: Callable[[], None] | None = None) -> asyncio.Future:
    """Call `fn(*args)` on a daemon thread named `name`; `on_exit()` runs on that thread
    when `fn` has returned or raised, before the future resolves."""
    future: asyncio.Future = loop.create_future()

    def settle(outcome: Callable[[Any], None], value: Any) -> None:
        if not future.done():                    # cancelled by the loop meanwhile
            outcome(value)

    def hand_over(outcome: Callable[[Any], None], value: Any) -> None:
        try:
            loop.call_soon_threadsafe(settle, outcome, value)
        except RuntimeError:                     # the loop is closed: the run is over
            log.info("%s finished after its event loop closed; result dropped", name)

    def target() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:             # handed to the awaiting coroutine, not lost
            if on_exit is not None:
                on_exit()
            hand_over(future.set_exception, exc)
            return
        if on_exit is not None:
            on_exit()
        hand_over(future.set_result, result)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future
