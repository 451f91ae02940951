"""Cross-thread event hand-off between workers, the engine loop and the GUI, and the events themselves.

Events are frozen dataclasses, one per kind (`StreamChunk`, `Response`, `StateUpdate`, ...);
consumers dispatch on their type.  Each has a wire name (`event.name`: `"mma_stream"`,
`"response"`, ...) under which it travels through the queue as `(name, event)`, and it
reads like the plain dict it replaces (`event["text"]`, `event.get("hint")`, `dict(event)`),
so scripts and the hook API see the same shapes as before.  Anything that arrives as a
plain dict (from a test, a script or an older caller) becomes a typed event in one place,
`from_wire()`, which says what is wrong with a malformed payload.

`AsyncEventQueue` keeps its items in a `queue.SimpleQueue` (thread-safe, FIFO, never
drops).  Producers on any thread append to it; a consumer on the owning asyncio loop
awaits `get()`.  A producer that is not on the loop wakes the consumer with
`loop.call_soon_threadsafe`, at most one wake-up pending at a time, so a burst of a
million events costs one self-pipe write per drain, not one per event.  Per-producer
order is kept because every producer appends to the same FIFO.  There is no other way
in: `asyncio.Queue` is not thread-safe, and an event parked where no loop will ever
read it is an error (`put_threadsafe` raises), never a silent drop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import queue
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Wire names: the first element of every queued `(name, event)` pair.
RESPONSE = "response"
MMA_STREAM = "mma_stream"
MMA_STATE_UPDATE = "mma_state_update"
MMA_SPAWN_APPROVAL = "mma_spawn_approval"
MMA_STEP_APPROVAL = "mma_step_approval"
MMA_APPROVAL_CLOSED = "mma_approval_closed"
MMA_ERROR = "mma_error"
MMA_TRACKS = "mma_tracks"
MMA_LOG = "mma_log"
COMMS = "comms"


class Event(Mapping[str, Any]):
    """Base of every event: a frozen dataclass that also reads as a read-only mapping.

    Fields listed in `omitted_when_none` are left out of the mapping view while they
    are None, as the optional keys of the plain dicts were.
    """
    name: ClassVar[str] = ""
    omitted_when_none: ClassVar[frozenset[str]] = frozenset()

    def _keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if not (f.name in self.omitted_when_none and getattr(self, f.name) is None)]

    def __getitem__(self, key: str) -> Any:
        if key in self._keys():
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


@dataclass(frozen=True, eq=False)
class StreamChunk(Event):
    """One streamed piece of a model's reply."""
    name: ClassVar[str] = MMA_STREAM
    stream_id: str
    text: str


@dataclass(frozen=True, eq=False)
class Response(Event):
    """A stream's final text.  `status`: done, blocked, error, rejected, timed_out, aborted."""
    name: ClassVar[str] = RESPONSE
    omitted_when_none: ClassVar[frozenset[str]] = frozenset({"ticket_id"})
    text: str
    stream_id: str
    status: str = "done"
    ticket_id: str | None = None


@dataclass(frozen=True, eq=False)
class StateUpdate(Event):
    """The pipeline's state.  `track`, `tickets` and `critical_path` are None when unchanged
    (planning updates carry only the status); `active_tier` None means no tier is active."""
    name: ClassVar[str] = MMA_STATE_UPDATE
    omitted_when_none: ClassVar[frozenset[str]] = frozenset({"tier_usage", "track", "tickets",
                                                             "critical_path"})
    status: str
    active_tier: str | None = None
    tier_usage: dict[str, dict] | None = None
    track: dict | None = None
    tickets: list[dict] | None = None
    critical_path: list[str] | None = None


@dataclass(frozen=True, eq=False)
class ApprovalRequest(Event):
    """A worker or the engine waits for the user.  Whoever answers resolves `future` with
    `{"approved": bool, **edits}` (a spawn may edit `prompt` / `context_md`, a tool its `args`)."""
    omitted_when_none: ClassVar[frozenset[str]] = frozenset(
        {"role", "prompt", "context_md", "model", "tool", "args", "description"})
    request_id: str
    ticket_id: str
    kind: str                                   # spawn | step | tool
    future: concurrent.futures.Future = field(repr=False)
    role: str | None = None
    prompt: str | None = None
    context_md: str | None = None
    model: str | None = None
    tool: str | None = None
    args: dict | None = None
    description: Any = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return MMA_SPAWN_APPROVAL if self.kind == "spawn" else MMA_STEP_APPROVAL


@dataclass(frozen=True, eq=False)
class ApprovalClosed(Event):
    """A request ended without the GUI's answer: `outcome` is timeout or cancelled."""
    name: ClassVar[str] = MMA_APPROVAL_CLOSED
    request_id: str
    outcome: str


@dataclass(frozen=True, eq=False)
class ErrorEvent(Event):
    """Something failed; `hint` says what the user can do."""
    name: ClassVar[str] = MMA_ERROR
    omitted_when_none: ClassVar[frozenset[str]] = frozenset({"ticket_id", "stream_id", "raw"})
    message: str
    hint: str = ""
    ticket_id: str | None = None
    stream_id: str | None = None
    raw: str | None = None                      # a model reply that could not be used


@dataclass(frozen=True, eq=False)
class TracksPlanned(Event):
    """Tier 1's proposed tracks (track dicts without tickets)."""
    name: ClassVar[str] = MMA_TRACKS
    tracks: list[dict]


@dataclass(frozen=True, eq=False)
class LogLine(Event):
    name: ClassVar[str] = MMA_LOG
    message: str


@dataclass(frozen=True, eq=False)
class CommsEntry(Event):
    """One comms log entry (see `ai_client.Session.log`)."""
    name: ClassVar[str] = COMMS
    entry: dict


_BY_NAME: dict[str, type[Event]] = {cls.name: cls for cls in (
    StreamChunk, Response, StateUpdate, ApprovalClosed, ErrorEvent, TracksPlanned, LogLine)}


_SHOWN_AS_TEXT = ("text", "message")
_IDENTIFIERS = ("stream_id", "status", "request_id")


class EventPayloadError(ValueError):
    """A plain-dict payload that does not fit its event kind."""


def from_wire(name: str, payload: Any) -> Event:
    """The typed event for a `(name, payload)` pair; a typed payload is returned as it is.

    Raises `EventPayloadError` naming the event and the problem (unknown name, not an
    object, a missing or mistyped field).
    """
    if isinstance(payload, Event):
        return payload
    if not isinstance(payload, Mapping):
        raise EventPayloadError(f"event {name!r} carries a {type(payload).__name__}, expected an object")
    if name == COMMS:
        return CommsEntry(dict(payload))
    if name in (MMA_SPAWN_APPROVAL, MMA_STEP_APPROVAL):
        cls: type[Event] = ApprovalRequest
    elif name in _BY_NAME:
        cls = _BY_NAME[name]
    else:
        raise EventPayloadError(f"unknown event {name!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in payload.items() if k in known}
    missing = [f.name for f in known.values()
               if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if name in (MMA_SPAWN_APPROVAL, MMA_STEP_APPROVAL):
        kwargs.setdefault("kind", "spawn" if name == MMA_SPAWN_APPROVAL else "step")
        missing = [m for m in missing if m != "kind"]
    if missing:
        raise EventPayloadError(f"event {name!r} is missing {', '.join(missing)}")
    for key in _SHOWN_AS_TEXT:                # free text: anything printable will do
        if kwargs.get(key) is not None and not isinstance(kwargs[key], str):
            kwargs[key] = str(kwargs[key])
    for key in _IDENTIFIERS:                  # keys the GUI matches on: must already be strings
        if kwargs.get(key) is not None and not isinstance(kwargs[key], str):
            raise EventPayloadError(f"event {name!r}: {key} must be a string, got {type(kwargs[key]).__name__}")
    if "future" in kwargs and not isinstance(kwargs["future"], concurrent.futures.Future):
        raise EventPayloadError(f"event {name!r}: no future to answer it with")
    return cls(**kwargs)


def emit(event_queue: AsyncEventQueue | None, event: Event) -> None:
    """Put `event` from any thread; `None` means nobody listens (a standalone call)."""
    if event_queue is not None:
        event_queue.put_threadsafe(event.name, event)


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

        Raises RuntimeError if no loop is bound yet: an event parked where no
        consumer will ever wake for it would be lost without a word.
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


def put_event(event_queue: AsyncEventQueue | None, loop: asyncio.AbstractEventLoop | None,
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
