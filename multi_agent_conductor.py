"""The MMA pipeline: Tier 1 planning, Tier 2 tickets, the ConductorEngine and Tier 3 workers.

Threading (see docs/guide_architecture.md):
- `ConductorEngine.run()` is a coroutine on the engine's asyncio loop.  It
  owns the ticket state machine and wakes only on events (a worker future
  finished, an approval was answered, the user queued/paused/resumed/aborted).
- Tier 3 workers run `run_worker_lifecycle` in a thread pool, each inside its
  own `ai_client` session (clean context, no shared provider state).  They
  report through `AsyncEventQueue.put_threadsafe` only.
- Approvals are `concurrent.futures.Future`s carried inside events; whoever
  answers (GUI, hook API, a test) resolves the future.  A worker waits on it
  with a timeout; the engine subscribes with a done-callback.  Nobody polls.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import ai_client
import events
from dag_engine import ExecutionEngine, TrackDAG
from project import default_tier_models
from models import (BLOCKED, COMPLETED, IN_PROGRESS, TODO, Ticket, TierUsage, Track,
                    WorkerContext, new_tier_usage, utc_now)
# Tier 1/2 live in planning.py; re-exported here because this module is the pipeline's front door.
from planning import (TIER1_STREAM, TIER1_SYSTEM, TIER2_STREAM, TIER2_SYSTEM, PlanningError,
                      PlanResult, extract_json, generate_tickets, parse_json_tickets,
                      parse_json_tracks, plan_epic, tier_models_for)
from providers.base import CancelledByUser, ProviderError

log = logging.getLogger(__name__)

__all__ = [
    "ConductorEngine", "run_worker_lifecycle", "confirm_spawn", "confirm_execution",
    "confirm_execution_ex", "request_approval", "worker_stream_id", "build_worker_prompt",
    "plan_epic", "generate_tickets", "parse_json_tickets", "parse_json_tracks", "extract_json",
    "PlanningError", "PlanResult", "ProviderError", "tier_models_for", "DEFAULT_TIER_MODELS",
    "TIER1_STREAM", "TIER2_STREAM", "TIER4_STREAM", "TIER1_SYSTEM", "TIER2_SYSTEM", "TIER3_SYSTEM",
]

DEFAULT_TIER_MODELS: dict[str, Any] = default_tier_models("gemini")
TIER4_STREAM = "Tier 4 (QA)"
DEFAULT_APPROVAL_TIMEOUT = 600.0
# State updates (events and the on-disk save) are coalesced to at most one per interval:
# snapshotting a 1,000-ticket track on every completion made the engine O(n^2).
STATE_EMIT_INTERVAL_S = 0.05
MAX_RETRIES = 2

TIER3_SYSTEM = """You are Tier 3 (Worker) of a multi-model coding pipeline. Do exactly one ticket.
Use the tools when you need to read or change files; writes and shell commands need the user's approval.
Finish with a short report. If you cannot do the ticket, reply with a first line starting with
`BLOCKED:` and the reason."""


def worker_stream_id(ticket_id: str) -> str:
    return f"Tier 3 (Worker): {ticket_id}"


# -- cross-thread plumbing -----------------------------------------------------
def _queue_put(event_queue: events.AsyncEventQueue | None, loop: asyncio.AbstractEventLoop | None,
               name: str, payload: Any) -> None:
    """Seed-compatible thin wrapper over `events.put_event` (no unsafe fallback)."""
    events.put_event(event_queue, loop, name, payload)


_request_ids = itertools.count(1)


def request_approval(event_queue, loop, kind: str, ticket_id: str,
                     payload: dict) -> tuple[str, concurrent.futures.Future]:
    """Publish an approval request; returns its id and the future that carries the answer."""
    future: concurrent.futures.Future = concurrent.futures.Future()
    request_id = f"{kind}-{ticket_id}-{next(_request_ids)}"
    name = events.MMA_SPAWN_APPROVAL if kind == "spawn" else events.MMA_STEP_APPROVAL
    _queue_put(event_queue, loop, name, {**payload, "request_id": request_id, "ticket_id": ticket_id,
                                         "kind": kind, "future": future})
    return request_id, future


def _wait_decision(future: concurrent.futures.Future, timeout: float | None, request_id: str,
                   event_queue, loop) -> dict:
    try:
        decision = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        log.warning("approval %s timed out after %ss", request_id, timeout)
        _queue_put(event_queue, loop, events.MMA_APPROVAL_CLOSED, {"request_id": request_id, "outcome": "timeout"})
        return {"approved": False, "reason": f"no answer within {timeout:.0f}s"}
    except concurrent.futures.CancelledError:
        _queue_put(event_queue, loop, events.MMA_APPROVAL_CLOSED, {"request_id": request_id, "outcome": "cancelled"})
        return {"approved": False, "reason": "cancelled"}
    if not isinstance(decision, dict):
        decision = {"approved": bool(decision)}
    return decision


def confirm_spawn(role: str, prompt: str, context_md: str, event_queue, ticket_id: str,
                  loop=None, timeout: float | None = DEFAULT_APPROVAL_TIMEOUT) -> tuple[bool, str, str]:
    """Ask the user to approve spawning a worker; they may edit the prompt and context."""
    request_id, future = request_approval(event_queue, loop, "spawn", ticket_id,
                                          {"role": role, "prompt": prompt, "context_md": context_md})
    decision = _wait_decision(future, timeout, request_id, event_queue, loop)
    return (bool(decision.get("approved")), decision.get("prompt", prompt),
            decision.get("context_md", context_md))


def confirm_execution(payload: dict, event_queue, ticket_id: str, loop=None,
                      timeout: float | None = DEFAULT_APPROVAL_TIMEOUT, kind: str = "step") -> bool:
    """Ask the user to approve a step or a tool call.  Returns the verdict."""
    return bool(confirm_execution_ex(payload, event_queue, ticket_id, loop, timeout, kind).get("approved"))


def confirm_execution_ex(payload: dict, event_queue, ticket_id: str, loop=None,
                         timeout: float | None = DEFAULT_APPROVAL_TIMEOUT, kind: str = "step") -> dict:
    request_id, future = request_approval(event_queue, loop, kind, ticket_id, dict(payload))
    return _wait_decision(future, timeout, request_id, event_queue, loop)


# -- Tier 3 -----------------------------------------------------------------------
def build_worker_prompt(ticket: Ticket) -> str:
    parts = [f"<TICKET>\nTicket {ticket.id}: {ticket.description}\n</TICKET>"]
    if ticket.context_requirements:
        parts.append("Relevant files: " + ", ".join(ticket.context_requirements))
    if ticket.retry_count:
        parts.append(f"This is retry {ticket.retry_count}. Previous attempt: {ticket.blocked_reason}")
        if ticket.diagnosis:
            parts.append(f"QA diagnosis: {ticket.diagnosis}")
    return "\n\n".join(parts)


def _files_context(paths: list[str] | None, base_dir: str) -> str:
    if not paths:
        return ""
    from context_builder import ContextItem, build_context
    bundle = build_context([ContextItem(p, "full") for p in paths], root=base_dir)
    return bundle.markdown


def run_worker_lifecycle(ticket: Ticket, context: WorkerContext, context_files=None, event_queue=None,
                         engine=None, md_content: str = "", loop=None) -> str:
    """Run one ticket on a Tier 3 model in a clean session and report through the event queue.

    Marks the ticket completed or blocked, adds the worker's real token counts
    to `engine.tier_usage["Tier 3"]`, and always pushes a final `response`
    event (status done / blocked / error / rejected) so the GUI never waits
    for output that will not come.
    """
    stream_id = worker_stream_id(ticket.id)
    provider = context.provider or (engine.provider if engine is not None else None)
    base_dir = engine.base_dir if engine is not None else "."
    prompt = build_worker_prompt(ticket)
    timeout = engine.approval_timeout if engine is not None else DEFAULT_APPROVAL_TIMEOUT

    def ask(kind: str, payload: dict) -> dict:
        request_id, future = request_approval(event_queue, loop, kind, ticket.id, payload)
        if engine is not None:
            engine._track_approval(future)
        return _wait_decision(future, timeout, request_id, event_queue, loop)

    if engine is not None and engine.require_spawn_approval:
        decision = ask("spawn", {"role": "Tier 3 (Worker)", "prompt": prompt, "context_md": md_content,
                                 "model": context.model_name})
        prompt = decision.get("prompt", prompt)
        md_content = decision.get("context_md", md_content)
        if not decision.get("approved"):
            reason = "spawn rejected by the user"
            ticket.status, ticket.blocked_reason = BLOCKED, reason
            _queue_put(event_queue, loop, events.RESPONSE,
                       {"text": f"[{reason}]", "stream_id": stream_id, "status": "rejected"})
            return ""

    def stream(chunk: str) -> None:
        _queue_put(event_queue, loop, events.MMA_STREAM, {"stream_id": stream_id, "text": chunk})

    def approve_tool(name: str, args: dict, description: dict) -> dict:
        if event_queue is None:
            return {"approved": False}
        decision = ask("tool", {"tool": name, "args": args, "description": description})
        return {"approved": bool(decision.get("approved")), "args": decision.get("args", args)}

    text, status, error = "", "done", None
    with ai_client.session_scope(provider, context.model_name, label=stream_id) as session:
        ai_client.reset_session()            # seed semantics: a clean context, this thread only
        session = ai_client.current_session()
        if engine is not None:
            engine._register_session(ticket.id, session)
        try:
            files_md = _files_context(context_files, base_dir)
            full_md = "\n\n".join(p for p in (md_content, files_md) if p)
            result = session.send(full_md, prompt, base_dir, system_prompt=TIER3_SYSTEM,
                                  stream_callback=stream,
                                  pre_tool_callback=approve_tool if (engine is None or engine.tools_enabled) else None,
                                  tools=bool(engine is not None and engine.tools_enabled))
            text = result.text
        except CancelledByUser:
            status = "aborted"
        except ProviderError as exc:
            status, error = "error", exc.user_message()
            text = exc.partial_text
        except Exception as exc:             # surface everything: never a silent worker death
            log.exception("worker for ticket %s crashed", ticket.id)
            status, error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            if engine is not None:
                engine._unregister_session(ticket.id)
        usage = session.usage
    ticket.usage.add(usage.input_tokens, usage.output_tokens)
    if engine is not None:
        engine.add_usage("Tier 3", usage.input_tokens, usage.output_tokens, context.model_name)

    if status == "aborted":
        ticket.status = TODO                 # resumable: it never finished
        ticket.blocked_reason = "aborted by the user"
    elif status == "error":
        ticket.status, ticket.blocked_reason = BLOCKED, error or "worker error"
        _queue_put(event_queue, loop, events.MMA_ERROR,
                   {"ticket_id": ticket.id, "stream_id": stream_id, "message": ticket.blocked_reason})
    elif text.lstrip().upper().startswith("BLOCKED"):
        status = "blocked"
        ticket.status = BLOCKED
        ticket.blocked_reason = text.strip().splitlines()[0][:500]
    else:
        ticket.status = COMPLETED
        ticket.blocked_reason = ""
    ticket.result = text
    ticket.finished_at = time.time()
    if ticket.status == BLOCKED and engine is not None and engine.diagnose_failures:
        engine._diagnose(ticket, event_queue, loop)
    log.info("ticket %s finished: %s (%d in / %d out tokens)", ticket.id, status,
             usage.input_tokens, usage.output_tokens)
    _queue_put(event_queue, loop, events.RESPONSE, {"text": text, "stream_id": stream_id, "status": status,
                                                     "ticket_id": ticket.id})
    return text


# -- the engine ----------------------------------------------------------------------
class ConductorEngine:
    """Runs one track's ticket DAG: parallel Tier 3 workers, retries with escalation, approvals."""

    def __init__(self, track: Track, event_queue: events.AsyncEventQueue | None = None,
                 auto_queue: bool = False, *, provider: str | None = None,
                 tier_models: dict[str, Any] | None = None, max_workers: int = 4,
                 require_spawn_approval: bool = False, approval_timeout: float = DEFAULT_APPROVAL_TIMEOUT,
                 base_dir: str = ".", tools_enabled: bool = False, tier_usage: dict | None = None,
                 max_retries: int = MAX_RETRIES, diagnose_failures: bool = True,
                 on_state_change: Callable[["ConductorEngine"], None] | None = None,
                 worker_fn: Callable[..., str] | None = None):
        self.track = track
        self.event_queue = event_queue
        self.provider = provider or ai_client.default_provider()
        self.tier_models = {**tier_models_for(self.provider), **(tier_models or {})}
        self.dag = TrackDAG(track.tickets)
        self.engine = ExecutionEngine(self.dag, auto_queue=auto_queue)
        self.max_workers = max(1, int(max_workers))
        self.require_spawn_approval = require_spawn_approval
        self.approval_timeout = approval_timeout
        self.base_dir = base_dir
        self.tools_enabled = tools_enabled
        self.max_retries = max_retries
        self.diagnose_failures = diagnose_failures
        self.on_state_change = on_state_change
        # The Tier 3 worker; replaceable so the scheduler can be measured with a stub worker.
        self.worker_fn = worker_fn or run_worker_lifecycle
        self.tier_usage = tier_usage if isinstance(tier_usage, TierUsage) else new_tier_usage()
        if tier_usage is not None and not isinstance(tier_usage, TierUsage):
            self.tier_usage.update(copy.deepcopy(tier_usage))
        for tier in ("Tier 1", "Tier 2", "Tier 4"):
            self.tier_usage[tier]["model"] = self.tier_usage[tier]["model"] or self._model_name(tier)
        self.tier_usage["Tier 3"]["model"] = self.tier_usage["Tier 3"]["model"] or self._tier3_models()[0]
        self.status = "starting"     # until run() begins; the GUI counts it as busy
        self.active_tier = None
        self._sessions: dict[str, ai_client.Session] = {}
        self._sessions_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._aborted = False
        self._step_requests: dict[str, concurrent.futures.Future] = {}
        self._approvals: set[concurrent.futures.Future] = set()
        self.running: set[str] = set()
        self._last_emit = float("-inf")
        self._ticket_dicts: dict[str, dict] = {}
        self._dirty: set[str] = set(self.dag.tickets)
        self._emit_handle: asyncio.TimerHandle | None = None

    # -- configuration helpers ----------------------------------------------------
    def _model_name(self, tier: str) -> str:
        value = self.tier_models.get(tier, "")
        return value[0] if isinstance(value, list) else value

    def _tier3_models(self) -> list[str]:
        value = self.tier_models.get("Tier 3") or DEFAULT_TIER_MODELS["Tier 3"]
        return list(value) if isinstance(value, list) else [value]

    def model_for(self, ticket: Ticket) -> str:
        models = self._tier3_models()
        return models[min(ticket.retry_count, len(models) - 1)]

    # -- called from worker threads (thread-safe) -----------------------------------
    def add_usage(self, tier: str, input_tokens: int, output_tokens: int, model: str | None = None) -> None:
        self.tier_usage.add(tier, input_tokens, output_tokens, model)

    def _register_session(self, ticket_id: str, session: ai_client.Session) -> None:
        with self._sessions_lock:
            self._sessions[ticket_id] = session
            if self._aborted:
                session.cancel_event.set()

    def _track_approval(self, future: concurrent.futures.Future) -> None:
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

    def _unregister_session(self, ticket_id: str) -> None:
        with self._sessions_lock:
            self._sessions.pop(ticket_id, None)

    def _diagnose(self, ticket: Ticket, event_queue, loop) -> None:
        """Tier 4: a short diagnosis of a failed ticket, streamed and billed."""
        def stream(chunk: str) -> None:
            _queue_put(event_queue, loop, events.MMA_STREAM, {"stream_id": TIER4_STREAM, "text": chunk})
        stream(f"\n\n**{ticket.id}**: ")
        try:
            result = ai_client.analyse_failure(
                f"Ticket {ticket.id}: {ticket.description}\nFailure: {ticket.blocked_reason}",
                provider=self.provider, model=self._model_name("Tier 4"), stream_callback=stream)
        except ProviderError as exc:
            log.warning("Tier 4 diagnosis for %s failed: %s", ticket.id, exc.user_message())
            return
        ticket.diagnosis = result.text.strip()
        self.add_usage("Tier 4", result.usage.input_tokens, result.usage.output_tokens, self._model_name("Tier 4"))

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
        self._on_loop(lambda: self.engine.queue(ticket_id))

    def pause(self) -> None:
        self._on_loop(lambda: setattr(self.engine, "paused", True))

    def resume(self) -> None:
        self._on_loop(lambda: setattr(self.engine, "paused", False))

    def set_step_mode(self, ticket_id: str, enabled: bool) -> None:
        def apply() -> None:
            self.dag.tickets[ticket_id].step_mode = bool(enabled)
            self._touch(ticket_id)
        self._on_loop(apply)

    def abort(self) -> None:
        """Cancel in-flight workers (between stream chunks) and pending approvals."""
        with self._sessions_lock:
            self._aborted = True
            for session in self._sessions.values():
                session.cancel_event.set()
            pending = list(self._approvals) + list(self._step_requests.values())
        for future in pending:
            future.cancel()
        self._on_loop(lambda: None)

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
        _queue_put(self.event_queue, self._loop, events.MMA_STATE_UPDATE, snap)
        if self.on_state_change is not None:
            try:
                self.on_state_change(self)
            except OSError as exc:
                log.error("could not save track state: %s", exc)
                _queue_put(self.event_queue, self._loop, events.MMA_ERROR,
                           {"message": f"could not save track state: {exc}",
                            "hint": "check disk space and permissions of the project folder"})

    # -- the run loop ------------------------------------------------------------------------
    async def run(self, md_content: str = "") -> str:
        """Run until every ticket is completed, nothing more can run, or abort. Returns the final status."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._wake = asyncio.Event()
        if self.event_queue is not None and self.event_queue.loop is None:
            self.event_queue.bind(loop)
        for t in self.dag.tickets.values():      # resume: anything mid-flight starts again
            if t.status == IN_PROGRESS:
                self.engine.requeue(t.id)
                self._touch(t.id)
        executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix=f"mma-{self.track.id}")
        running: dict[str, asyncio.Future] = {}
        self.status, self.active_tier = "running", "Tier 3"
        self.track.status = "in_progress"
        self._emit_state()
        try:
            while not self._aborted:
                self._ask_step_approvals(loop)
                batch = self.engine.tick(limit=self.max_workers - len(running))
                released = time.time()                 # one moment for the whole batch
                for ticket in batch:
                    ticket.started_at, ticket.finished_at = released, None
                for ticket in batch:
                    self._start(ticket, running, executor, loop, md_content)
                self.running = set(running)
                if running:
                    self._request_emit()
                elif self.engine.is_complete() or self.engine.is_stuck():
                    break
                self._wake.clear()
                await self._wake.wait()
                for tid in [tid for tid, fut in running.items() if fut.done()]:
                    self._finish(tid, running.pop(tid))
            if self._aborted and running:
                await asyncio.wait(list(running.values()), timeout=2.0)
                for tid in [tid for tid, fut in running.items() if fut.done()]:
                    self._finish(tid, running.pop(tid))
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            self.running = set()
            if self._emit_handle is not None:
                self._emit_handle.cancel()
                self._emit_handle = None
        self.status = ("aborted" if self._aborted else
                       "completed" if self.engine.is_complete() else "blocked")
        self.track.status = self.status
        self.active_tier = None
        self._emit_state()
        return self.status

    def _start(self, ticket: Ticket, running: dict, executor, loop, md_content: str) -> None:
        context = WorkerContext(ticket.id, self.model_for(ticket), provider=self.provider)
        ticket.assigned_to = context.model_name
        self._touch(ticket.id)
        future = loop.run_in_executor(executor, self.worker_fn, ticket, context,
                                      ticket.context_requirements, self.event_queue, self,
                                      md_content, loop)
        future.add_done_callback(lambda _f: self._kick())
        running[ticket.id] = future

    def _finish(self, ticket_id: str, future: asyncio.Future) -> None:
        ticket = self.dag.tickets[ticket_id]
        self._touch(ticket_id)
        exc = future.exception() if not future.cancelled() else None
        if exc is not None:
            log.error("worker for %s raised: %r", ticket_id, exc)
            self.engine.mark_blocked(ticket_id, f"{type(exc).__name__}: {exc}")
        if ticket.status == IN_PROGRESS:         # a worker that did not report a verdict
            self.engine.mark_blocked(ticket_id, "worker ended without a result")
        if ticket.status == COMPLETED:
            self.engine.mark_completed(ticket_id)
        retryable = ticket.blocked_reason not in ("spawn rejected by the user",)
        if (ticket.status == BLOCKED and retryable and not self._aborted
                and ticket.retry_count < self.max_retries):
            ticket.retry_count += 1
            log.info("ticket %s blocked (%s); retry %d on %s", ticket_id, ticket.blocked_reason,
                     ticket.retry_count, self.model_for(ticket))
            self.engine.requeue(ticket_id)
        self._request_emit()

    def _ask_step_approvals(self, loop) -> None:
        for ticket in self.engine.awaiting_step_approval():
            if ticket.id in self._step_requests:
                continue
            if self.event_queue is None:     # nobody could ever answer: say so, do not hang
                self.engine.mark_blocked(ticket.id, "step approval needed, but no one is listening")
                self._touch(ticket.id)
                continue
            _rid, future = request_approval(self.event_queue, loop, "step", ticket.id, {
                "description": ticket.description, "model": self.model_for(ticket)})
            self._step_requests[ticket.id] = future
            future.add_done_callback(
                lambda f, tid=ticket.id: loop.call_soon_threadsafe(self._step_decided, tid, f))

    def _step_decided(self, ticket_id: str, future: concurrent.futures.Future) -> None:
        self._step_requests.pop(ticket_id, None)
        self._touch(ticket_id)
        approved = (not future.cancelled() and future.exception() is None
                    and bool((future.result() or {}).get("approved")))
        if approved:
            self.engine.approve_step(ticket_id)
        elif not self._aborted:
            self.engine.mark_blocked(ticket_id, "step rejected by the user")
        self._request_emit()
        self._kick()
