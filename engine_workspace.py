"""The engine's steps for a track's git workspace: `WorkspaceSteps`, a mixin of `ConductorEngine`.

`ConductorEngine.run()` calls these at its few integration points (docs/guide_mma.md, "Git"):
`_open_workspace` before the loop, `_run_in_workspace` as each worker thread's body (the
ticket's worktree first, then the worker in it), `_start_landing` / `_landed` in the loop (one
DONE ticket at a time, in DAG order: commit, merge onto the track branch, QA), and
`_close_workspace` in its `finally`.  Every git call runs on a thread of its own
(`background.start`), never on the loop thread; ticket state is changed only here on the loop.

What the mixin needs from the engine is declared at the top of the class.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import background
import events
from dag_engine import ExecutionEngine, TrackDAG
from models import COMPLETED, IN_PROGRESS, Ticket, Track, WorkerContext
from track_git import GitError
from track_workspace import Landing, LandingKind, TrackWorkspace
from worker import OutcomeKind, WorkerOutcome

log = logging.getLogger(__name__)


class WorkspaceSteps:
    # ---------------------------------------------------------------- provided by ConductorEngine
    track: Track
    dag: TrackDAG
    execution: ExecutionEngine
    event_queue: events.AsyncEventQueue | None
    worker_fn: Callable[..., WorkerOutcome]
    workspace: TrackWorkspace | None
    _to_land: dict[str, WorkerOutcome]
    _landing: asyncio.Future | None
    _landing_ids: list[str]

    if TYPE_CHECKING:
        def _touch(self, ticket_id: str) -> None: ...
        def _kick(self) -> None: ...
        def _request_emit(self) -> None: ...
        def _diagnose_or_retry(self, ticket: Ticket, retryable: bool, failure: str,
                               loop: asyncio.AbstractEventLoop, diagnoses: dict[str, asyncio.Future]) -> None: ...

    async def _open_workspace(self, loop: asyncio.AbstractEventLoop) -> bool:
        """The track branch and its worktree; tickets whose commits are already on it are completed."""
        workspace = self.workspace
        assert workspace is not None
        try:
            landed = await background.start(loop, workspace.open, name=f"mma-{self.track.id}-git-open")
        except (GitError, OSError) as exc:
            log.error("track %s: git workspace failed: %s", self.track.id, exc)
            events.emit(self.event_queue, events.ErrorEvent(
                f"track {self.track.id} cannot start: {exc}", "fix the repository (see the message), then resume"))
            return False
        for note in workspace.notes:
            log.info("track %s: %s", self.track.id, note)
            events.emit(self.event_queue, events.LogLine(note))
        for tid, sha in landed.items():
            ticket = self.dag.tickets.get(tid)
            if ticket is not None:
                ticket.commit = sha
                if ticket.status != COMPLETED:        # landed just before a crash: never redone
                    log.info("ticket %s is already on the track branch (%s): completed", tid, sha[:7])
                    ticket.blocked_reason = ""
                    self.execution.mark_completed(tid)
                self._touch(tid)
        return True

    async def _close_workspace(self) -> None:
        assert self.workspace is not None
        waiting = list(self._to_land) + self.workspace.unverified_ids()
        for tid in waiting:                            # aborted before landing (or its QA): they run again
            if self.dag.tickets[tid].status == IN_PROGRESS:
                self.execution.requeue(tid)
                self._touch(tid)
        self._to_land.clear()
        try:
            await background.start(asyncio.get_running_loop(), self.workspace.close,
                                   name=f"mma-{self.track.id}-git-close")
        except asyncio.CancelledError:
            self.workspace.close()
            raise

    def _run_in_workspace(self, ticket: Ticket, context: WorkerContext, md_content: str,
                          loop: asyncio.AbstractEventLoop) -> WorkerOutcome:
        """Worker thread: the ticket's worktree, then the worker in it; an attempt that is not DONE is discarded."""
        assert self.workspace is not None
        try:
            place = self.workspace.prepare(ticket.id)
        except GitError as exc:
            log.error("no worktree for %s: %s", ticket.id, exc)
            return WorkerOutcome(ticket.id, OutcomeKind.ERROR, reason=f"could not make its worktree: {exc}",
                                 model=context.model_name)
        context.base_dir, context.read_only = place.base_dir, place.read_only
        outcome = None
        try:
            outcome = self.worker_fn(ticket, context, ticket.context_requirements, self.event_queue, self,
                                     md_content, loop)
            return outcome
        finally:
            if not (isinstance(outcome, WorkerOutcome) and outcome.kind is OutcomeKind.DONE):
                self.workspace.discard(ticket.id)

    def _start_landing(self, loop: asyncio.AbstractEventLoop, idle: bool) -> None:
        """Land one finished ticket (the first in DAG order), or, when nothing else runs, check a level."""
        workspace = self.workspace
        if workspace is None or self._landing is not None:
            return
        call: Callable[[], list[Landing]]
        if self._to_land:
            tid = min(self._to_land, key=self.dag.position)
            outcome, ticket = self._to_land.pop(tid), self.dag.tickets[tid]
            model = outcome.model or ticket.assigned_to
            call = functools.partial(workspace.land_all, tid, ticket.description, model)
            self._landing_ids = [tid]
        elif idle and workspace.has_unverified():
            call, self._landing_ids = workspace.verify_level, workspace.unverified_ids()
        else:
            return
        self._landing = background.start(loop, call, name=f"mma-{self.track.id}-git-land")
        self._landing.add_done_callback(lambda _f: self._kick())

    def _landed(self, future: asyncio.Future, loop: asyncio.AbstractEventLoop,
                diagnoses: dict[str, asyncio.Future]) -> None:
        """Apply what landing did to each ticket (loop thread)."""
        self._landing = None
        if future.cancelled() or future.exception() is not None:
            error = "cancelled" if future.cancelled() else repr(future.exception())
            log.error("landing %s failed: %s", self._landing_ids, error)
            results = [Landing(tid, LandingKind.ERROR, message=f"landing failed: {error}") for tid in self._landing_ids]
        else:
            results = future.result()
        for landing in results:
            self._apply_landing(landing, loop, diagnoses)
        self._request_emit()

    def _apply_landing(self, landing: Landing, loop: asyncio.AbstractEventLoop,
                       diagnoses: dict[str, asyncio.Future]) -> None:
        assert self.workspace is not None
        ticket, kind = self.dag.tickets[landing.ticket_id], landing.kind
        self._touch(ticket.id)
        if landing.qa is not None:
            events.emit(self.event_queue, events.LogLine(
                f"QA {landing.qa.verdict} after {', '.join(landing.qa.tickets)} ({landing.qa.seconds:.1f} s)"))
        if kind in (LandingKind.COMMITTED, LandingKind.NO_CHANGE):
            ticket.commit, ticket.blocked_reason = landing.sha, ""
            self.execution.mark_completed(ticket.id)
        elif kind is LandingKind.CONFLICT and self.workspace.conflict_rerun(landing):
            ticket.blocked_reason = f"{landing.message}: running again on top of the new track head"
            self.execution.requeue(ticket.id)
        elif kind is LandingKind.CONFLICT:
            self.execution.mark_blocked(ticket.id, f"{landing.message} again; its work is kept on branch "
                                                   f"{self.workspace.ticket_branch(ticket.id)}")
        elif kind is LandingKind.QA_FAILED and landing.qa is not None:
            lines = [ln for ln in landing.qa.output.splitlines() if ln.strip()]
            reason = landing.message + (f": {lines[-1].strip()[:200]}" if lines else "")
            self.execution.mark_blocked(ticket.id, reason)
            self._diagnose_or_retry(ticket, True, f"{reason}\n\nOutput of the QA command:\n"
                                    f"{landing.qa.output[-4000:]}", loop, diagnoses)
        elif kind is LandingKind.CANCELLED:
            self.execution.requeue(ticket.id)
        elif kind is not LandingKind.MERGED:          # MERGED: in progress until its level's QA
            self.execution.mark_blocked(ticket.id, landing.message)

