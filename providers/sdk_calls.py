"""What the SDK-backed adapters (gemini, anthropic) share around one SDK call.

- `stream_items`: iterate an SDK stream so that only failures of the SDK itself are mapped to
  `ProviderError`s; the adapter's own code in the loop body keeps its exceptions.
- `map_transport_failure`: the provider-neutral end of an adapter's error mapping, for a
  failure that is neither an HTTP status error nor a malformed response.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from providers.base import BadRequestError, ProviderError, ProviderUnavailableError, ServerError, StreamInterruptedError
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
