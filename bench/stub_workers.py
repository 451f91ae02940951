"""Stub provider adapters for the benchmarks, registered in `providers.PROVIDERS`.

They go through the real `ai_client` front door (sessions, comms log, usage)
exactly like the mock provider, but do a controlled amount of "work":

- `WorkAdapter` ("bench_work"): sleeps the number of milliseconds written in
  the ticket as `[work_ms=N]` (0 = return at once).  Sleeping models an
  I/O-bound model call (it releases the GIL like a socket read does).  With
  `[stream_bytes=N]` it also streams N characters in 128-character chunks.
- `LongStreamAdapter` ("bench_stream"): the mock provider, but a Tier 3 answer
  is `[chunks=N]` chunks long (default 250), one every `chunk_delay` seconds
  (default `MMA_MOCK_CHUNK_DELAY`, as for the mock), so a worker streams for
  N * delay seconds.

`register()` adds both to the registry; call it before building an engine.
"""
from __future__ import annotations

import re
import time

import providers
from providers.base import ChatRequest, ChatResponse, Usage, check_cancel
from providers.mock import MockAdapter, _extract_block, _last_user_text

WORK_RE = re.compile(r"\[work_ms=(\d+(?:\.\d+)?)\]")
STREAM_BYTES_RE = re.compile(r"\[stream_bytes=(\d+)\]")
STREAM_CHUNK = 128
CHUNKS_RE = re.compile(r"\[chunks=(\d+)\]")

WORK_PROVIDER = "bench_work"
STREAM_PROVIDER = "bench_stream"


def work_ms_of(text: str) -> float:
    m = WORK_RE.search(text)
    return float(m.group(1)) if m else 0.0


def do_work(ms: float) -> None:
    """The unit of work every scheduler (engine and baselines) runs for a ticket."""
    if ms > 0:
        time.sleep(ms / 1000.0)


class WorkAdapter:
    name = WORK_PROVIDER

    def __init__(self, **_options):
        pass

    def generate(self, request: ChatRequest, on_chunk=None) -> ChatResponse:
        check_cancel(request)
        task = _last_user_text(request)
        do_work(work_ms_of(task))
        m = STREAM_BYTES_RE.search(task)
        if not m:
            return ChatResponse(text="done", usage=Usage(10, 1), stop_reason="end_turn", model=request.model)
        size = int(m.group(1))
        line = "".join(chr(97 + i % 26) for i in range(STREAM_CHUNK - 1)) + "\n"
        text = (line * (size // STREAM_CHUNK + 1))[:size]
        if on_chunk is not None:
            for i in range(0, size, STREAM_CHUNK):
                on_chunk(text[i:i + STREAM_CHUNK])
        return ChatResponse(text=text, usage=Usage(10, size // 4), stop_reason="end_turn", model=request.model)


class LongStreamAdapter(MockAdapter):
    name = STREAM_PROVIDER

    def _tier3(self, request: ChatRequest):
        ticket = _extract_block(_last_user_text(request), "TICKET")
        m = CHUNKS_RE.search(ticket)
        chunks = int(m.group(1)) if m else 250
        words = self.chunk_words * chunks
        return " ".join(f"w{i}" for i in range(words)) + "\n\nDONE"


def register() -> None:
    providers.PROVIDERS[WORK_PROVIDER] = (__name__, "WorkAdapter")
    providers.PROVIDERS[STREAM_PROVIDER] = (__name__, "LongStreamAdapter")
