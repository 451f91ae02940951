"""Bounded retries with exponential backoff and jitter for provider calls.

Only errors whose `retryable` is true are retried (RateLimitError, ServerError,
StreamInterruptedError; see providers/base.py).  The SDKs' own retries are turned
off in the adapters so this is the single retry layer.

Delay before retry number `n` (n = 1 after the first failure):
    base   = min(max_delay, base_delay * 2 ** (n - 1))
    delay  = base * uniform(1 - jitter, 1 + jitter), capped at max_delay
    if the error carries retry_after: delay = max(delay, min(retry_after, max_delay))
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from providers.base import CancelledByUser, ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4      # total attempts, including the first
    base_delay: float = 0.5    # seconds before the first retry (before jitter)
    max_delay: float = 20.0    # hard cap on any single wait
    jitter: float = 0.25       # +/- fraction applied to the backoff delay

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter must be within [0, 1]")

    def backoff(self, retry_number: int) -> float:
        """Un-jittered delay before retry `retry_number` (1-based)."""
        exponent = min(max(retry_number - 1, 0), 60)
        return min(self.max_delay, self.base_delay * (2 ** exponent))

    def delay_for(self, retry_number: int, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
        base = self.backoff(retry_number)
        factor = 1.0
        if self.jitter:
            factor = (rng or random).uniform(1.0 - self.jitter, 1.0 + self.jitter)
        delay = min(self.max_delay, base * factor)
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(float(retry_after), self.max_delay))
        return max(0.0, delay)


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy | None = None, *,
                      sleep: Callable[[float], None] = time.sleep,
                      on_retry: Callable[[int, ProviderError, float], None] | None = None,
                      cancel_event: threading.Event | None = None,
                      rng: random.Random | None = None) -> T:
    """Call `fn()` until it succeeds, a non-retryable error occurs, or attempts run out.

    - `on_retry(attempt, error, delay)` is called before each wait (`attempt` is the
      1-based number of the attempt that just failed).
    - With `cancel_event`, waits use `cancel_event.wait(delay)` (so `sleep` is not used)
      and a set event raises `CancelledByUser` instead of retrying.
    - After the last attempt the last error is re-raised unchanged.
    """
    policy = policy or RetryPolicy()
    attempt = 0
    while True:
        attempt += 1
        if cancel_event is not None and cancel_event.is_set():
            raise CancelledByUser("cancelled by the user")
        try:
            return fn()
        except ProviderError as error:
            if not error.retryable:
                raise
            if attempt >= policy.max_attempts:
                log.warning("giving up after %d attempt(s): %s: %s", attempt,
                            type(error).__name__, _safe(error))
                raise
            delay = policy.delay_for(attempt, error.retry_after, rng)
            log.info("attempt %d failed (%s: %s); retrying in %.2fs", attempt,
                     type(error).__name__, _safe(error), delay)
            if on_retry is not None:
                on_retry(attempt, error, delay)
            if cancel_event is not None:
                if cancel_event.wait(delay):
                    raise CancelledByUser("cancelled by the user while waiting to retry") from error
            else:
                sleep(delay)


def _safe(error: BaseException) -> str:
    from providers.credentials import redact
    return redact(str(error))


def parse_retry_after(value: object) -> float | None:
    """Seconds from a Retry-After header value (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        from email.utils import parsedate_to_datetime
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            log.debug("unparseable Retry-After value %r", text[:40])
            return None
        if when is None:
            return None
        import datetime as _dt
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.UTC)
        seconds = (when - _dt.datetime.now(_dt.UTC)).total_seconds()
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0
    return seconds


_REFUSED_NAMES = {"ConnectError", "ConnectionRefusedError", "gaierror", "UnsupportedProtocol"}
_TRANSIENT_NAMES = {"ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException",
                    "RemoteProtocolError", "ReadError", "WriteError", "NetworkError",
                    "ConnectionResetError", "ConnectionAbortedError", "BrokenPipeError",
                    "IncompleteRead", "TimeoutError", "socket.timeout"}


def classify_transport_error(exc: BaseException) -> str | None:
    """"refused" (nothing listening / DNS: not worth retrying), "transient" (reset, timeout,
    dropped mid-response: worth retrying) or None (not a transport error).

    Walks the exception and its causes, matching httpx/httpx2/stdlib class names so the
    SDKs' HTTP stack need not be imported here.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for cls in type(current).__mro__:
            if cls.__name__ in _TRANSIENT_NAMES:
                return "transient"
            if cls.__name__ in _REFUSED_NAMES:
                # httpx wraps resets during connect in ConnectError too: look at the errno text
                text = str(current).lower()
                if "reset" in text or "timed out" in text:
                    return "transient"
                return "refused"
        current = current.__cause__ or current.__context__
    return None
