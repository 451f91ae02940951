"""The ConductorEngine: runs one track's ticket DAG with parallel Tier 3 workers.

Threading (see docs/guide_architecture.md):
- `ConductorEngine.run()` is a coroutine on the engine's asyncio loop.  It is the only
  writer of ticket state: it starts workers, applies each worker's `WorkerOutcome`
  through the `ExecutionEngine`, runs the Tier 4 diagnosis of a failure, and decides
  retries from the outcome's kind.  It wakes only on events (a worker or diagnosis
  finished, an approval was answered, the user queued/paused/resumed/aborted).
- Tier 3 workers run `run_worker_lifecycle` (worker.py) on daemon threads
  (`background.start`: a worker stuck in a call never keeps the process alive), each in
  its own `ai_client` session (clean context, no shared provider state).  They report
  through the event queue only and return their outcome; their tokens are booked per
  provider response (`session.on_usage`), so an aborted attempt is paid for too.
- `abort()` reaches blocked calls: each worker session's `CancelSignal` shuts its socket
  down or kills its shell command, the Tier 4 diagnoses share the engine's signal, and
  `run()` returns within `ABORT_GRACE_S` with every unfinished ticket back in `todo`.  A
  worker that has not stopped by then keeps the track's lock (`track_lock`), so a Resume
  is refused until it has.
- In a git repository the engine owns a `TrackWorkspace` (track_workspace.py): `run()` opens
  it (track branch, leftovers pruned), each worker thread first gets its ticket's worktree,
  a DONE outcome lands (commit, merge onto the track branch, QA) on a thread of its own, one
  ticket at a time in DAG order, and `run()` closes it (worktrees removed).  No git runs on
  the loop thread.
- Approvals are `concurrent.futures.Future`s carried inside events (approvals.py);
  whoever answers resolves the future.  A worker waits on it with a timeout; the engine
  subscribes with a done-callback.  Nobody polls.

This module is the pipeline's front door: the worker and approval functions the engine
runs are importable from here too.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import ai_client
import approvals
import background
import events
import prompt_cache
from approvals import DEFAULT_APPROVAL_TIMEOUT, confirm_execution, confirm_spawn
from dag_engine import ExecutionEngine, TrackDAG
from engine_workspace import WorkspaceSteps
from models import IN_PROGRESS, Ticket, TierUsage, Track, WorkerContext, new_tier_usage, utc_now
from planning import parse_json_tickets
from providers.base import CancelSignal, ProviderError, Usage
from run_settings import RunSettings
from track_lock import Claim
from track_workspace import TrackWorkspace
from worker import (
    ABORTED,
    TIER3_SYSTEM,
    OutcomeKind,
    WorkerOutcome,
    build_worker_prompt,
    run_worker_lifecycle,
    shared_context,
    worker_stream_id,
)

log = logging.getLogger(__name__)

__all__ = [
    "ConductorEngine", "run_worker_lifecycle", "confirm_spawn", "confirm_execution", "parse_json_tickets",
    "WorkerOutcome", "OutcomeKind", "worker_stream_id", "build_worker_prompt", "TIER3_SYSTEM",
    "TIER4_STREAM", "tier4_stream_id", "DEFAULT_APPROVAL_TIMEOUT",
]

TIER4_STREAM = "Tier 4 (QA)"


def tier4_stream_id(ticket_id: str) -> str:
    """The stream of one ticket's Tier 4 diagnosis ("Tier 4 (QA): T2")."""
    return f"{TIER4_STREAM}: {ticket_id}"

# State updates (events and the on-disk save) are coalesced to at most one per interval:
# snapshotting a 1,000-ticket track on every completion made the engine O(n^2).
STATE_EMIT_INTERVAL_S = 0.05
# How long run() waits after an abort for its workers and diagnoses to stop.  The cancel
# reaches blocked calls (sockets, shell commands), so they normally end in milliseconds.
ABORT_GRACE_S = 1.0
# How long the end of a run waits for its explicit prompt caches to be deleted; one left
# behind is deleted at the next start (prompt_cache.sweep_stale).
CACHE_CLEANUP_WAIT_S = 10.0


def _queue_put(event_queue: events.AsyncEventQueue | None, loop: asyncio.AbstractEventLoop | None,
               name: str, payload: Any) -> None:
    """Put `(name, payload)` from any thread, binding the queue to `loop` if it is unbound."""
    events.put_event(event_queue, loop, name, payload)


# -- the engine ----------------------------------------------------------------------
class ConductorEngine(WorkspaceSteps):
    """Runs one track's ticket DAG: parallel Tier 3 workers, retries with escalation, approvals."""

    def __init__(self, track: Track, event_queue: events.AsyncEventQueue | None = None,
                 auto_queue: bool = False, *, settings: RunSettings | None = None, base_dir: str = ".",
                 tier_usage: dict | None = None,
                 on_state_change: Callable[[ConductorEngine], None] | None = None,
                 worker_fn: Callable[..., WorkerOutcome] | None = None, track_claim: Claim | None = None,
                 workspace: TrackWorkspace | None = None):
        settings = settings or RunSettings.for_provider()
        if auto_queue and not settings.auto_queue:
            settings = settings.replace(auto_queue=True)
        self.settings = settings
        self.track = track
        self.event_queue = event_queue
        self.base_dir = base_dir
        self.dag = TrackDAG(track.tickets)
        self.execution = ExecutionEngine(self.dag, auto_queue=settings.auto_queue)
        self.on_state_change = on_state_change
        # The Tier 3 worker; replaceable so the scheduler can be measured with a stub worker.
        self.worker_fn = worker_fn or run_worker_lifecycle
        self.tier_usage = tier_usage if isinstance(tier_usage, TierUsage) else new_tier_usage()
        if tier_usage is not None and not isinstance(tier_usage, TierUsage):
            self.tier_usage.update(copy.deepcopy(tier_usage))
        for tier, model in settings.models.first_models().items():
            self.tier_usage[tier]["model"] = self.tier_usage[tier]["model"] or model
        self.status = "starting"     # until run() begins; the GUI counts it as busy
        self.active_tier: str | None = None
        self._sessions: dict[str, ai_client.Session] = {}
        self._sessions_lock = threading.Lock()
        self._booked: dict[str, Usage] = {}       # ticket id -> tokens its session booked live
        self._cancel = CancelSignal()             # abort: the Tier 4 diagnoses' cancel
        # The track's lock (track_lock.claim), released when run() ends; None: not locked.
        self.track_claim = track_claim
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._aborted = False
        self._step_requests: dict[str, concurrent.futures.Future] = {}
        self._approvals: set[concurrent.futures.Future] = set()
        self.running: set[str] = set()
        self._last_emit = float("-inf")
        self._retry_base: dict[str, int] = {}      # ticket id -> its retry count when run() began
        self._ticket_dicts: dict[str, dict] = {}
        self._dirty: set[str] = set(self.dag.tickets)
        self._emit_handle: asyncio.TimerHandle | None = None
        # Git (track_workspace.py): a worktree per running ticket, its commit landed on the track
        # branch one at a time in DAG order.  None: workers use `base_dir` directly.
        self.workspace = workspace
        self._to_land: dict[str, WorkerOutcome] = {}
        self._landing: asyncio.Future | None = None
        self._landing_ids: list[str] = []
        # The track's prompt cache: warm-up gates, Gemini explicit caches (prompt_cache.py).
        self.prompt_cache = prompt_cache.TrackPromptCache(
            settings.provider, enabled=settings.prompt_cache, warmup=settings.cache_warmup, track_id=track.id,
            book=lambda model, usage: self.tier_usage.add_usage("Tier 3", usage, model))

    def model_for(self, ticket: Ticket) -> str:
        """The Tier 3 model of the ticket's next attempt (escalating with its retries)."""
        return self.settings.models.model_for("Tier 3", ticket.retry_count)

    # -- the worker's host interface (called from worker threads; thread-safe) -------
    def add_usage(self, tier: str, input_tokens: int, output_tokens: int, model: str | None = None) -> None:
        self.tier_usage.add(tier, input_tokens, output_tokens, model)

    def session_started(self, ticket_id: str, session: ai_client.Session) -> None:
        session.on_usage = functools.partial(self._book_live, ticket_id)
        with self._sessions_lock:
            self._sessions[ticket_id] = session
            if self._aborted:
                session.cancel_event.set()
        self.prompt_cache.configure(session)      # may wait while another worker writes the cache

    def _book_live(self, ticket_id: str, model: str, usage: Usage) -> None:
        """A worker's provider response billed `usage` (worker thread): into the ledger now."""
        with self._sessions_lock:
            self._booked[ticket_id] = self._booked.get(ticket_id, Usage()) + usage
        self.tier_usage.add_usage("Tier 3", usage, model)

    def session_ended(self, ticket_id: str) -> None:
        with self._sessions_lock:
            session = self._sessions.pop(ticket_id, None)
        if session is not None:
            self.prompt_cache.worker_ended(session)

    def approval_requested(self, future: concurrent.futures.Future) -> None:
        """Remember a worker's open approval so abort can cancel it."""
        with self._sessions_lock:
            if self._aborted:
                future.cancel()
                return
            self._approvals.add(future)

        def forget(f: concurrent.futures.Future) -> None:
            with self._sessions_lock:
                self._approvals.discard(f)
        future.add_done_callback(forget)

    # -- Tier 4 (runs in the pool; returns instead of writing the ticket) ----------------
    def _diagnose(self, ticket_id: str, description: str, reason: str) -> ai_client.SendResult | None:
        """A short diagnosis of a failed ticket, streamed to its own Tier 4 stream, which
        ends with a `Response` like a worker's (done, or error with what streamed)."""
        sid = tier4_stream_id(ticket_id)

        def stream(chunk: str) -> None:
            events.emit(self.event_queue, events.StreamChunk(sid, chunk))

        def book(model: str, usage: Usage) -> None:
            self.tier_usage.add_usage("Tier 4", usage, model)
        stream(f"\n\n**{ticket_id}**: ")
        try:
            result = ai_client.analyse_failure(f"Ticket {ticket_id}: {description}\nFailure: {reason}",
                                               provider=self.settings.provider,
                                               model=self.settings.models.model_for("Tier 4"),
                                               stream_callback=stream, cancel_event=self._cancel, on_usage=book)
        except ProviderError as exc:
            log.warning("Tier 4 diagnosis for %s failed: %s", ticket_id, exc.user_message())
            events.emit(self.event_queue, events.Response(exc.partial_text or "", sid, "error", ticket_id))
            return None
        except BaseException:          # e.g. cancelled: the stream still ends, the engine sees the error
            events.emit(self.event_queue, events.Response("", sid, "error", ticket_id))
            raise
        events.emit(self.event_queue, events.Response(result.text, sid, "done", ticket_id))
        return result

    # -- control from any thread ---------------------------------------------------
    def _on_loop(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            fn()
            return

        def call() -> None:
            fn()
            self._kick()
        loop.call_soon_threadsafe(call)

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def queue_ticket(self, ticket_id: str) -> None:
        self._on_loop(lambda: self.execution.queue(ticket_id))

    def pause(self) -> None:
        self._on_loop(lambda: setattr(self.execution, "paused", True))

    def resume(self) -> None:
        self._on_loop(lambda: setattr(self.execution, "paused", False))

    def set_step_mode(self, ticket_id: str, enabled: bool) -> None:
        def apply() -> None:
            self.dag.tickets[ticket_id].step_mode = bool(enabled)
            self._touch(ticket_id)
        self._on_loop(apply)

    def abort(self) -> None:
        """Stop everything in flight: worker calls (their sockets are shut down, their shell
        commands killed), Tier 4 diagnoses and pending approvals.  Any thread."""
        with self._sessions_lock:
            self._aborted = True
            sessions = list(self._sessions.values())
            pending = list(self._approvals) + list(self._step_requests.values())
        for session in sessions:
            session.cancel_event.set()
        self.prompt_cache.release_all()
        self._cancel.set()
        for future in pending:
            future.cancel()
        if self.workspace is not None:
            self.workspace.cancel()               # a QA command in progress is killed
        self._on_loop(lambda: None)

    @property
    def aborted(self) -> bool:
        return self._aborted

    def release_track(self) -> None:
        """Give up the track's lock without running (a track only planned)."""
        if self.track_claim is not None:
            self.track_claim.release()

    # -- state snapshots ------------------------------------------------------------------
    def _touch(self, ticket_id: str) -> None:
        """The ticket changed: rebuild its dict at the next snapshot (loop thread)."""
        self._dirty.add(ticket_id)

    def snapshot(self) -> dict:
        """State for the GUI and the disk.  Ticket dicts are rebuilt only for tickets that
        changed since the last snapshot, so consumers must treat them as read-only."""
        usage = self.tier_usage.snapshot()
        for tid in self._dirty:
            ticket = self.dag.tickets[tid]
            data = ticket.to_dict()
            data["model"] = self.model_for(ticket)
            self._ticket_dicts[tid] = data
        self._dirty.clear()
        track = self.track.header_dict()
        tickets = [self._ticket_dicts[tid] for tid in self.dag.tickets]
        return {"status": self.status, "active_tier": self.active_tier, "tier_usage": usage,
                "track": track, "tickets": tickets,
                "critical_path": self.dag.critical_path()}

    def _request_emit(self) -> None:
        """Publish state now, or once the interval since the last publish has passed."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._emit_state()
            return
        if self._emit_handle is not None:
            return                                   # a trailing publish is already scheduled
        due = self._last_emit + STATE_EMIT_INTERVAL_S
        if loop.time() >= due:
            self._emit_state()
        else:
            self._emit_handle = loop.call_at(due, self._trailing_emit)

    def _trailing_emit(self) -> None:
        self._emit_handle = None
        self._emit_state()

    def _emit_state(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._last_emit = self._loop.time()
        self.track.updated_at = utc_now()
        snap = self.snapshot()
        events.emit(self.event_queue, events.StateUpdate(**snap))
        if self.on_state_change is not None:
            try:
                self.on_state_change(self)
            except OSError as exc:
                log.error("could not save track state: %s", exc)
                events.emit(self.event_queue, events.ErrorEvent(
                    f"could not save track state: {exc}",
                    "check disk space and permissions of the project folder"))

    # -- the run loop ------------------------------------------------------------------------
    async def run(self, md_content: str = "") -> str:
        """Run until every ticket is completed, nothing more can run, or abort. Returns the final status.

        An exception from inside the loop ends the run as "error" (workers aborted, state
        saved) before it propagates: the track never stays "running" with nobody running it.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._wake = asyncio.Event()
        if self.event_queue is not None and self.event_queue.loop is None:
            self.event_queue.bind(loop)
        if self.track_claim is not None:          # a second run of this engine claims again
            self.track_claim = self.track_claim.renewed()
        for t in self.dag.tickets.values():      # resume: anything mid-flight starts again
            if t.status == IN_PROGRESS:
                self.execution.requeue(t.id)
                self._touch(t.id)
        self._retry_base = {t.id: t.retry_count for t in self.dag.tickets.values()}
        md_content = self._plan_prompt_cache(md_content)
        workers: dict[str, asyncio.Future] = {}       # ticket id -> its worker's outcome
        diagnoses: dict[str, asyncio.Future] = {}     # ticket id -> its Tier 4 diagnosis
        self.status, self.active_tier = "running", "Tier 3"
        self.track.status = "in_progress"
        self._emit_state()
        opened = True
        try:
            opened = self.workspace is None or await self._open_workspace(loop)
            if opened:
                await self._loop_until_done(loop, md_content, workers, diagnoses)
        except BaseException as exc:
            log.error("track %s: the run failed: %r", self.track.id, exc)
            self.abort()
            self._requeue_unfinished(workers)
            self.status = "error"
            self.track.status = "blocked"
            raise
        else:
            self.status = ("error" if not opened else "aborted" if self._aborted else
                           "completed" if self.execution.is_complete() else "blocked")
            self.track.status = "blocked" if not opened else self.status
        finally:
            if self.workspace is not None:
                await self._close_workspace()
            try:
                await self._close_prompt_cache(loop)   # before the last state: it books the storage
            finally:
                self.running = set()
                if self._emit_handle is not None:
                    self._emit_handle.cancel()
                    self._emit_handle = None
                self.active_tier = None
                try:
                    self._emit_state()
                finally:
                    if self.track_claim is not None:
                        self.track_claim.release()    # workers still alive keep their own hold
        return self.status

    def _plan_prompt_cache(self, md_content: str) -> str:
        """The context every worker of this track shares (the curated context and the track's
        brief), and the prompt cache's plan for it.  Returns that shared context."""
        shared = shared_context(md_content, self.track)
        expected: dict[str, int] = {}
        for ticket in self.dag.tickets.values():
            if ticket.status != "completed":
                model = self.model_for(ticket)
                expected[model] = expected.get(model, 0) + 1
        system, _breaks = ai_client.layout_system(shared, TIER3_SYSTEM)
        self.prompt_cache.plan(system, ai_client.tool_specs(self.settings.tools_enabled, self.base_dir), expected)
        return shared

    async def _close_prompt_cache(self, loop: asyncio.AbstractEventLoop) -> None:
        """Delete the run's explicit caches (never leave paid storage behind), off the loop."""
        self.prompt_cache.release_all()
        future = background.start(loop, self.prompt_cache.close, name=f"mma-{self.track.id}-cache-close")
        try:
            done, _pending = await asyncio.wait({future}, timeout=CACHE_CLEANUP_WAIT_S)
        except asyncio.CancelledError:
            log.warning("track %s: cancelled while deleting its prompt caches; the next start sweeps them",
                        self.track.id)
            raise
        if not done:
            log.warning("track %s: deleting its prompt caches took over %.0f s; the next start sweeps them",
                        self.track.id, CACHE_CLEANUP_WAIT_S)
        elif future.exception() is not None:
            log.error("track %s: deleting its prompt caches failed: %r", self.track.id, future.exception())

    async def _loop_until_done(self, loop: asyncio.AbstractEventLoop, md_content: str,
                               workers: dict[str, asyncio.Future], diagnoses: dict[str, asyncio.Future]) -> None:
        max_workers = self.settings.max_workers
        assert self._wake is not None
        while not self._aborted:
            self._ask_step_approvals(loop)
            busy = len(workers) + len(diagnoses) + (self._landing is not None)
            batch = self.execution.tick(limit=max_workers - busy)
            released = time.time()                 # one moment for the whole batch
            for ticket in batch:
                workers[ticket.id] = self._start(ticket, released, loop, md_content)
            self.running = set(workers)
            self._start_landing(loop, idle=not workers and not diagnoses)
            if workers or diagnoses or self._landing is not None:
                self._request_emit()
            elif self.execution.is_complete() or self.execution.is_stuck():
                return
            self._wake.clear()
            await self._wake.wait()
            for tid in [tid for tid, fut in workers.items() if fut.done()]:
                self._apply(self._outcome_of(tid, workers.pop(tid)), loop, diagnoses)
            for tid in [tid for tid, fut in diagnoses.items() if fut.done()]:
                self._diagnosed(tid, diagnoses.pop(tid))
            if self._landing is not None and self._landing.done():
                self._landed(self._landing, loop, diagnoses)
        pending = list(workers.values()) + list(diagnoses.values())
        pending += [self._landing] if self._landing is not None else []
        if pending:
            t0 = loop.time()
            await asyncio.wait(pending, timeout=ABORT_GRACE_S)
            for tid in [tid for tid, fut in workers.items() if fut.done()]:
                self._apply(self._outcome_of(tid, workers.pop(tid)), loop, diagnoses)
            if self._landing is not None and self._landing.done():
                self._landed(self._landing, loop, diagnoses)
            log.info("track %s: abort took %.3f s; %d worker(s) still stopping", self.track.id,
                     loop.time() - t0, len(workers))
        for future in diagnoses.values():         # a late diagnosis is not needed any more
            future.cancel()
        self._requeue_unfinished(workers)

    def _requeue_unfinished(self, workers: dict[str, asyncio.Future]) -> None:
        """Tickets whose worker has not returned go back to todo (resumable) as "aborted";
        their threads hold the track's lock until they end."""
        for tid in list(workers):
            ticket = self.dag.tickets[tid]
            log.warning("track %s: the worker for %s did not stop within %.1f s after the abort",
                        self.track.id, tid, ABORT_GRACE_S)
            ticket.blocked_reason = ABORTED
            ticket.finished_at = time.time()
            self.execution.requeue(tid)
            self._touch(tid)
            workers.pop(tid).cancel()

    def _start(self, ticket: Ticket, released: float, loop: asyncio.AbstractEventLoop,
               md_content: str) -> asyncio.Future:
        context = WorkerContext(ticket.id, self.model_for(ticket), provider=self.settings.provider)
        ticket.assigned_to = context.model_name
        ticket.started_at, ticket.finished_at = released, None
        with self._sessions_lock:
            self._booked.pop(ticket.id, None)
        self._touch(ticket.id)
        hold = self.track_claim.hold(f"the worker for {ticket.id}") if self.track_claim is not None else None
        name = f"mma-{self.track.id}-{ticket.id}"
        if self.workspace is not None:         # its own worktree first, on the worker's thread
            context.notes = self.workspace.take_note(ticket.id)
            future = background.start(loop, self._run_in_workspace, ticket, context, md_content, loop,
                                      name=name, on_exit=hold)
        else:
            future = background.start(loop, self.worker_fn, ticket, context, ticket.context_requirements,
                                      self.event_queue, self, md_content, loop, name=name, on_exit=hold)
        future.add_done_callback(lambda _f: self._kick())
        return future

    def _outcome_of(self, ticket_id: str, future: asyncio.Future) -> WorkerOutcome:
        """The worker's outcome; a worker that raised or returned something else is an error."""
        model = self.dag.tickets[ticket_id].assigned_to
        if future.cancelled():
            return WorkerOutcome(ticket_id, OutcomeKind.ABORTED, reason=ABORTED, model=model)
        exc = future.exception()
        if exc is not None:
            log.error("worker for %s raised: %r", ticket_id, exc)
            return WorkerOutcome(ticket_id, OutcomeKind.ERROR, reason=f"{type(exc).__name__}: {exc}", model=model)
        outcome = future.result()
        if not isinstance(outcome, WorkerOutcome):
            log.error("worker for %s returned %r instead of an outcome", ticket_id, outcome)
            return WorkerOutcome(ticket_id, OutcomeKind.ERROR, reason="worker ended without a result", model=model)
        return outcome

    def _apply(self, outcome: WorkerOutcome, loop: asyncio.AbstractEventLoop,
               diagnoses: dict[str, asyncio.Future]) -> None:
        """Record a finished attempt on its ticket (loop thread), then diagnose or retry."""
        ticket = self.dag.tickets[outcome.ticket_id]
        outcome.record_on(ticket)
        with self._sessions_lock:                  # the session booked its responses already
            booked = self._booked.pop(ticket.id, Usage())
        unbooked_in = outcome.usage.input_tokens - booked.input_tokens
        unbooked_out = outcome.usage.output_tokens - booked.output_tokens
        if unbooked_in > 0 or unbooked_out > 0:    # a worker that did not book as it went
            self.add_usage("Tier 3", max(0, unbooked_in), max(0, unbooked_out), outcome.model or None)
        if outcome.kind is OutcomeKind.DONE and self.workspace is not None and self.workspace.isolated:
            self._to_land[ticket.id] = outcome    # in progress until its commit is on the track branch
            self._touch(ticket.id)
            self._request_emit()
            return
        status = outcome.ticket_status
        if status == "completed":
            self.execution.mark_completed(ticket.id)
        elif outcome.kind is OutcomeKind.ABORTED:
            self.execution.requeue(ticket.id)
        else:
            self.execution.mark_blocked(ticket.id, outcome.reason)
        self._touch(ticket.id)
        self._diagnose_or_retry(ticket, outcome.retryable, outcome.reason, loop, diagnoses)
        self._request_emit()

    def _diagnose_or_retry(self, ticket: Ticket, retryable: bool, failure: str, loop: asyncio.AbstractEventLoop,
                           diagnoses: dict[str, asyncio.Future]) -> None:
        """A retryable failure gets a Tier 4 diagnosis of `failure` first (its retry follows in
        `_diagnosed`); anything else is retried at once if that can help."""
        if retryable and self.settings.diagnose_failures and not self._aborted:
            future = background.start(loop, self._diagnose, ticket.id, ticket.description, failure,
                                      name=f"mma-{self.track.id}-{ticket.id}-tier4")
            future.add_done_callback(lambda _f: self._kick())
            diagnoses[ticket.id] = future
        else:
            self._retry_if_useful(ticket, retryable)

    def _diagnosed(self, ticket_id: str, future: asyncio.Future) -> None:
        ticket = self.dag.tickets[ticket_id]
        result = None
        if future.cancelled():                    # exception() would raise CancelledError
            log.info("Tier 4 diagnosis for %s was cancelled", ticket_id)
        elif future.exception() is not None:
            log.error("Tier 4 diagnosis for %s raised: %r", ticket_id, future.exception())
        else:
            result = future.result()
        if result is not None:                    # its tokens were booked as they came
            ticket.diagnosis = result.text.strip()
        self._touch(ticket_id)
        self._retry_if_useful(ticket, True)
        self._request_emit()

    def _retry_if_useful(self, ticket: Ticket, retryable: bool) -> None:
        """Retry on the next model, up to `max_retries` times in this run.  A resumed ticket
        keeps the retry count (and so the model) it had reached and gets a fresh budget."""
        retries_here = ticket.retry_count - self._retry_base.get(ticket.id, 0)
        if retryable and not self._aborted and retries_here < self.settings.max_retries:
            ticket.retry_count += 1
            log.info("ticket %s blocked (%s); retry %d on %s", ticket.id, ticket.blocked_reason,
                     ticket.retry_count, self.model_for(ticket))
            self.execution.requeue(ticket.id)

    def _ask_step_approvals(self, loop: asyncio.AbstractEventLoop) -> None:
        for ticket in self.execution.awaiting_step_approval():
            if ticket.id in self._step_requests:
                continue
            if self.event_queue is None:     # nobody could ever answer: say so, do not hang
                self.execution.mark_blocked(ticket.id, "step approval needed, but no one is listening")
                self._touch(ticket.id)
                continue
            _rid, future = approvals.request(self.event_queue, "step", ticket.id, {
                "description": ticket.description, "model": self.model_for(ticket)})
            self._step_requests[ticket.id] = future
            future.add_done_callback(functools.partial(self._on_step_answer, loop, ticket.id))

    def _on_step_answer(self, loop: asyncio.AbstractEventLoop, ticket_id: str,
                        future: concurrent.futures.Future) -> None:
        """Any thread: hand the answer to the loop."""
        loop.call_soon_threadsafe(self._step_decided, ticket_id, future)

    def _step_decided(self, ticket_id: str, future: concurrent.futures.Future) -> None:
        self._step_requests.pop(ticket_id, None)
        self._touch(ticket_id)
        approved = (not future.cancelled() and future.exception() is None
                    and bool((future.result() or {}).get("approved")))
        if approved:
            self.execution.approve_step(ticket_id)
        elif not self._aborted:
            self.execution.mark_blocked(ticket_id, "step rejected by the user")
        self._request_emit()
        self._kick()
