"""The model catalog: every provider and model MMA Desk knows, in one place.

Providers: `mock`, `gemini`, `anthropic` and `gemini-cli`, each with the adapter class that
implements it, the model a chat session starts with, and the per-tier models
of the MMA pipeline.  Models: name, provider, context window and prices.

Ask it with the small functions below:

    provider_names()              -> ("mock", "gemini", "anthropic", "gemini-cli")
    is_provider(name)             -> bool;  provider_info(name) -> ProviderInfo
    adapter_classes()             -> {provider: (module, class)}   (providers.make_adapter)
    default_chat_model(provider)  -> "gemini-2.5-flash"
    default_tier_models(provider) -> TierModels
    model_names() / is_known(model) / model_info(model) -> ModelInfo
    context_window(model)         -> tokens; unknown names fall back by prefix
    price(model)                  -> Price (USD per 1M tokens) or None

`TierModels` is the per-tier model choice as one immutable value.  In
`mma_project.toml` a tier holds one model name; the worker tier (Tier 3) holds
an escalation list: a ticket's first attempt uses the first model, each retry
the next one, and the last model is kept for any further retry.
"""
from __future__ import annotations

import logging
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeGuard

from models import TIERS

log = logging.getLogger(__name__)

# Tiers whose config is an escalation list (str or list in TOML); the others take one name.
ESCALATION_TIERS = ("Tier 3",)
# The context window assumed for a model the catalog knows nothing about, not even its family.
DEFAULT_CONTEXT_WINDOW = 128_000


class TierConfigError(ValueError):
    """A bad per-tier model value.  `tier` (and `index` for a list item) say where."""

    def __init__(self, tier: str, detail: str, index: int | None = None):
        where = tier if index is None else f"{tier}[{index}]"
        super().__init__(f"{where}: {detail}")
        self.tier, self.detail, self.index = tier, detail, index


def _model_name(tier: str, value: Any, index: int | None = None) -> str:
    if not isinstance(value, str):
        raise TierConfigError(tier, f"expected a string, got {reprlib.repr(value)}", index)
    if not value.strip():
        raise TierConfigError(tier, f"expected a model name, got {value!r}", index)
    return value


def _tier_models(tier: str, value: Any) -> tuple[str, ...]:
    """One tier's value in config shape (a name, or a list for an escalation tier) as a tuple."""
    if isinstance(value, str):
        return (_model_name(tier, value),)
    if tier not in ESCALATION_TIERS:
        raise TierConfigError(tier, f"expected a model name, got {reprlib.repr(value)}")
    if not isinstance(value, (list, tuple)):
        raise TierConfigError(tier, f"expected a list of strings, got {reprlib.repr(value)}")
    if not value:
        raise TierConfigError(tier, "expected at least one model (the escalation list)")
    return tuple(_model_name(tier, item, i) for i, item in enumerate(value))


@dataclass(frozen=True, init=False, repr=False)
class TierModels:
    """The models of the four tiers: `TierModels({"Tier 1": "m1", ..., "Tier 3": ["a", "b"]})`.

    Always holds every tier in `models.TIERS`.  Values take the config shape (see
    `from_config`); a bad one raises `TierConfigError` (a ValueError).
    """

    _by_tier: tuple[tuple[str, tuple[str, ...]], ...]

    def __init__(self, by_tier: Mapping[str, Any]):
        unknown = [tier for tier in by_tier if tier not in TIERS]
        if unknown:
            raise TierConfigError(unknown[0], f"unknown tier; expected one of {', '.join(TIERS)}")
        missing = [tier for tier in TIERS if tier not in by_tier]
        if missing:
            raise TierConfigError(missing[0], "missing: every tier needs a model")
        object.__setattr__(self, "_by_tier",
                           tuple((tier, _tier_models(tier, by_tier[tier])) for tier in TIERS))

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], provider: str) -> TierModels:
        """Read the `[models]` table shape: tier -> model name (or a list for Tier 3).

        Tiers missing from `raw` take `provider`'s defaults; keys that are not tier
        names are ignored here (the project file keeps them as they are).
        """
        if not isinstance(raw, Mapping):   # config data, so a ValueError like every bad value
            raise ValueError(f"expected a table of tier -> model, got {reprlib.repr(raw)}")
        ignored = [key for key in raw if key not in TIERS]
        if ignored:
            log.debug("not a tier, ignored in the model choice: %s", ignored)
        return default_tier_models(provider).merged({k: v for k, v in raw.items() if k in TIERS})

    def merged(self, overrides: TierModels | Mapping[str, Any]) -> TierModels:
        """A copy with the tiers in `overrides` (config shape) replaced.

        A TierModels holds every tier, so merging one gives that value back.
        """
        if isinstance(overrides, TierModels):
            return overrides
        return TierModels({**self.to_config(), **overrides})

    def to_config(self) -> dict[str, str | list[str]]:
        """The `[models]` table shape: a name per tier, a list for the escalation tiers."""
        return {tier: list(models) if tier in ESCALATION_TIERS else models[0]
                for tier, models in self._by_tier}

    def models(self, tier: str) -> tuple[str, ...]:
        """The tier's models in escalation order (one model for a single-model tier)."""
        for name, models in self._by_tier:
            if name == tier:
                return models
        raise KeyError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}")

    def model_for(self, tier: str, retry: int = 0) -> str:
        """The model for attempt `retry` (0 = first try); past the list's end, its last model."""
        if retry < 0:
            raise ValueError(f"retry must be >= 0, got {retry}")
        models = self.models(tier)
        return models[min(retry, len(models) - 1)]

    def first_models(self) -> dict[str, str]:
        """Tier -> the model of a first attempt."""
        return {tier: models[0] for tier, models in self._by_tier}

    def all_models(self) -> tuple[str, ...]:
        """Every model named, each once, in tier order."""
        return tuple(dict.fromkeys(m for _tier, models in self._by_tier for m in models))

    def __repr__(self) -> str:
        return f"TierModels({dict(self._by_tier)!r})"


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens.  `cached_input`: input tokens read from the provider's prompt cache;
    `cache_write`: input tokens written to it; `cache_storage`: USD per 1M tokens per hour that
    an explicit (Gemini) cache is kept."""

    input: float
    output: float
    cached_input: float
    cache_write: float | None = None       # None: billed as input
    cache_storage: float = 0.0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    provider: str
    context_window: int            # tokens
    price: Price
    # The shortest prefix the provider caches for this model (tokens); shorter ones are
    # billed as plain input, so asking for a cache there only costs a request.
    min_cache_tokens: int = 1024


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    adapter: tuple[str, str]       # (module, class) implementing providers.base.ProviderAdapter
    chat_model: str                # what a chat session starts with
    tier_models: TierModels        # the pipeline's per-tier defaults
    # How the provider caches prompt prefixes: "breakpoints" (Anthropic cache_control),
    # "gemini" (implicit hits, plus explicit cachedContents), "" (none).
    prompt_cache: str = ""


_GEMINI_TIERS = TierModels({
    "Tier 1": "gemini-3.1-pro-preview",
    "Tier 2": "gemini-3-flash-preview",
    "Tier 3": ["gemini-2.5-flash-lite", "gemini-2.5-flash", "gemini-3.1-pro-preview"],
    "Tier 4": "gemini-2.5-flash-lite",
})
_ANTHROPIC_TIERS = TierModels({
    "Tier 1": "claude-opus-4-8",
    "Tier 2": "claude-sonnet-4-6",
    "Tier 3": ["claude-haiku-5-5", "claude-sonnet-4-6", "claude-opus-4-8"],
    "Tier 4": "claude-haiku-5-5",
})

# The offline mock answers under the Gemini tier names, so its runs show real-looking
# models and prices in Usage & Cost; its chat model is its own.
_PROVIDERS: dict[str, ProviderInfo] = {p.name: p for p in (
    ProviderInfo("mock", ("providers.mock", "MockAdapter"), "mock-model", _GEMINI_TIERS),
    ProviderInfo("gemini", ("providers.gemini", "GeminiAdapter"), "gemini-2.5-flash", _GEMINI_TIERS,
                 prompt_cache="gemini"),
    ProviderInfo("anthropic", ("providers.anthropic_provider", "AnthropicAdapter"),
                 "claude-sonnet-4-6", _ANTHROPIC_TIERS, prompt_cache="breakpoints"),
    # Gemini models through the Gemini CLI (Node.js, installed on demand): providers/gemini_cli.py
    ProviderInfo("gemini-cli", ("providers.gemini_cli", "GeminiCliAdapter"), "gemini-2.5-flash", _GEMINI_TIERS),
)}

_GEMINI_WINDOW = 1_048_576
_CLAUDE_WINDOW = 200_000
_MOCK_WINDOW = 1_000_000
# Prices are estimates in USD per 1M tokens for prompts up to 200k tokens (Gemini Pro models
# bill more above that); the project file's [prices] table overrides them.  Caching, from the
# providers' published prices: Gemini bills cache hits (implicit or explicit) at 0.1x the input
# price, the tokens that make an explicit cache once at the input price, and its storage per
# hour ($1.00 per 1M tokens for Flash models, $4.50 for Pro); Anthropic bills cache reads at
# 0.1x and cache writes (5-minute TTL) at 1.25x the base input price, with no storage.
# Minimum cacheable prefixes: Gemini Flash 1,024 and Pro 4,096 tokens; Claude Sonnet 4.5 and
# Opus 4.1 1,024, Sonnet 4.6 2,048, Haiku 4.5 and Opus 4.5 and later 4,096.


def _gemini(input_usd: float, output_usd: float, storage_usd: float) -> Price:
    return Price(input_usd, output_usd, round(input_usd * 0.1, 6), input_usd, storage_usd)


def _claude(input_usd: float, output_usd: float) -> Price:
    return Price(input_usd, output_usd, round(input_usd * 0.1, 6), round(input_usd * 1.25, 6))


_MODELS: dict[str, ModelInfo] = {m.name: m for m in (
    ModelInfo("gemini-2.5-flash-lite", "gemini", _GEMINI_WINDOW, _gemini(0.10, 0.40, 1.00), 1024),
    ModelInfo("gemini-2.5-flash", "gemini", _GEMINI_WINDOW, _gemini(0.30, 2.50, 1.00), 1024),
    ModelInfo("gemini-2.5-pro", "gemini", _GEMINI_WINDOW, _gemini(1.25, 10.00, 4.50), 4096),
    ModelInfo("gemini-3-flash-preview", "gemini", _GEMINI_WINDOW, _gemini(0.50, 3.00, 1.00), 1024),
    ModelInfo("gemini-3.1-pro-preview", "gemini", _GEMINI_WINDOW, _gemini(2.00, 12.00, 4.50), 4096),
    ModelInfo("claude-haiku-4-5", "anthropic", _CLAUDE_WINDOW, _claude(1.00, 5.00), 4096),
    ModelInfo("claude-haiku-5-5", "anthropic", _CLAUDE_WINDOW, _claude(1.00, 5.00), 4096),
    ModelInfo("claude-sonnet-4-5", "anthropic", _CLAUDE_WINDOW, _claude(3.00, 15.00), 1024),
    ModelInfo("claude-sonnet-4-6", "anthropic", _CLAUDE_WINDOW, _claude(3.00, 15.00), 2048),
    ModelInfo("claude-opus-4-1", "anthropic", _CLAUDE_WINDOW, _claude(15.00, 75.00), 1024),
    ModelInfo("claude-opus-4-8", "anthropic", _CLAUDE_WINDOW, _claude(5.00, 25.00), 4096),
    ModelInfo("mock-model", "mock", _MOCK_WINDOW, Price(0.0, 0.0, 0.0)),
)}
# A model the catalog does not list still gets its family's context window by name prefix.
_PREFIX_WINDOWS = (("claude-", _CLAUDE_WINDOW), ("gemini-", _GEMINI_WINDOW), ("mock", _MOCK_WINDOW))


# ---------------------------------------------------------------- providers

def provider_names() -> tuple[str, ...]:
    """The built-in providers, the offline mock first."""
    return tuple(_PROVIDERS)


def is_provider(name: object) -> TypeGuard[str]:
    return name in _PROVIDERS


def provider_info(name: str) -> ProviderInfo:
    """Everything the catalog holds about one provider; ValueError for an unknown name."""
    try:
        return _PROVIDERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown provider {name!r}; expected one of "
                         f"{'/'.join(_PROVIDERS)}") from None


def adapter_classes() -> dict[str, tuple[str, str]]:
    """A fresh {provider: (module, class)} table of the built-in adapters."""
    return {name: p.adapter for name, p in _PROVIDERS.items()}


def default_chat_model(provider: str) -> str:
    """The model a new chat session with `provider` uses."""
    return provider_info(provider).chat_model


def default_tier_models(provider: str) -> TierModels:
    """The pipeline's per-tier models for `provider` (the project file can override them)."""
    return provider_info(provider).tier_models


def tier_defaults(provider: str | None) -> TierModels:
    """`default_tier_models`, also for None and for an adapter registered at run time (a
    test's stub provider), which run with the offline mock's (Gemini) names."""
    return default_tier_models(provider if is_provider(provider) else "mock")


# ---------------------------------------------------------------- models

def model_names() -> tuple[str, ...]:
    return tuple(_MODELS)


def is_known(model: str | None) -> bool:
    """Whether the catalog lists `model` by its exact name (no prefix guessing)."""
    return model in _MODELS


def model_info(model: str) -> ModelInfo:
    """The catalog entry of a listed model; KeyError for any other name."""
    try:
        return _MODELS[model]
    except KeyError:
        raise KeyError(f"model {model!r} is not in the catalog") from None


def context_window(model: str | None) -> int:
    """Tokens `model` takes in: the listed value, else its family's by name prefix, else 128k."""
    if model in _MODELS:
        return _MODELS[model].context_window
    for prefix, window in _PREFIX_WINDOWS:
        if model and model.startswith(prefix):
            return window
    log.debug("unknown model %r, assuming a %d-token context window", model, DEFAULT_CONTEXT_WINDOW)
    return DEFAULT_CONTEXT_WINDOW


def context_windows() -> Mapping[str, int]:
    """A read-only {model: context window} view of the listed models."""
    return MappingProxyType({name: m.context_window for name, m in _MODELS.items()})


def price(model: str | None) -> Price | None:
    """The listed model's default price; None for a model the catalog does not list."""
    info = _MODELS.get(model) if model is not None else None
    return info.price if info else None


def min_cache_tokens(model: str | None) -> int:
    """The shortest prefix the provider caches for `model`; unlisted models by family."""
    if model in _MODELS:
        return _MODELS[model].min_cache_tokens
    name = model or ""
    return 4096 if ("pro" in name and name.startswith("gemini-")) or "opus" in name or "haiku" in name else 1024


def prompt_cache_kind(provider: str | None) -> str:
    """`ProviderInfo.prompt_cache` of a built-in provider; "" for anything else."""
    return _PROVIDERS[provider].prompt_cache if provider in _PROVIDERS else ""
