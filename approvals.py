"""Asking the user: spawn, step and tool approvals carried by futures.

An approval is an `events.ApprovalRequest` carrying a `concurrent.futures.Future`;
whoever answers (the GUI, the hook API, the headless policy, a test) resolves it with
`{"approved": bool, **edits}`.  The asking thread waits on the future with a timeout,
never polls.  Every approval of the pipeline goes through `ask()`: `confirm_spawn` and
`confirm_execution` are its two faces, and the engine's own step approvals publish
through `request()` and subscribe to the future instead of blocking the loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import events

log = logging.getLogger(__name__)

DEFAULT_APPROVAL_TIMEOUT = 600.0

APPROVED = "approved"
REJECTED = "rejected"
TIMED_OUT = "timed_out"
CANCELLED = "cancelled"          # abort, or the app closing the request

_request_ids = itertools.count(1)


@dataclass(frozen=True)
class Decision:
    """The answer to one request.  Truthy when approved, so it reads as the old bool."""
    approved: bool
    outcome: str                   # approved | rejected | timed_out | cancelled
    edits: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    reason: str = ""               # why it was not approved, for the ticket's blocked reason

    def __bool__(self) -> bool:
        return self.approved

    def tool_answer(self, args: dict) -> dict:
        """What a tool call's `pre_tool_callback` returns: the verdict and the (maybe edited) args."""
        return {"approved": self.approved, "args": self.edits.get("args", args)}


class SpawnDecision(tuple):
    """`(approved, prompt, context_md)`, the shape `confirm_spawn` returns; `.decision` tells
    a rejection by the user from a time-out or a cancellation."""
    decision: Decision

    def __new__(cls, decision: Decision, prompt: str, context_md: str) -> SpawnDecision:
        self = super().__new__(cls, (decision.approved, prompt, context_md))
        self.decision = decision
        return self


def request(event_queue: events.AsyncEventQueue | None, kind: str, ticket_id: str,
            fields: dict[str, Any]) -> tuple[str, concurrent.futures.Future]:
    """Publish a request; returns its id and the future that will carry the answer."""
    future: concurrent.futures.Future = concurrent.futures.Future()
    request_id = f"{kind}-{ticket_id}-{next(_request_ids)}"
    events.emit(event_queue, events.ApprovalRequest(request_id=request_id, ticket_id=ticket_id,
                                                    kind=kind, future=future, **fields))
    return request_id, future


def wait(future: concurrent.futures.Future, timeout: float | None, request_id: str,
         event_queue: events.AsyncEventQueue | None) -> Decision:
    """Block until the request is answered, times out or is cancelled (abort)."""
    try:
        answer = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        log.warning("approval %s timed out after %ss", request_id, timeout)
        events.emit(event_queue, events.ApprovalClosed(request_id, "timeout"))
        return Decision(False, TIMED_OUT, request_id=request_id,
                        reason=f"no answer to the approval within {timeout:.0f}s")
    except concurrent.futures.CancelledError:
        events.emit(event_queue, events.ApprovalClosed(request_id, "cancelled"))
        return Decision(False, CANCELLED, request_id=request_id, reason="the approval was cancelled")
    if not isinstance(answer, dict):
        answer = {"approved": bool(answer)}
    approved = bool(answer.get("approved"))
    edits = {k: v for k, v in answer.items() if k != "approved"}
    return Decision(approved, APPROVED if approved else REJECTED, edits, request_id,
                    "" if approved else "rejected by the user")


def ask(event_queue: events.AsyncEventQueue | None, kind: str, ticket_id: str, fields: dict[str, Any],
        timeout: float | None = DEFAULT_APPROVAL_TIMEOUT,
        on_request: Callable[[concurrent.futures.Future], None] | None = None) -> Decision:
    """Publish a request and wait for its answer.  `on_request(future)` lets the caller's
    owner cancel the wait (abort) before it is answered."""
    if event_queue is None:                    # nobody could ever answer: say so, do not wait
        log.warning("%s approval for %s refused: no one is listening for approvals", kind, ticket_id)
        return Decision(False, CANCELLED, reason="no one is listening for approvals")
    request_id, future = request(event_queue, kind, ticket_id, fields)
    if on_request is not None:
        on_request(future)
    return wait(future, timeout, request_id, event_queue)


def _bind(event_queue: events.AsyncEventQueue | None, loop: asyncio.AbstractEventLoop | None) -> None:
    if event_queue is not None and event_queue.loop is None and loop is not None:
        event_queue.bind(loop)


def confirm_spawn(role: str, prompt: str, context_md: str, event_queue, ticket_id: str,
                  loop: asyncio.AbstractEventLoop | None = None,
                  timeout: float | None = DEFAULT_APPROVAL_TIMEOUT, *, model: str | None = None,
                  on_request: Callable[[concurrent.futures.Future], None] | None = None
                  ) -> SpawnDecision:
    """Ask to spawn a worker; the user may edit its prompt and context.

    Returns `(approved, prompt, context_md)`; its `.decision` says whether a refusal was
    the user's, a time-out or a cancellation.
    """
    _bind(event_queue, loop)
    decision = ask(event_queue, "spawn", ticket_id,
                   {"role": role, "prompt": prompt, "context_md": context_md, "model": model},
                   timeout, on_request)
    return SpawnDecision(decision, str(decision.edits.get("prompt", prompt)),
                         str(decision.edits.get("context_md", context_md)))


def confirm_execution(payload: dict, event_queue, ticket_id: str,
                      loop: asyncio.AbstractEventLoop | None = None,
                      timeout: float | None = DEFAULT_APPROVAL_TIMEOUT, kind: str = "step", *,
                      on_request: Callable[[concurrent.futures.Future], None] | None = None) -> Decision:
    """Ask to run a step or a tool call.  The `Decision` is truthy when approved and keeps
    the user's edits (e.g. changed tool `args`)."""
    _bind(event_queue, loop)
    return ask(event_queue, kind, ticket_id, dict(payload), timeout, on_request)
