"""The Discussion panel's chat worker: one `Session.send` at a time, off the GUI thread.

`ChatWorker` owns a 1-thread executor whose thread has the chat `Session`
bound (`ai_client.bind_session`), so module-level `ai_client` calls made while
sending act on the chat's own session, never a worker's.  The worker thread
only puts `(kind, request_id, data)` tuples into a `queue.SimpleQueue`:

    ("chunk", id, text)                                  a streamed piece of the reply
    ("done",  id, {"text", "input_tokens", "output_tokens"})
    ("error", id, {"message", "hint", "partial"})        message and hint already redacted
    ("usage", 0,  {"model", "input_tokens", "output_tokens"})   what one provider response billed
                                                         (every response, even of a failed or
                                                         cancelled send: the chat is billed too)

`ContextState.poll()` drains them on the GUI thread (`drain()`).
"""
from __future__ import annotations

import concurrent.futures
import logging
import queue
from collections.abc import Callable, Iterator
from typing import Any

import ai_client
from providers.base import ProviderError, Usage
from providers.credentials import redact

log = logging.getLogger(__name__)

CHAT_SYSTEM_PROMPT = (
    "You are the assistant inside MMA Desk, a programming cockpit. The developer curated the "
    "context above: files (some as skeletons, curated views or outlines), screenshots and the "
    "discussion so far. Answer the developer's latest message; name file paths when you refer "
    "to code.")
CLOSE_TIMEOUT_S = 5.0


class ChatWorker:
    def __init__(self, session: ai_client.Session):
        self.session = session
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        session.on_usage = self._booked
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._future: concurrent.futures.Future | None = None

    def start(self, request_id: int, markdown: str, text: str, images: list[dict], base_dir: str,
              approve_tool: Callable[..., dict] | None = None) -> None:
        """Send on the worker thread (GUI thread call; one request at a time).

        With `approve_tool` the model gets the project's tools (built-in and MCP); a call that
        needs approval waits for `approve_tool(name, args, description, cancel_event)`."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="chat-send",
                initializer=ai_client.bind_session, initargs=(self.session,))
        self.session.cancel_event.clear()
        self._future = self._executor.submit(self._run, request_id, markdown, text, images, base_dir,
                                             approve_tool)

    def cancel(self) -> None:
        """Ask the provider to stop streaming (the reply then ends with what arrived)."""
        self.session.cancel_event.set()

    def _booked(self, model: str, usage: Usage) -> None:
        self._inbox.put(("usage", 0, {"model": model, "input_tokens": usage.input_tokens,
                                      "output_tokens": usage.output_tokens, "cache": usage.cache_fields()}))

    def drain(self, max_events: int) -> Iterator[tuple[str, int, Any]]:
        """Up to `max_events` results, oldest first; the data is a str ("chunk") or a dict."""
        for _ in range(max_events):
            try:
                yield self._inbox.get_nowait()
            except queue.Empty:
                return

    def _run(self, request_id: int, markdown: str, text: str, images: list[dict], base_dir: str,
             approve_tool: Callable[..., dict] | None) -> None:
        put = self._inbox.put
        cancel_event = self.session.cancel_event

        def ask(name: str, args: dict, description: dict) -> dict:
            assert approve_tool is not None
            return approve_tool(name, args, description, cancel_event)

        try:
            result = self.session.send(
                markdown, text, base_dir, system_prompt=CHAT_SYSTEM_PROMPT,
                stream_callback=lambda chunk: put(("chunk", request_id, chunk)),
                images=images or None, keep_history=False, tools=approve_tool is not None,
                pre_tool_callback=ask if approve_tool is not None else None)
        except ProviderError as exc:
            put(("error", request_id, {"message": redact(f"{exc.provider or self.session.provider}: {exc}"),
                                       "hint": redact(exc.hint or ""), "partial": exc.partial_text}))
        except Exception as exc:  # a bug must reach the user, not vanish in the worker thread
            log.exception("chat send failed")
            put(("error", request_id, {"message": redact(f"{type(exc).__name__}: {exc}"),
                                       "hint": "this is a bug; the full traceback is in the log",
                                       "partial": ""}))
        else:
            put(("done", request_id, {"text": result.text, "input_tokens": result.usage.input_tokens,
                                      "output_tokens": result.usage.output_tokens}))

    def close(self) -> None:
        """Cancel a send in flight and wait for it (bounded); the worker thread ends."""
        self.cancel()
        if self._executor is None:
            return
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None
        future, self._future = self._future, None
        if future is not None:
            try:
                future.result(timeout=CLOSE_TIMEOUT_S)
            except concurrent.futures.TimeoutError:
                log.warning("the chat request did not stop within %.0f s; leaving it behind", CLOSE_TIMEOUT_S)
            except concurrent.futures.CancelledError:
                log.debug("the chat request had not started; cancelled")
