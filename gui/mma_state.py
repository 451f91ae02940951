"""What the MMA dashboard shows, as plain Python: no ImGui, no threads, unit-testable.

`MMAState` is owned by the GUI thread.  Events from the engine arrive through
`App.process_pending_gui_tasks()` and land here via `apply(name, payload)`;
panels only read these fields and call the methods (`approve`, ...).  Every
event name in `events.py` has a handler; an unknown name is logged and
counted, never silently dropped.

Streams (`mma_streams`): `mma_stream` chunks are
appended to their `stream_id`; a `response` event with status `done` sets the
stream's final text (`mma_streams[stream_id] = text`).  Chunks are kept as a
list and joined lazily (once per change, not per frame), and each stream is
capped (default 1 MB) keeping the tail, with a marker saying how much was cut.

Approvals are keyed by `request_id` only: two workers asking at once can
never be confused.  Answering resolves the request's
`concurrent.futures.Future` (thread-safe) exactly once.
"""
from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import events
from providers.credentials import redact

log = logging.getLogger(__name__)

DEFAULT_STREAM_CAP = 1_000_000          # characters kept per stream
MAX_ERRORS = 200
MAX_LOG_LINES = 2000
MAX_COMMS = 2000
BUSY_AFTER_STREAM_S = 1.0               # a stream chunk keeps the app "busy" this long
# "starting": the engine for an accepted track exists but run() has not begun.
PIPELINE_ACTIVE_STATUSES = ("planning", "starting", "running")
# An error about something the user just tried (source "gui": an empty epic, a refused
# click) leaves the error bar by itself after this long; engine errors stay until dismissed
# or until the next plan/track starts.
GUI_ERROR_TTL_S = 20.0

TIER_STREAM_ORDER = ("Tier 1", "Tier 2 (Tech Lead)", "Tier 3 (Worker)", "Tier 4 (QA)")


def stream_sort_key(stream_id: str) -> tuple[int, str]:
    """Tier 1, Tier 2, Tier 3 workers (by ticket), Tier 4, then anything else."""
    for i, prefix in enumerate(TIER_STREAM_ORDER):
        if stream_id.startswith(prefix):
            return i, stream_id
    return len(TIER_STREAM_ORDER), stream_id


class StreamStore(MutableMapping):
    """`stream_id -> text`, with O(1) appends and a per-stream size cap.

    `version[sid]` changes on every change; `generation[sid]` only when the
    text is replaced or truncated (so a view can extend its line cache on a
    pure append and rebuild it otherwise).
    """

    def __init__(self, cap_chars: int = DEFAULT_STREAM_CAP):
        if cap_chars < 16:
            raise ValueError("cap_chars must be at least 16")
        self.cap_chars = cap_chars
        self._chunks: dict[str, list[str]] = {}
        self._length: dict[str, int] = {}
        self._joined: dict[str, str] = {}
        self.dropped: dict[str, int] = {}         # characters cut from the front
        self.version: dict[str, int] = {}
        self.generation: dict[str, int] = {}
        self.status: dict[str, str] = {}          # last `response` status per stream

    # -- writes ---------------------------------------------------------------
    def _touch(self, sid: str, replaced: bool) -> None:
        self.version[sid] = self.version.get(sid, 0) + 1
        if replaced or sid not in self.generation:
            self.generation[sid] = self.generation.get(sid, 0) + 1

    def append(self, sid: str, text: str) -> None:
        if not text:
            if sid not in self._chunks:          # an empty first chunk still opens the stream
                self._chunks[sid], self._length[sid] = [], 0
                self._touch(sid, True)
            return
        chunks = self._chunks.setdefault(sid, [])
        chunks.append(text)
        self._length[sid] = self._length.get(sid, 0) + len(text)
        self._joined.pop(sid, None)
        replaced = self._enforce_cap(sid)
        self._touch(sid, replaced)

    def __setitem__(self, sid: str, text: str) -> None:
        text = "" if text is None else str(text)
        self._chunks[sid] = [text] if text else []
        self._length[sid] = len(text)
        self._joined.pop(sid, None)
        self.dropped.pop(sid, None)
        self._enforce_cap(sid)
        self._touch(sid, True)

    def _enforce_cap(self, sid: str) -> bool:
        if self._length[sid] <= self.cap_chars:
            return False
        body = "".join(self._chunks[sid])
        keep = (self.cap_chars * 3) // 4         # trim to 3/4 so the next cut is far away
        cut = len(body) - keep
        self.dropped[sid] = self.dropped.get(sid, 0) + cut
        body = body[cut:]
        self._chunks[sid] = [body]
        self._length[sid] = len(body)
        self._joined.pop(sid, None)
        log.info("stream %r over %d chars: dropped the oldest %d", sid, self.cap_chars, cut)
        return True

    def __delitem__(self, sid: str) -> None:
        del self._chunks[sid]
        for d in (self._length, self._joined, self.dropped, self.version, self.generation, self.status):
            d.pop(sid, None)

    def clear(self) -> None:
        for sid in list(self._chunks):
            del self[sid]

    # -- reads ----------------------------------------------------------------
    def __getitem__(self, sid: str) -> str:
        chunks = self._chunks[sid]
        joined = self._joined.get(sid)
        if joined is None:
            joined = "".join(chunks)
            if len(chunks) > 1:                   # collapse: the next join starts from one piece
                self._chunks[sid] = [joined]
            dropped = self.dropped.get(sid)
            if dropped:
                joined = f"[... {dropped} earlier characters truncated ...]\n" + joined
            self._joined[sid] = joined
        return joined

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._chunks))

    def __len__(self) -> int:
        return len(self._chunks)

    def __contains__(self, sid: object) -> bool:
        return sid in self._chunks

    def length(self, sid: str) -> int:
        return self._length.get(sid, 0)

    def truncated(self, sid: str) -> bool:
        return bool(self.dropped.get(sid))

    def ordered_ids(self) -> list[str]:
        return sorted(self._chunks, key=stream_sort_key)

    def to_dict(self) -> dict[str, str]:
        return {sid: self[sid] for sid in self._chunks}


@dataclass
class StreamGroup:
    """The streams of an earlier track, kept read-only in Tier Streams' track picker."""
    label: str
    texts: dict[str, str]
    status: dict[str, str]


@dataclass
class Approval:
    """One open request: a spawn, a step or a tool call, answered through `future`."""
    request_id: str
    kind: str                                  # spawn | step | tool
    ticket_id: str
    payload: dict                              # the event payload minus the future
    future: concurrent.futures.Future | None
    created_at: float = field(default_factory=time.time)
    prompt: str = ""                           # editable (spawn)
    context_md: str = ""                       # editable (spawn)
    args_text: str = ""                        # editable JSON (tool)

    def to_dict(self) -> dict:
        return {"request_id": self.request_id, "kind": self.kind, "ticket_id": self.ticket_id,
                "payload": _jsonable(self.payload), "created_at": self.created_at}


def _jsonable(value: Any) -> Any:
    """A JSON-safe copy (futures and other objects become their repr)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if not isinstance(v, concurrent.futures.Future)}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


APPROVAL_EDITS = ("prompt", "context_md", "args")


class MMAState:
    """The MMA dashboard's state; GUI thread only."""

    def __init__(self, stream_cap: int = DEFAULT_STREAM_CAP):
        self.mma_streams = StreamStore(stream_cap)
        self.mma_tier_usage: dict[str, dict] = {}
        self.mma_status = "idle"
        self.active_tier: str | None = None
        self.active_track: dict | None = None
        self.active_tickets: list[dict] = []
        self.critical_path: list[str] = []
        self.tracks: list[dict] = []               # proposed by Tier 1
        self.accepted_track_ids: set[str] = set()
        self.pending_approvals: dict[str, Approval] = {}
        self.approval_history: collections.deque = collections.deque(maxlen=200)
        self.errors: list[dict] = []
        self.errors_seen = 0                       # errors before this index are dismissed
        self.logs: collections.deque = collections.deque(maxlen=MAX_LOG_LINES)
        self.comms: collections.deque = collections.deque(maxlen=MAX_COMMS)
        self.auto_approve = False
        self.events_applied = 0
        self.event_counts: collections.Counter = collections.Counter()
        self.unknown_events: collections.Counter = collections.Counter()
        self.last_stream_at = 0.0
        self.version = 0                           # bumped on every change (snapshot cache key)
        self.stream_groups: list[StreamGroup] = []  # earlier tracks' streams, oldest first
        self.stream_group_label = ""               # the track the live streams belong to
        self.notice = ""                           # an info line on the dashboard (not an error)
        # ticket id -> [(approval asked, answered or None)]: the Time column shows waiting apart
        self.approval_waits: dict[str, list[tuple[float, float | None]]] = {}
        self._handlers: dict[type[events.Event], Callable[[Any], None]] = {
            events.Response: self._on_response,
            events.StreamChunk: self._on_stream,
            events.StateUpdate: self._on_state_update,
            events.ApprovalRequest: self._on_approval,
            events.ApprovalClosed: self._on_approval_closed,
            events.ErrorEvent: self._on_error,
            events.TracksPlanned: self._on_tracks,
            events.LogLine: self._on_log,
            events.CommsEntry: self._on_comms,
        }

    # -- the one way in ------------------------------------------------------------
    def apply(self, name: str, payload: Any) -> bool:
        """Apply one engine event (typed, or a plain dict under its wire name).

        Returns False (and logs) for an unknown name or a payload that does not fit it.
        """
        try:
            event = events.from_wire(name, payload)
        except events.EventPayloadError as exc:
            self.unknown_events[name] += 1
            log.warning("GUI event ignored: %s", exc)
            return False
        self._handlers[type(event)](event)
        self.events_applied += 1
        self.event_counts[name] += 1
        self.version += 1
        return True

    # -- handlers ---------------------------------------------------------------------
    def _on_stream(self, e: events.StreamChunk) -> None:
        self.mma_streams.append(e.stream_id or "unknown", e.text)
        self.last_stream_at = time.monotonic()

    def _on_response(self, e: events.Response) -> None:
        sid = e.stream_id or "unknown"
        status = e.status or "done"
        text = e.text or ""
        if status == "done" or text:
            self.mma_streams[sid] = text            # the final text replaces the streamed chunks
        if status not in ("done", "blocked", "rejected"):
            self.mma_streams.append(sid, f"\n\n[{status}]")
        self.mma_streams.status[sid] = status
        self.last_stream_at = time.monotonic()

    def _on_state_update(self, e: events.StateUpdate) -> None:
        self.mma_status = e.status
        self.active_tier = e.active_tier
        if e.tier_usage is not None:
            merged = dict(self.mma_tier_usage)
            for tier, bucket in e.tier_usage.items():
                merged[tier] = dict(bucket)
            self.mma_tier_usage = merged
        if e.track is not None:
            self.active_track = dict(e.track)
        if e.tickets is not None:
            self.active_tickets = [dict(t) for t in e.tickets]
        if e.critical_path is not None:
            self.critical_path = [str(t) for t in e.critical_path]

    def set_chat_usage(self, bucket: dict) -> None:
        """The Discussion panel's chat billing (GUI thread): the "Chat" row of Usage & Cost."""
        self.mma_tier_usage = {**self.mma_tier_usage, "Chat": bucket}
        self.version += 1

    def _on_tracks(self, e: events.TracksPlanned) -> None:
        self.tracks = [dict(t) for t in e.tracks]

    def _on_approval(self, e: events.ApprovalRequest) -> None:
        payload = {k: v for k, v in e.items() if k != "future"}
        approval = Approval(
            request_id=e.request_id, kind=e.kind, ticket_id=e.ticket_id, payload=payload, future=e.future,
            prompt=e.prompt or "", context_md=e.context_md or "",
            args_text=json.dumps(e.args, indent=2, ensure_ascii=False) if e.args is not None else "")
        if e.future.done():
            log.info("approval %s was already answered or cancelled before it reached the GUI", e.request_id)
            return
        self.pending_approvals[e.request_id] = approval
        self.approval_waits.setdefault(approval.ticket_id, []).append((approval.created_at, None))
        if self.auto_approve:
            self.approve(e.request_id, True)

    def _on_approval_closed(self, e: events.ApprovalClosed) -> None:
        approval = self.pending_approvals.pop(e.request_id, None)
        if approval is not None:
            self._waited(approval)
            self.approval_history.append({"request_id": e.request_id, "kind": approval.kind,
                                          "ticket_id": approval.ticket_id, "outcome": e.outcome})
            log.info("approval %s closed elsewhere (%s)", e.request_id, e.outcome)
            if e.outcome == "timeout":
                self.add_error(f"approval {e.request_id} for ticket {approval.ticket_id} timed out",
                               "answer approvals sooner, or raise budgets.approval_timeout_s",
                               ticket_id=approval.ticket_id)

    def _on_error(self, e: events.ErrorEvent) -> None:
        self.add_error(e.message or "unknown error", e.hint, ticket_id=e.ticket_id, stream_id=e.stream_id,
                       source="engine")

    def _on_log(self, e: events.LogLine) -> None:
        self.logs.append(e.message)

    def _on_comms(self, e: events.CommsEntry) -> None:
        self.comms.append(e.entry)

    # -- errors ----------------------------------------------------------------------------
    def add_error(self, message: str, hint: str = "", *, ticket_id: Any = None, stream_id: Any = None,
                  source: str = "gui") -> dict:
        """Record an error for the error bar (redacted: no key ever reaches the screen)."""
        entry = {"ts": time.time(), "message": redact(message), "hint": redact(hint), "source": source}
        if ticket_id:
            entry["ticket_id"] = str(ticket_id)
        if stream_id:
            entry["stream_id"] = str(stream_id)
        self.errors.append(entry)
        if len(self.errors) > MAX_ERRORS:
            cut = len(self.errors) - MAX_ERRORS
            del self.errors[:cut]
            self.errors_seen = max(0, self.errors_seen - cut)
        self.version += 1
        return entry

    @property
    def latest_error(self) -> dict | None:
        """The newest error not dismissed and not expired (what the error bar shows)."""
        now = time.time()
        for entry in reversed(self.errors[self.errors_seen:]):
            if entry["source"] != "gui" or now - entry["ts"] < GUI_ERROR_TTL_S:
                return entry
        return None

    def dismiss_errors(self) -> None:
        self.errors_seen = len(self.errors)
        self.version += 1

    # -- runs, tracks and projects ------------------------------------------------------------
    def new_run(self, what: str) -> None:
        """A plan or a track starts: the errors of earlier runs leave the error bar (they stay
        in `errors` and the log), and the last run's notice goes."""
        if self.errors_seen < len(self.errors):
            log.info("%s starts: dismissing %d earlier error(s)", what, len(self.errors) - self.errors_seen)
        self.dismiss_errors()
        self.notice = ""

    def start_track(self, track_id: str, title: str) -> None:
        """A track is accepted or resumed: the previous track's streams move to their own group
        (ticket ids repeat across tracks, so a new T1 must not land in the old T1's tab); the
        Tier 1 plan stays with the live streams."""
        self.new_run("a track")
        old = [sid for sid in self.mma_streams if not sid.startswith("Tier 1")]
        if old:
            label = self.stream_group_label or "earlier track"
            self.stream_groups.append(StreamGroup(label, {sid: self.mma_streams[sid] for sid in old},
                                                  {sid: self.mma_streams.status.get(sid, "") for sid in old}))
            for sid in old:
                del self.mma_streams[sid]
        self.stream_group_label = title
        self.active_track = {"id": track_id, "title": title}
        self.active_tickets, self.critical_path = [], []
        self.approval_waits.clear()
        self.version += 1

    def reset_view(self) -> None:
        """Another project was opened: nothing of the old one stays on screen."""
        self.mma_streams.clear()
        self.stream_groups, self.stream_group_label = [], ""
        self.mma_tier_usage = {}
        self.mma_status, self.active_tier = "idle", None
        self.active_track, self.active_tickets, self.critical_path = None, [], []
        self.tracks = []
        self.accepted_track_ids.clear()
        self.pending_approvals.clear()
        self.approval_waits.clear()
        self.dismiss_errors()
        self.notice = ""
        self.version += 1

    def _waited(self, approval: Approval) -> None:
        """Close the approval's waiting interval on its ticket."""
        waits = self.approval_waits.get(approval.ticket_id)
        if not waits:
            return
        for i in range(len(waits) - 1, -1, -1):
            start, end = waits[i]
            if end is None and start == approval.created_at:
                waits[i] = (start, time.time())
                return

    # -- approvals ----------------------------------------------------------------------------
    def approve(self, request_id: str, approved: bool = True, **edits: Any) -> bool:
        """Answer one request.  Edits: `prompt`, `context_md` (spawn), `args` (tool; dict).

        Without edits the request's edited fields (what the Approvals window
        shows) are sent.  Raises KeyError for an unknown id and ValueError for
        a bad edit; returns False when the future was already resolved or
        cancelled elsewhere (the request is removed either way).
        """
        unknown = set(edits) - set(APPROVAL_EDITS)
        if unknown:
            raise ValueError(f"unknown approval edit(s): {', '.join(sorted(unknown))}; "
                             f"allowed: {', '.join(APPROVAL_EDITS)}")
        approval = self.pending_approvals.get(str(request_id))
        if approval is None:
            raise KeyError(f"no pending approval {request_id!r}")
        decision: dict[str, Any] = {"approved": bool(approved)}
        if approval.kind == "spawn":
            decision["prompt"] = str(edits.get("prompt", approval.prompt))
            decision["context_md"] = str(edits.get("context_md", approval.context_md))
        elif approval.kind == "tool":
            if "args" in edits:
                args = edits["args"]
                if not isinstance(args, dict):
                    raise ValueError("'args' must be a JSON object")
            elif approval.args_text.strip():
                try:
                    args = json.loads(approval.args_text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"the edited tool arguments are not valid JSON: {exc}") from exc
                if not isinstance(args, dict):
                    raise ValueError("the edited tool arguments must be a JSON object")
            else:
                args = approval.payload.get("args") or {}
            decision["args"] = args
        del self.pending_approvals[approval.request_id]
        self._waited(approval)
        self.version += 1
        delivered = self._resolve(approval, decision)
        self.approval_history.append({"request_id": approval.request_id, "kind": approval.kind,
                                      "ticket_id": approval.ticket_id,
                                      "outcome": ("approved" if approved else "rejected")
                                      if delivered else "too late"})
        return delivered

    @staticmethod
    def _resolve(approval: Approval, decision: dict) -> bool:
        future = approval.future
        if future is None:
            log.error("approval %s has no future; the answer cannot be delivered", approval.request_id)
            return False
        if future.done():
            log.info("approval %s was already resolved or cancelled", approval.request_id)
            return False
        try:
            future.set_result(decision)
        except concurrent.futures.InvalidStateError:   # cancelled between done() and set_result()
            log.info("approval %s was cancelled while being answered", approval.request_id)
            return False
        log.info("approval %s (%s %s): %s", approval.request_id, approval.kind, approval.ticket_id,
                 "approved" if decision["approved"] else "rejected")
        return True

    def prune_resolved(self) -> int:
        """Drop requests whose future was resolved or cancelled elsewhere (e.g. an abort)."""
        gone = [rid for rid, a in self.pending_approvals.items() if a.future is not None and a.future.done()]
        for rid in gone:
            approval = self.pending_approvals.pop(rid)
            self._waited(approval)
            cancelled = approval.future is not None and approval.future.cancelled()
            outcome = "cancelled" if cancelled else "answered elsewhere"
            self.approval_history.append({"request_id": rid, "kind": approval.kind,
                                          "ticket_id": approval.ticket_id, "outcome": outcome})
            log.info("approval %s %s", rid, outcome)
        if gone:
            self.version += 1
        return len(gone)

    def approve_all(self, approved: bool = True) -> int:
        """Answer every pending request as-is (used when auto-approve is switched on)."""
        n = 0
        for rid in list(self.pending_approvals):
            n += bool(self.approve(rid, approved))
        return n

    def oldest_approval(self) -> Approval | None:
        return next(iter(self.pending_approvals.values()), None)   # dicts keep arrival order

    # -- views ----------------------------------------------------------------------------------
    @property
    def pipeline_active(self) -> bool:
        """Planning, or a track's engine exists and is (about to be) running."""
        return self.mma_status in PIPELINE_ACTIVE_STATUSES

    @property
    def busy(self) -> bool:
        """Something is in flight: planning, workers running, or a stream just moved."""
        return (self.pipeline_active
                or time.monotonic() - self.last_stream_at < BUSY_AFTER_STREAM_S)

    def ticket(self, ticket_id: str) -> dict | None:
        for t in self.active_tickets:
            if t.get("id") == ticket_id:
                return t
        return None

    def track(self, track_id: str | None) -> dict | None:
        if track_id is None:
            return self.tracks[0] if self.tracks else None
        for t in self.tracks:
            if t.get("id") == track_id:
                return t
        return None

    def snapshot(self) -> dict:
        """JSON-safe copy of everything a script may read."""
        return {
            "mma_status": self.mma_status,
            "active_tier": self.active_tier,
            "active_track": _jsonable(self.active_track),
            "tickets": _jsonable(self.active_tickets),
            "tracks": _jsonable(self.tracks),
            "accepted_track_ids": sorted(self.accepted_track_ids),
            "critical_path": list(self.critical_path),
            "mma_streams": self.mma_streams.to_dict(),
            "mma_stream_status": dict(self.mma_streams.status),
            "mma_tier_usage": _jsonable(self.mma_tier_usage),
            "pending_approvals": [a.to_dict() for a in self.pending_approvals.values()],
            "errors": list(self.errors),
            "latest_error": self.latest_error,
            "notice": self.notice,
            "stream_groups": [g.label for g in self.stream_groups],
            "auto_approve": self.auto_approve,
            "events_applied": self.events_applied,
        }
