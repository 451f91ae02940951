"""What a chat Send is allowed to do with the token budget: `SendCheck` and `TrimOffer`.

The rules (`ContextState.send_message` applies them; the Discussion panel shows the dialog):

- over the model's context window: refused.  The only way out is a trim plan that really
  fits (`TrimOffer.fits`: the trimmed context was built and measured, not estimated) or
  fewer files;
- over the project budget (`budgets.max_context_tokens`) but inside the window: sent only
  after the user confirms, or trimmed;
- a large send (`LARGE_SEND_TOKENS`, or an estimated input cost of `LARGE_SEND_USD`) asks
  once with the token count and the estimated cost before it goes.

Everything here is pure: `plan_trim` runs on the context builder's thread (background mode)
or inline (scripts, tests).
"""
from __future__ import annotations

from dataclasses import dataclass

from context_builder import ContextBundle, ContextItem, TrimStep, build_context, estimate_tokens
from file_cache import FileCache
from gui.context_build import BuildInputs, trimmed_items

LARGE_SEND_TOKENS = 50_000
LARGE_SEND_USD = 0.05


@dataclass
class TrimOffer:
    """A trim plan for a target and the context it leaves, measured."""
    target: int                      # tokens the context may use (the limit minus the message)
    steps: list[TrimStep]
    bundle: ContextBundle | None     # the trimmed context; None when no plan fits
    tokens: int                      # the trimmed context's tokens (0 when it does not fit)

    @property
    def fits(self) -> bool:
        return self.bundle is not None and self.tokens <= self.target


@dataclass
class SendCheck:
    """One Send's numbers and verdict."""
    message: str
    model: str
    context_tokens: int
    message_tokens: int
    window: int
    budget: int
    cost_usd: float | None           # estimated input cost; None: the model has no price
    generation: int                  # the bundle generation it was made from
    offer: TrimOffer | None = None   # set once worked out (only when over a limit)
    offer_pending: bool = False

    @property
    def total(self) -> int:
        return self.context_tokens + self.message_tokens

    @property
    def over_window(self) -> bool:
        return self.total > self.window

    @property
    def over_budget(self) -> bool:
        return self.total > self.budget

    @property
    def large(self) -> bool:
        return self.total >= LARGE_SEND_TOKENS or (self.cost_usd or 0.0) >= LARGE_SEND_USD

    @property
    def limit(self) -> int:
        """The limit a trim must get under: the window, or the budget when that is lower."""
        return min(self.window, self.budget)

    @property
    def verdict(self) -> str:
        """"refuse" (over the window), "confirm" (over the budget, or large), else "ok"."""
        if self.over_window:
            return "refuse"
        if self.over_budget or self.large:
            return "confirm"
        return "ok"

    def cost_text(self) -> str:
        return "no price for this model" if self.cost_usd is None else f"~${self.cost_usd:,.2f} input"

    def describe(self) -> str:
        head = f"{self.total:,} tokens ({self.context_tokens:,} context + {self.message_tokens:,} message)"
        if self.over_window:
            return (f"{head} is over {self.model}'s context window of {self.window:,} "
                    f"({self.total / self.window:.1f}x): not sent")
        if self.over_budget:
            return (f"{head} is over the project budget of {self.budget:,} "
                    f"({self.total / self.budget:.1f}x); estimated cost {self.cost_text()}")
        return f"{head}, estimated cost {self.cost_text()}"


def check(message: str, bundle: ContextBundle, model: str, window: int, budget: int,
          price_per_million_input: float | None, generation: int) -> SendCheck:
    tokens = bundle.total_tokens
    msg_tokens = estimate_tokens(message)
    cost = None if price_per_million_input is None else (tokens + msg_tokens) * price_per_million_input / 1e6
    return SendCheck(message, model, tokens, msg_tokens, window, budget, cost, generation)


def plan_trim(inputs: BuildInputs, cache: FileCache, target: int) -> TrimOffer:
    """The trim plan that gets the context under `target` tokens, applied and measured."""
    target = max(1, target)
    planned = build_context([ContextItem(p, m) for p, m in inputs.files], inputs.screenshots,
                            list(inputs.discussion), inputs.system_prompt, target, cache,
                            root=inputs.root, model=inputs.model)
    if not planned.over_budget:
        return TrimOffer(target, [], planned, planned.total_tokens)
    if not planned.fits_after_trim:
        return TrimOffer(target, planned.trim_plan, None, 0)
    items, discussion = trimmed_items(planned, planned.trim_plan, list(inputs.discussion))
    trimmed = build_context(items, inputs.screenshots, discussion, inputs.system_prompt, target, cache,
                            root=inputs.root, model=inputs.model)
    if trimmed.total_tokens > target:      # the estimate was optimistic: say it does not fit
        return TrimOffer(target, planned.trim_plan, None, 0)
    return TrimOffer(target, planned.trim_plan, trimmed, trimmed.total_tokens)
