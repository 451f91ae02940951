"""Adapters for tests: scripted behaviour behind the real ai_client front door."""
from __future__ import annotations

import threading

from providers.base import ChatRequest, ChatResponse, ServerError, Usage, check_cancel

# Shared between adapter instances of one test (each worker makes its own adapter).
BARRIER: dict[str, threading.Barrier] = {}
GATES: dict[str, threading.Event] = {}


def _ticket_line(request: ChatRequest) -> str:
    user = [m for m in request.messages if m.get("role") == "user"][-1]["content"]
    return user.split("\n")[1] if "\n" in user else user


class BarrierAdapter:
    """Every Tier 3 call waits at BARRIER['b'] before answering: proves real concurrency."""
    name = "barrier"

    def __init__(self, **_):
        pass

    def generate(self, request: ChatRequest, on_chunk=None) -> ChatResponse:
        BARRIER["b"].wait()          # BrokenBarrierError after its timeout if calls are serialised
        return ChatResponse(text="done " + _ticket_line(request), usage=Usage(10, 3), model=request.model)


class RaisingAdapter:
    """Raises a non-provider exception: a bug in the worker path must not be silent."""
    name = "raising"

    def __init__(self, **_):
        pass

    def generate(self, request: ChatRequest, on_chunk=None) -> ChatResponse:
        raise RuntimeError("adapter exploded")


class FlakyServerAdapter:
    """Always a 500: exercises error surfacing after retries."""
    name = "flaky"

    def __init__(self, **_):
        pass

    def generate(self, request: ChatRequest, on_chunk=None) -> ChatResponse:
        raise ServerError("provider answered 500", provider="flaky", status=500)


class GatedStreamAdapter:
    """Streams one chunk, then waits on GATES['go'] checking for cancel: abort mid-stream."""
    name = "gated"

    def __init__(self, **_):
        pass

    def generate(self, request: ChatRequest, on_chunk=None) -> ChatResponse:
        if on_chunk:
            on_chunk("started ")
        while not GATES["go"].wait(0.01):
            check_cancel(request)
        return ChatResponse(text="started finished", usage=Usage(4, 2), model=request.model)


class RetryOnceAdapter:
    """First call streams a partial answer then fails with a 429; the retry streams it all."""
    name = "retry_once"
    calls = 0

    def __init__(self, **_):
        pass

    def generate(self, request: ChatRequest, on_chunk=None) -> ChatResponse:
        from providers.base import RateLimitError
        RetryOnceAdapter.calls += 1
        pieces = ["Hello ", "there ", "friend."]
        if RetryOnceAdapter.calls == 1:
            if on_chunk:
                on_chunk(pieces[0])
            raise RateLimitError("slow down", provider="retry_once", status=429, retry_after=0.0)
        for p in pieces:
            if on_chunk:
                on_chunk(p)
        return ChatResponse(text="".join(pieces), usage=Usage(5, 3), model=request.model)
