"""What the MMA windows compute, without a window: no imgui import, unit-testable.

The panels (`panel_mma_dashboard`, `panel_dag`, `panel_streams`, `panel_usage`)
call these and only draw the results:

- ticket table: `ticket_duration`, `ticket_run_and_wait`, `ticket_times`, `ticket_received` (what its
  worker was sent); Saved tracks: `saved_track_rows`
- Ticket DAG: `dag_levels`, `dag_positions`, `dag_links`
- Tier Streams: `LineCache`, `wrap_line`, `update_line_cache` (wrapped lines, O(new text) on appends)
- Usage & Cost: `tier_cost`, `usage_table` (one row per tier and model, each priced at its
  own model, cached input at the cached price; the Discussion panel's chat as a "Chat" row;
  what it would have cost without caching)
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from usage_cost import summary_line, usage_costs

if TYPE_CHECKING:
    from gui.mma_state import MMAState
    from project import ModelPrice

log = logging.getLogger(__name__)

TIERS = ("Tier 1", "Tier 2", "Tier 3", "Tier 4")
CHAT_USAGE = "Chat"              # the chat's bucket in `MMAState.mma_tier_usage`
NODE_W, NODE_H, NODE_GAP_X, NODE_GAP_Y = 150.0, 80.0, 50.0, 24.0


# ======================================================================== dashboard
def ticket_duration(ticket: dict, now: float) -> str:
    """How long the ticket's last attempt took ("1.4 s"), or has been running ("3.2 s ..."),
    from its `started_at` / `finished_at` (epoch seconds); "-" before it started."""
    started, finished = ticket.get("started_at"), ticket.get("finished_at")
    if not isinstance(started, (int, float)):
        return "-"
    if isinstance(finished, (int, float)):
        return _seconds(finished - started)
    return _seconds(now - started) + " ..." if ticket.get("status") == "in_progress" else "-"


def waited_seconds(ticket: dict, waits: list[tuple[float, float | None]] | None, now: float) -> float:
    """Seconds the ticket's last attempt spent waiting for approvals (asked to answered)."""
    started = ticket.get("started_at")
    if not isinstance(started, (int, float)) or not waits:
        return 0.0
    finished = ticket.get("finished_at")
    end_of_attempt = finished if isinstance(finished, (int, float)) else now
    total = 0.0
    for asked, answered in waits:
        lo, hi = max(asked, started), min(answered if answered is not None else now, end_of_attempt)
        total += max(0.0, hi - lo)
    return total


def ticket_run_and_wait(ticket: dict, waits: list[tuple[float, float | None]] | None,
                        now: float) -> tuple[str, str]:
    """The Time column: (running time, time spent waiting for approvals) of the last attempt,
    e.g. ("0.5 s", "24.5 s") -- a ticket held 24 s by its spawn approval ran for 0.5 s."""
    started, finished = ticket.get("started_at"), ticket.get("finished_at")
    if not isinstance(started, (int, float)):
        return "-", ""
    end = finished if isinstance(finished, (int, float)) else now
    waited = waited_seconds(ticket, waits, now)
    running = max(0.0, end - started - waited)
    live = not isinstance(finished, (int, float)) and ticket.get("status") == "in_progress"
    if not isinstance(finished, (int, float)) and not live:
        return "-", ""
    return _seconds(running) + (" ..." if live else ""), _seconds(waited) if waited >= 0.05 else ""


def _seconds(value: float) -> str:
    value = max(0.0, value)
    return f"{value:.1f} s" if value < 60 else f"{int(value // 60)} m {int(value % 60):02d} s"


def ticket_times(ticket: dict) -> str:
    """The tooltip of the Time column: start and finish clock times with milliseconds."""
    def clock(ts: Any) -> str:
        if not isinstance(ts, (int, float)):
            return "-"
        return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"
    return f"started {clock(ticket.get('started_at'))}\nfinished {clock(ticket.get('finished_at'))}"


def ticket_received(ticket: dict) -> str:
    """The Tokens column's tooltip: what the ticket's last worker was sent and billed
    (`Ticket.received`): the shared prefix, its own files, the prompt, the cached part."""
    got = ticket.get("received") or {}
    if not got:
        return ""
    files = got.get("files") or []
    lines = [f"Shared prefix: {got.get('prefix_tokens', 0):,} tokens (instructions, curated context, track brief)"]
    if files:
        listed = ", ".join(f"{f.get('path')} ({int(f.get('tokens', 0)):,})" for f in files)
        lines.append(f"Own files: {len(files)}, {int(got.get('file_tokens', 0)):,} tokens: {listed}")
    else:
        lines.append("Own files: none")
    lines.append(f"Ticket prompt: {got.get('prompt_tokens', 0):,} tokens")
    total, read, write = int(got.get("input", 0)), int(got.get("cache_read", 0)), int(got.get("cache_write", 0))
    how = " (from the track's explicit cache)" if got.get("explicit_cache") else ""
    lines.append(f"Billed input: {total:,} tokens: {read:,} read from the cache{how}, {write:,} written to it, "
                 f"{max(0, total - read - write):,} uncached")
    lines.append(f"Output: {int(got.get('output', 0)):,} tokens")
    return "\n".join(lines)


def saved_track_rows(saved_tracks: list[dict], active_track_id: str | None, mma: MMAState) -> list[dict]:
    """The Saved tracks rows; the running track shows its live progress, not the file's."""
    rows = []
    for t in saved_tracks:
        if t["id"] == active_track_id and mma.active_tickets and mma.mma_status in ("running", "planning"):
            t = {**t, "status": "in_progress", "live": True,
                 "tickets_done": sum(1 for x in mma.active_tickets if x.get("status") == "completed"),
                 "tickets_total": len(mma.active_tickets)}
        rows.append(t)
    return rows


# ======================================================================== ticket DAG
def dag_levels(tickets: list[dict]) -> dict[str, int]:
    """Topological level per ticket: 0 for roots, else 1 + the deepest dependency."""
    by_id = {str(t.get("id")): t for t in tickets}
    levels: dict[str, int] = {}

    def level(tid: str, stack: tuple[str, ...] = ()) -> int:
        if tid in levels:
            return levels[tid]
        if tid in stack:                          # a cycle can't come from the engine; don't recurse forever
            log.error("dependency cycle through %s", tid)
            return 0
        deps = [d for d in by_id[tid].get("depends_on") or [] if d in by_id]
        levels[tid] = 0 if not deps else 1 + max(level(d, stack + (tid,)) for d in deps)
        return levels[tid]
    for tid in by_id:
        level(tid)
    return levels


def dag_positions(tickets: list[dict]) -> dict[str, tuple[float, float]]:
    """Canvas positions: one column per level, tickets stacked in list order."""
    levels = dag_levels(tickets)
    rows: dict[int, int] = {}
    out = {}
    for t in tickets:
        tid = str(t.get("id"))
        lv = levels[tid]
        row = rows.get(lv, 0)
        rows[lv] = row + 1
        out[tid] = (lv * (NODE_W + NODE_GAP_X), row * (NODE_H + NODE_GAP_Y))
    return out


def dag_links(tickets: list[dict], critical_path: list[str]) -> list[tuple[str, str, bool]]:
    """(from, to, on_critical_path) for every dependency edge."""
    ids = {str(t.get("id")) for t in tickets}
    crit = set(itertools.pairwise(critical_path))
    out = []
    for t in tickets:
        tid = str(t.get("id"))
        for dep in t.get("depends_on") or []:
            if dep in ids:
                out.append((dep, tid, (dep, tid) in crit))
    return out


# ======================================================================== tier streams
@dataclass
class LineCache:
    """Visual lines of one stream, extended on appends, rebuilt on replace/resize."""
    generation: int = -1
    length: int = 0
    wrap_cols: int = 0
    lines: list[str] = field(default_factory=list)
    last_start: int = 0            # index in `lines` where the last logical line begins
    last_logical: str = ""


def wrap_line(line: str, cols: int) -> list[str]:
    """Break one logical line into pieces of at most `cols` characters, at spaces when possible."""
    if len(line) <= cols:
        return [line]
    out = []
    while len(line) > cols:
        cut = line.rfind(" ", cols // 2, cols + 1)
        cut = cols if cut <= 0 else cut + 1
        out.append(line[:cut])
        line = line[cut:]
    out.append(line)
    return out


def update_line_cache(cache: LineCache, text: str, generation: int, wrap_cols: int) -> None:
    """Bring `cache` up to date with `text`: O(new text) on a pure append."""
    if (generation != cache.generation or wrap_cols != cache.wrap_cols or len(text) < cache.length):
        cache.generation, cache.wrap_cols = generation, wrap_cols
        cache.lines, cache.last_start, cache.last_logical, cache.length = [], 0, "", 0
        tail = text
    elif len(text) == cache.length:
        return
    else:
        tail = cache.last_logical + text[cache.length:]
        del cache.lines[cache.last_start:]
    parts = tail.split("\n")
    for part in parts[:-1]:
        cache.lines.extend(wrap_line(part, wrap_cols))
    cache.last_start = len(cache.lines)
    cache.last_logical = parts[-1]
    cache.lines.extend(wrap_line(parts[-1], wrap_cols))
    cache.length = len(text)


# ======================================================================== usage & cost
def tier_cost(usage: Mapping[str, Any], prices: Mapping[str, ModelPrice]) -> float | None:
    """USD for one bucket {"input","output","model"} with `prices` {model: ModelPrice}."""
    price = prices.get(str(usage.get("model") or ""))
    if price is None:
        return None
    return price.cost(int(usage.get("input", 0)), int(usage.get("output", 0)))


@dataclass
class TierUsageRow:
    tier: str
    model: str
    input: int
    output: int
    cost: float | None             # None: no price for the model
    cache_read: int = 0            # of `input`: read from the provider's prompt cache
    cache_write: int = 0           # of `input`: written to it
    cost_uncached: float | None = None   # what the row would have cost without caching


@dataclass
class UsageTable:
    """The Usage & Cost table: one row per tier and model, the totals, the models that used
    tokens unpriced, and the tokens per tier (for the chart).  `cost_uncached` is what the same
    tokens would have cost with nothing cached; `summary` the one-line account of the cache
    (`usage_cost.summary_line`, which the headless run prints too)."""
    rows: list[TierUsageRow]
    total_input: int
    total_output: int
    total_cost: float
    unpriced: list[str]
    per_tier: dict[str, tuple[int, int]] = field(default_factory=dict)
    cache_read: int = 0
    cache_write: int = 0
    cost_uncached: float = 0.0
    summary: str = ""

    @property
    def cached_share(self) -> float:
        return self.cache_read / self.total_input if self.total_input else 0.0


def usage_table(tier_usage: Mapping[str, Mapping[str, Any]], prices: Mapping[str, ModelPrice]) -> UsageTable:
    """Tokens and estimated USD from `MMAState.mma_tier_usage` and the price table.

    Each model's tokens are priced at that model's price (`models` split of a bucket): after
    an escalation from a lite model to pro, only pro's tokens cost pro's price; cached input at
    the cached price, cache writes and storage at theirs (`usage_cost`).  A tier with no tokens
    keeps one row (its model, zeros); the chat's row comes last when it was used.
    """
    shown = {tier: tier_usage.get(tier) or {} for tier in TIERS}
    if tier_usage.get(CHAT_USAGE) is not None:
        shown[CHAT_USAGE] = tier_usage[CHAT_USAGE]
    costs = usage_costs(shown, prices, keep_empty=True)
    rows = [TierUsageRow(r.tier, r.model, r.input, r.output, r.cost, r.cache_read, r.cache_write, r.cost_uncached)
            for r in costs.rows]
    per_tier: dict[str, tuple[int, int]] = {}
    for row in rows:
        before = per_tier.get(row.tier, (0, 0))
        per_tier[row.tier] = (before[0] + row.input, before[1] + row.output)
    return UsageTable(rows, costs.total_input, costs.total_output, costs.cost, costs.unpriced, per_tier,
                      costs.cache_read, costs.cache_write, costs.cost_uncached, summary_line(costs))
