"""A Tier 3 worker: one ticket, a clean model session, and an outcome for the engine.

The worker never writes ticket state.  It asks for approvals (`approvals.confirm_spawn`,
`approvals.confirm_execution`), talks to the model through the module-level
`ai_client.send` bound to its own fresh session, streams what the model says as
events, and returns a `WorkerOutcome`: what happened (`OutcomeKind`), the text, the
reason, the tokens billed and whether a retry makes sense.  The `ConductorEngine`
applies that outcome on its loop thread, so a state snapshot never sees a ticket
half-written.  Called with no engine (a script, a test), the worker applies the
outcome to the ticket itself: nobody else owns it then.

The engine reaches the worker through `run_worker_lifecycle(ticket, context,
context_files, event_queue, engine, md_content, loop)` in that positional order, and
is the worker's host (`WorkerHost`): run settings, abort hooks, approval bookkeeping.

What a worker sends is laid out for the provider's prompt cache: the part every worker of
the track shares comes first and is byte-identical (the Tier 3 system prompt holding the
curated context and the track's brief, `shared_context`, and the tool declarations); the
ticket's own part follows in the user message (its `context_requirements` files in full, then
the ticket prompt), then its tool rounds.  `WorkerOutcome.received` says what it was sent.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import ai_client
import approvals
import events
from context_builder import FilesWithinBudget, context_window_for, estimate_tokens, files_within_budget
from models import BLOCKED, COMPLETED, TODO, Ticket, Track, WorkerContext
from providers.base import CancelledByUser, ProviderError, Usage
from run_settings import RunSettings
from tools import registry as tool_registry
from tools import toolbox

log = logging.getLogger(__name__)

TIER3_ROLE = "Tier 3 (Worker)"
TIER3_SYSTEM = """You are Tier 3 (Worker) of a multi-model coding pipeline. Do exactly one ticket.
Use the tools when you need to read or change files; writes and shell commands need the user's approval.
Finish with a short report. If you cannot do the ticket, reply with a first line starting with
`BLOCKED:` and the reason."""


ABORTED = "aborted"                        # the reason an aborted ticket (back in todo) shows


def worker_stream_id(ticket_id: str) -> str:
    return f"Tier 3 (Worker): {ticket_id}"


class OutcomeKind(enum.Enum):
    DONE = "done"
    BLOCKED = "blocked"                        # the model said it cannot do the ticket
    ERROR = "error"                            # the provider failed, or the worker crashed
    REJECTED = "rejected"                      # the user refused the spawn
    APPROVAL_TIMED_OUT = "timed_out"           # nobody answered the spawn approval in time
    ABORTED = "aborted"                        # the run was aborted (mid-call or mid-approval)


# What each kind leaves the ticket as, and whether another attempt can help.
_TICKET_STATUS = {OutcomeKind.DONE: COMPLETED, OutcomeKind.ABORTED: TODO}
_RETRYABLE = {OutcomeKind.BLOCKED, OutcomeKind.ERROR}


@dataclass(frozen=True)
class WorkerOutcome:
    ticket_id: str
    kind: OutcomeKind
    text: str = ""
    reason: str = ""                           # the blocked reason shown to the user
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finished_at: float = field(default_factory=time.time)
    # What the worker was sent (`received_summary`): shown in the ticket's details.
    received: dict = field(default_factory=dict)

    @property
    def retryable(self) -> bool:
        """A blocked or failed attempt may succeed on a stronger model; a refusal, a
        time-out or an abort is the user's decision and is not retried."""
        return self.kind in _RETRYABLE

    @property
    def ticket_status(self) -> str:
        return _TICKET_STATUS.get(self.kind, BLOCKED)

    def record_on(self, ticket: Ticket) -> None:
        """Write everything but the status: result, reason, tokens, end time."""
        ticket.result = self.text
        ticket.blocked_reason = self.reason
        ticket.finished_at = self.finished_at
        ticket.usage.add(self.usage.input_tokens, self.usage.output_tokens)
        if self.received:
            ticket.received = dict(self.received)


class WorkerHost(Protocol):
    """What a worker needs from whoever runs it (the `ConductorEngine`)."""
    settings: RunSettings
    base_dir: str

    def approval_requested(self, future: concurrent.futures.Future) -> None:
        """An approval is pending; abort cancels it."""

    def session_started(self, ticket_id: str, session: ai_client.Session) -> None:
        """The worker's model session exists; abort cancels it."""

    def session_ended(self, ticket_id: str) -> None: ...


def shared_context(md_content: str, track: Track) -> str:
    """The context every worker of `track` gets: the curated project context, then the
    track's brief.  The same bytes for each worker, so the provider caches them once."""
    brief = f"## Track {track.id}: {track.title}\n\n{track.description}".rstrip()
    return f"{md_content}\n\n{brief}" if md_content else brief


def received_summary(md_content: str, files: FilesWithinBudget | None, prompt: str, usage: Usage,
                     cached_content: bool) -> dict:
    """What a worker was sent and billed, for the ticket's details: the shared prefix's tokens
    (estimated), its own files with their tokens, the prompt's, and the input billed, with the
    part read from / written to the prompt cache."""
    system, _breaks = ai_client.layout_system(md_content, TIER3_SYSTEM)
    own = [{"path": path, "tokens": tokens} for path, tokens in (files.files if files is not None else ())]
    return {"prefix_tokens": estimate_tokens(system), "files": own,
            "file_tokens": sum(f["tokens"] for f in own), "prompt_tokens": estimate_tokens(prompt),
            "input": usage.input_tokens, "cache_read": usage.cache_read_tokens,
            "cache_write": usage.cache_write_tokens, "output": usage.output_tokens,
            "explicit_cache": cached_content}


def build_worker_prompt(ticket: Ticket, notes: str = "") -> str:
    parts = [f"<TICKET>\nTicket {ticket.id}: {ticket.description}\n</TICKET>"]
    if ticket.context_requirements:
        parts.append("Relevant files: " + ", ".join(ticket.context_requirements))
    if ticket.retry_count:
        parts.append(f"This is retry {ticket.retry_count}. Previous attempt: {ticket.blocked_reason}")
        if ticket.diagnosis:
            parts.append(f"QA diagnosis: {ticket.diagnosis}")
    if notes:
        parts.append(notes)
    return "\n\n".join(parts)


# A ticket's context files may fill this share of the worker model's context window; the rest
# is for the track's context, the prompt and the tool rounds.
TICKET_FILES_SHARE = 0.5


def _files_context(paths: list[str] | None, base_dir: str, model: str, ticket_id: str, stream_id: str,
                   event_queue: events.AsyncEventQueue | None) -> FilesWithinBudget | None:
    """The ticket's files for the worker's own part of the prompt.  A file that is missing,
    outside the root or over the budget is named with the reason in a note the worker reads,
    in the log, and in an `ErrorEvent` for the user; one shown only as a skeleton in a `LogLine`."""
    if not paths:
        return None
    files = files_within_budget(paths, base_dir, int(context_window_for(model) * TICKET_FILES_SHARE))
    if files.left_out:
        what = "; ".join(f"{e.path} ({e.message})" for e in files.left_out)
        log.warning("ticket %s: context files left out: %s", ticket_id, what)
        events.emit(event_queue, events.ErrorEvent(
            f"ticket {ticket_id}: context file(s) left out: {what}",
            "the worker runs without them and was told so; fix the ticket's context_requirements "
            "or make the files smaller", ticket_id=ticket_id, stream_id=stream_id))
    if files.trimmed:
        what = ", ".join(files.trimmed)
        log.info("ticket %s: context files shown as skeletons to fit the budget: %s", ticket_id, what)
        events.emit(event_queue, events.LogLine(f"ticket {ticket_id}: shown as skeletons to fit the "
                                                f"context budget: {what}"))
    return files


_SPAWN_REFUSALS = {
    approvals.REJECTED: (OutcomeKind.REJECTED, "spawn rejected by the user"),
    approvals.TIMED_OUT: (OutcomeKind.APPROVAL_TIMED_OUT, "spawn approval timed out"),
    approvals.CANCELLED: (OutcomeKind.ABORTED, ABORTED),
}


def run_worker_lifecycle(ticket: Ticket, context: WorkerContext, context_files: list[str] | None = None,
                         event_queue: events.AsyncEventQueue | None = None, engine: WorkerHost | None = None,
                         md_content: str = "", loop: asyncio.AbstractEventLoop | None = None) -> WorkerOutcome:
    """Run one ticket on its Tier 3 model in a clean session; return what happened.

    Streams chunks as `mma_stream` events and always ends with one `response` event
    (`{"text", "stream_id": "Tier 3 (Worker): <id>", "status"}`), so the GUI never
    waits for output that will not come.  `loop` binds `event_queue` if nothing has yet.
    """
    if event_queue is not None and event_queue.loop is None and loop is not None:
        event_queue.bind(loop)
    stream_id = worker_stream_id(ticket.id)
    model = context.model_name
    billed = Usage()
    received: dict = {}

    def finish(kind: OutcomeKind, text: str = "", reason: str = "") -> WorkerOutcome:
        outcome = WorkerOutcome(ticket.id, kind, text, reason, billed, model, received=received)
        if engine is None:                     # nobody else owns this ticket
            outcome.record_on(ticket)
            ticket.status = outcome.ticket_status
        if kind is OutcomeKind.ERROR:
            events.emit(event_queue, events.ErrorEvent(reason, ticket_id=ticket.id, stream_id=stream_id))
        events.emit(event_queue, events.Response(text or (f"[{reason}]" if reason else ""), stream_id,
                                                 kind.value, ticket.id))
        log.info("ticket %s finished: %s (%d in / %d out tokens)", ticket.id, kind.value,
                 billed.input_tokens, billed.output_tokens)
        return outcome

    prompt = build_worker_prompt(ticket, context.notes)
    settings = engine.settings if engine is not None else None
    timeout = settings.approval_timeout if settings is not None else approvals.DEFAULT_APPROVAL_TIMEOUT
    on_request = engine.approval_requested if engine is not None else None
    if engine is not None and settings is not None and settings.require_spawn_approval:
        spawn = approvals.confirm_spawn(TIER3_ROLE, prompt, md_content, event_queue, ticket.id,
                                        timeout=timeout, model=model, on_request=on_request)
        approved, prompt, md_content = spawn
        if not approved:
            kind, reason = _SPAWN_REFUSALS[spawn.decision.outcome]
            if kind is OutcomeKind.APPROVAL_TIMED_OUT:
                reason = f"{reason}: {spawn.decision.reason}"
            return finish(kind, "", reason)

    def stream(chunk: str) -> None:
        events.emit(event_queue, events.StreamChunk(stream_id, chunk))

    def approve_tool(name: str, args: dict, description: dict) -> dict:
        decision = approvals.confirm_execution({"tool": name, "args": args, "description": description},
                                               event_queue, ticket.id, timeout=timeout, kind="tool",
                                               on_request=on_request)
        return decision.tool_answer(args)

    tools: bool | list = bool(settings is not None and settings.tools_enabled)
    if tools and context.read_only:
        tools = tool_registry.READ_ONLY_SPECS
    base_dir = context.base_dir or (engine.base_dir if engine is not None else ".")
    provider = context.provider or (settings.provider if settings is not None else None)
    kind, text, reason = OutcomeKind.DONE, "", ""
    with ai_client.session_scope(provider, model, label=stream_id):
        session = ai_client.reset_session()    # a clean context, for this thread only
        if engine is not None:
            engine.session_started(ticket.id, session)
        files = None
        try:
            files = _files_context(context_files, base_dir, model, ticket.id, stream_id, event_queue)
            # the ticket's own part goes after the shared prefix: its files, then the prompt
            message = f"{files.markdown}\n\n{prompt}" if files is not None and files.markdown else prompt
            with toolbox.servers_of(engine.base_dir if engine is not None else base_dir, base_dir):
                text = ai_client.send(md_content, message, base_dir,
                                      pre_tool_callback=approve_tool if tools else None, stream_callback=stream,
                                      system_prompt=TIER3_SYSTEM, tools=tools)
            if text.lstrip().upper().startswith("BLOCKED"):
                kind, reason = OutcomeKind.BLOCKED, text.strip().splitlines()[0][:500]
        except CancelledByUser:
            kind, reason = OutcomeKind.ABORTED, ABORTED
        except ProviderError as exc:
            kind, reason, text = OutcomeKind.ERROR, exc.user_message(), exc.partial_text
        except Exception as exc:               # surface everything: never a silent worker death
            log.exception("worker for ticket %s crashed", ticket.id)
            kind, reason = OutcomeKind.ERROR, f"{type(exc).__name__}: {exc}"
        finally:
            if engine is not None:
                engine.session_ended(ticket.id)
            billed = ai_client.current_session().usage
            received = received_summary(md_content, files, prompt, billed,
                                        ai_client.current_session().explicit_cache is not None)
    return finish(kind, text, reason)
