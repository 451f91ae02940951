"""Ticket DAG: validation, order, ready set, critical path; and the execution state machine.

Modelled on `graphlib.TopologicalSorter`: a small exact API with errors that
say what is wrong.  `TrackDAG` is the graph (immutable shape); the
`ExecutionEngine` is the state machine over ticket statuses that the
`ConductorEngine` drives.  Neither sleeps nor polls: `tick()` is called when
something happened (a ticket finished, an approval arrived).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from models import BLOCKED, COMPLETED, IN_PROGRESS, TODO, Ticket


class DAGError(ValueError):
    """The ticket graph is not a valid DAG."""


class CycleError(DAGError):
    """`cycle` lists the ticket ids around the loop, first id repeated at the end."""

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle))


class TrackDAG:
    def __init__(self, tickets: Iterable[Ticket]):
        self.tickets: dict[str, Ticket] = {}
        for t in tickets:
            if t.id in self.tickets:
                raise DAGError(f"duplicate ticket id '{t.id}'")
            self.tickets[t.id] = t
        self.dependents: dict[str, list[str]] = {tid: [] for tid in self.tickets}
        for t in self.tickets.values():
            seen = set()
            for dep in t.depends_on:
                if dep not in self.tickets:
                    raise DAGError(f"ticket '{t.id}' depends on unknown ticket '{dep}'")
                if dep == t.id:
                    raise CycleError([t.id, t.id])
                if dep in seen:
                    continue
                seen.add(dep)
                self.dependents[dep].append(t.id)
        self._order = self._topological_order()
        self._position = {tid: i for i, tid in enumerate(self._order)}
        self._default_critical_path: list[str] | None = None

    def _topological_order(self) -> list[str]:
        """Kahn's algorithm, stable in ticket list order; on failure, find and name a cycle."""
        indegree = {tid: len(set(t.depends_on)) for tid, t in self.tickets.items()}
        queue = deque(tid for tid in self.tickets if indegree[tid] == 0)
        order = []
        while queue:
            tid = queue.popleft()
            order.append(tid)
            for child in self.dependents[tid]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    queue.append(child)
        if len(order) != len(self.tickets):
            raise CycleError(self._find_cycle({tid for tid, d in indegree.items() if d > 0}))
        return order

    def _find_cycle(self, candidates: set[str]) -> list[str]:
        # Every node left with indegree > 0 reaches a cycle by following dependencies.
        start = min(candidates, key=list(self.tickets).index)
        path: list[str] = []
        index: dict[str, int] = {}
        node = start
        while node not in index:
            index[node] = len(path)
            path.append(node)
            node = next(d for d in self.tickets[node].depends_on if d in candidates)
        cycle = path[index[node]:]
        cycle.reverse()                       # show it in "runs before" direction
        return cycle + [cycle[0]]

    # -- queries ---------------------------------------------------------------
    def topological_order(self) -> list[str]:
        return list(self._order)

    def ready(self) -> list[Ticket]:
        """Tickets in `todo` whose dependencies are all completed, in topological order."""
        return [self.tickets[tid] for tid in self._order
                if self.tickets[tid].status == TODO
                and all(self.tickets[d].status == COMPLETED for d in self.tickets[tid].depends_on)]

    def position(self, ticket_id: str) -> int:
        """Index of the ticket in the topological order."""
        return self._position[ticket_id]

    def critical_path(self, weight: Callable[[Ticket], float] | None = None) -> list[str]:
        """The longest path by total weight (default 1 per ticket), as ticket ids in run order."""
        if weight is None:                     # the shape never changes: compute once
            if self._default_critical_path is None:
                self._default_critical_path = self._longest_path(lambda _t: 1.0)
            return list(self._default_critical_path)
        return self._longest_path(weight)

    def _longest_path(self, weight: Callable[[Ticket], float]) -> list[str]:
        best: dict[str, float] = {}
        prev: dict[str, str | None] = {}
        for tid in self._order:
            t = self.tickets[tid]
            base, via = 0.0, None
            for dep in t.depends_on:
                if best[dep] > base:
                    base, via = best[dep], dep
            best[tid] = base + weight(t)
            prev[tid] = via
        if not best:
            return []
        node: str | None = max(self._order, key=lambda tid: best[tid])
        path = []
        while node is not None:
            path.append(node)
            node = prev[node]
        return path[::-1]

    def blocked_by(self, ticket_id: str) -> list[str]:
        """Every ticket that can no longer run because `ticket_id` is blocked (transitively)."""
        out, stack = [], list(self.dependents[ticket_id])
        seen = set()
        while stack:
            tid = stack.pop()
            if tid in seen:
                continue
            seen.add(tid)
            out.append(tid)
            stack.extend(self.dependents[tid])
        return out


class ExecutionEngine:
    """Which tickets may start now.

    A ready ticket starts when it is queued (every ready ticket is, with
    `auto_queue`; otherwise the user queues it) and, if it is in `step_mode`,
    once its step has been approved.

    Readiness is kept incrementally (a count of unmet dependencies per ticket),
    so finishing one ticket of a 1,000-ticket track costs its dependents, not a
    scan of the whole track.  Call `mark_completed` for every completion.
    """

    def __init__(self, dag: TrackDAG, auto_queue: bool = False):
        self.dag = dag
        self.auto_queue = auto_queue
        self.queued: set[str] = set()
        self.step_approved: set[str] = set()
        self.paused = False
        self._completed = {tid for tid, t in dag.tickets.items() if t.status == COMPLETED}
        self._unmet = {tid: sum(1 for d in set(t.depends_on) if d not in self._completed)
                       for tid, t in dag.tickets.items()}
        self._candidates = {tid for tid, n in self._unmet.items() if n == 0 and tid not in self._completed}

    def queue(self, ticket_id: str) -> None:
        self._check(ticket_id)
        self.queued.add(ticket_id)

    def approve_step(self, ticket_id: str) -> None:
        self._check(ticket_id)
        self.step_approved.add(ticket_id)

    def _check(self, ticket_id: str) -> None:
        if ticket_id not in self.dag.tickets:
            raise KeyError(f"no ticket '{ticket_id}' in this track")

    def ready(self) -> list[Ticket]:
        """`todo` tickets whose dependencies are completed, in topological order."""
        tickets = self.dag.tickets
        ready = [tid for tid in self._candidates if tickets[tid].status == TODO]
        ready.sort(key=self.dag.position)
        return [tickets[tid] for tid in ready]

    def awaiting_step_approval(self) -> list[Ticket]:
        return [t for t in self.ready() if t.step_mode and t.id not in self.step_approved
                and (self.auto_queue or t.id in self.queued)]

    def tick(self, limit: int | None = None) -> list[Ticket]:
        """Mark and return the tickets that start now (at most `limit`)."""
        if self.paused or (limit is not None and limit <= 0):
            return []
        started: list[Ticket] = []
        for t in self.ready():
            if limit is not None and len(started) >= limit:
                break
            if not (self.auto_queue or t.id in self.queued):
                continue
            if t.step_mode and t.id not in self.step_approved:
                continue
            t.status = IN_PROGRESS
            started.append(t)
        return started

    def mark_completed(self, ticket_id: str) -> None:
        """Record a completion (idempotent); dependents whose last dependency this was become ready."""
        self.dag.tickets[ticket_id].status = COMPLETED
        if ticket_id in self._completed:
            return
        self._completed.add(ticket_id)
        self._candidates.discard(ticket_id)
        for child in self.dag.dependents[ticket_id]:
            self._unmet[child] -= 1
            if self._unmet[child] == 0:
                self._candidates.add(child)

    def mark_blocked(self, ticket_id: str, reason: str) -> None:
        t = self.dag.tickets[ticket_id]
        t.status = BLOCKED
        t.blocked_reason = reason

    def requeue(self, ticket_id: str) -> None:
        """Back to todo (retry, or resume after a crash); keeps retry_count."""
        t = self.dag.tickets[ticket_id]
        t.status = TODO
        self.step_approved.discard(ticket_id)

    def counts(self) -> dict[str, int]:
        out = {TODO: 0, IN_PROGRESS: 0, COMPLETED: 0, BLOCKED: 0}
        for t in self.dag.tickets.values():
            out[t.status] = out.get(t.status, 0) + 1
        return out

    def is_complete(self) -> bool:
        return len(self._completed) == len(self.dag.tickets)

    def is_stuck(self) -> bool:
        """Nothing running and nothing can ever start (blocked upstream, or empty ready set)."""
        if self.is_complete():
            return False
        if any(t.status == IN_PROGRESS for t in self.dag.tickets.values()):
            return False
        return not self.ready()
