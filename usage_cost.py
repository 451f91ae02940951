"""What a run cost, and what it would have cost without prompt caching.

A ledger (`models.TierUsage` snapshot: tier -> bucket with per-model rows) priced with the
project's price table (`project.ModelPrice`): each model's tokens at its own price, with the
input split into uncached / read from the cache / written to it, plus explicit cache storage.
"Without caching" prices every input token at the input price and drops the storage: what the
same prompts cost had nothing been cached.  The Usage & Cost window (`gui/mma_display.py`) and
the headless run's last lines (`headless.py`) both show `summary_line`.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from models import per_model_usage

if TYPE_CHECKING:
    from project import ModelPrice


@dataclass
class CostRow:
    tier: str
    model: str
    input: int                     # every prompt token (cached or not)
    output: int
    cache_read: int = 0            # of `input`: read from the provider's prompt cache
    cache_write: int = 0           # of `input`: written to it
    storage_token_s: int = 0       # explicit cache storage, tokens x seconds
    cost: float | None = None      # USD at the model's price; None: no price for the model
    cost_uncached: float | None = None   # USD had every input token been billed as input

    @property
    def uncached_input(self) -> int:
        return max(0, self.input - self.cache_read - self.cache_write)


@dataclass
class CostSummary:
    rows: list[CostRow]
    unpriced: list[str] = field(default_factory=list)   # models that used tokens but have no price

    @property
    def total_input(self) -> int:
        return sum(r.input for r in self.rows)

    @property
    def total_output(self) -> int:
        return sum(r.output for r in self.rows)

    @property
    def cache_read(self) -> int:
        return sum(r.cache_read for r in self.rows)

    @property
    def cache_write(self) -> int:
        return sum(r.cache_write for r in self.rows)

    @property
    def cost(self) -> float:
        return sum(r.cost for r in self.rows if r.cost is not None)

    @property
    def cost_uncached(self) -> float:
        return sum(r.cost_uncached for r in self.rows if r.cost_uncached is not None)

    @property
    def cached_share(self) -> float:
        """The share of all input tokens that was read from a prompt cache."""
        return self.cache_read / self.total_input if self.total_input else 0.0

    @property
    def saving(self) -> float:
        """The share of the uncached cost that caching saved (negative: it cost more)."""
        return 1.0 - self.cost / self.cost_uncached if self.cost_uncached else 0.0


def row_cost(row: CostRow, price: ModelPrice | None) -> CostRow:
    """`row` with its cost and its cost without caching filled in from `price`."""
    if price is None:
        return row
    row.cost = price.cost(row.uncached_input, row.output, row.cache_read, row.cache_write, row.storage_token_s)
    row.cost_uncached = price.cost(row.input, row.output)
    return row


def usage_costs(tier_usage: Mapping[str, Mapping[str, Any]], prices: Mapping[str, ModelPrice],
                tiers: Iterable[str] | None = None, keep_empty: bool = False) -> CostSummary:
    """One row per tier and model of `tier_usage` (in `tiers` order when given), priced.

    `keep_empty`: a tier with no tokens keeps one zero row for its model (the window shows it)."""
    rows: list[CostRow] = []
    unpriced: set[str] = set()
    for tier in (tiers if tiers is not None else tier_usage):
        bucket = tier_usage.get(tier)
        if bucket is None:
            continue
        split = {m: r for m, r in per_model_usage(dict(bucket)).items() if r["input"] or r["output"]}
        if not split and keep_empty:
            split = {str(bucket.get("model", "")): {"input": 0, "output": 0}}
        for model, r in split.items():
            row = row_cost(CostRow(tier, model, r["input"], r["output"], r.get("cache_read", 0),
                                   r.get("cache_write", 0), r.get("cache_storage_token_s", 0)), prices.get(model))
            if row.cost is None and (row.input or row.output):
                unpriced.add(model)
            rows.append(row)
    return CostSummary(rows, sorted(unpriced))


def summary_line(summary: CostSummary) -> str:
    """One line for the window and the terminal, e.g.  Prompt cache: 71.9 % of 123,456 input
    tokens read from the cache; cost $0.0123, without caching $0.0456 (73.0 % less)"""
    head = (f"Prompt cache: {100 * summary.cached_share:.1f} % of {summary.total_input:,} input tokens "
            f"read from the cache")
    if summary.cache_write:
        head += f" ({summary.cache_write:,} written)"
    cost = f"cost ${summary.cost:.4f}, without caching ${summary.cost_uncached:.4f}"
    if summary.cost_uncached:
        saving = summary.saving
        cost += f" ({100 * abs(saving):.1f} % {'less' if saving >= 0 else 'more'})"
    unpriced = f"; no price for {', '.join(summary.unpriced)}" if summary.unpriced else ""
    return f"{head}; {cost}{unpriced}"
