"""What the SDK-backed adapters (gemini, anthropic) share around one SDK call.

- `stream_items`: iterate an SDK stream so that only failures of the SDK itself are mapped to
  `ProviderError`s; the adapter's own code in the loop body keeps its exceptions.
- `map_transport_failure`: the provider-neutral end of an adapter's error mapping, for a
  failure that is neither an HTTP status error nor a malformed response.
- `OpenSockets` + `cancellable`: how an abort reaches a call blocked inside the SDK (waiting
  for the first byte, or between chunks of a slow stream).  Closing a socket from another
  thread does not wake a thread blocked reading it; shutting it down does, so every socket
  the SDK's HTTP client opens is remembered and shut down on cancel.
"""
from __future__ import annotations

import contextlib
import logging
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from providers.base import (
    BadRequestError,
    CancelledByUser,
    ChatRequest,
    ProviderError,
    ProviderUnavailableError,
    ServerError,
    StreamInterruptedError,
    interrupt_on_cancel,
)
from providers.retry import classify_transport_error

log = logging.getLogger(__name__)

T = TypeVar("T")


def stream_items(stream: Iterable[T], map_error: Callable[[Exception], ProviderError]) -> Iterator[T]:
    """The items of `stream`; an exception while fetching one is raised as `map_error(exc)`."""
    iterator = iter(stream)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # SDK/transport failure mid-stream
            raise map_error(exc) from None
        yield item


def map_transport_failure(exc: BaseException, *, provider: str, display: str, base_url_env: str,
                          redact: Callable[[str], str], started: bool, partial_text: str,
                          connection_error: bool = False) -> ProviderError:
    """A refused or dropped connection, a request the SDK would not build, or anything else.

    `started`: the stream had delivered something, so a failure is an interrupted stream that
    keeps `partial_text`.  `connection_error`: `exc` is the SDK's own connection-error class,
    which counts as transient whatever `classify_transport_error` says.  `redact` removes the
    API key from the text that goes into messages and logs.
    """
    kind = classify_transport_error(exc)
    detail = redact(f"{type(exc).__name__}: {exc}")[:300]
    if kind == "refused":
        return ProviderUnavailableError(f"cannot connect to {display} ({detail})", provider=provider,
                                        hint=f"check the network or {base_url_env}")
    if kind == "transient" or connection_error:
        if started:
            return StreamInterruptedError(f"{display} stream dropped ({detail})", provider=provider,
                                          partial_text=partial_text)
        return ServerError(f"connection to {display} failed ({detail})", provider=provider)
    if isinstance(exc, (TypeError, ValueError)) and not started:
        # raised by the SDK while building the request (e.g. an unsupported field)
        return BadRequestError(f"{display} request rejected by the SDK ({detail})", provider=provider)
    log.warning("unexpected %s SDK failure: %s", display, detail)
    if started:
        return StreamInterruptedError(f"{display} stream failed ({detail})", provider=provider,
                                      partial_text=partial_text)
    return ProviderError(f"{display} call failed ({detail})", provider=provider)


class OpenSockets:
    """The sockets one SDK client's HTTP connections run on, for `shutdown()` on abort.

    Fed through public hooks only: an httpx `request` event hook (`event_hooks()`, given to
    the SDK's client) adds httpcore's `trace` extension to each request, and the trace
    reports every new connection's network stream (`connect_tcp` / `start_tls` complete),
    whose `get_extra_info("socket")` is the socket.  Keep-alive connections were reported
    when they were opened.  One adapter serves one session, so all its sockets are that
    session's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def event_hooks(self) -> dict[str, list[Callable[[Any], None]]]:
        return {"request": [self._on_request]}

    def _on_request(self, request: Any) -> None:
        previous = request.extensions.get("trace")

        def trace(name: str, info: dict) -> None:
            self._on_trace(name, info)
            if previous is not None:
                previous(name, info)
        request.extensions = {**request.extensions, "trace": trace}

    def _on_trace(self, name: str, info: dict) -> None:
        if not name.endswith(("connect_tcp.complete", "start_tls.complete")):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.add(sock)

    def shutdown(self) -> int:
        """Shut down every open socket (a blocked read returns at once); returns how many."""
        with self._lock:
            sockets = list(self._sockets)
        done = 0
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                done += 1
            except OSError as exc:          # already closed, or detached by a TLS upgrade
                log.debug("socket shutdown on cancel: %s", exc)
        log.debug("cancel: shut down %d socket(s)", done)
        return done


@contextlib.contextmanager
def cancellable(request: ChatRequest, sockets: OpenSockets) -> Iterator[None]:
    """Run one SDK call so that a cancel shuts its sockets down, and the failure that
    follows is reported as `CancelledByUser` (not as a retryable network error)."""
    with interrupt_on_cancel(request.cancel_event, sockets.shutdown):
        try:
            yield
        except ProviderError as exc:
            cancelled = request.cancel_event is not None and request.cancel_event.is_set()
            if cancelled and not isinstance(exc, CancelledByUser):
                raise CancelledByUser("cancelled by the user", provider=exc.provider,
                                      partial_text=exc.partial_text) from None
            raise
