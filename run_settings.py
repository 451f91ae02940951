"""How a track runs: one value shared by the pipeline, the engine, the GUI and the CLI.

`RunSettings` is frozen: a change (the user picks other models, turns Auto-queue off)
makes a new value with `replace()`, and whoever runs next takes it as a whole, so a
track never runs with half of an edit.  The engine reads it; nobody copies its fields.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from approvals import DEFAULT_APPROVAL_TIMEOUT
from providers import catalog
from providers.catalog import TierModels

MAX_RETRIES = 2                # a blocked ticket escalates flash-lite -> flash -> pro


@dataclass(frozen=True)
class RunSettings:
    provider: str
    models: TierModels
    max_workers: int = 4                       # Tier 3 workers in parallel
    auto_queue: bool = False                   # start every ready ticket without a click
    require_spawn_approval: bool = False       # the user approves (and may edit) each worker's prompt
    tools_enabled: bool = False                # workers may call file and shell tools (writes still ask)
    approval_timeout: float = DEFAULT_APPROVAL_TIMEOUT
    max_retries: int = MAX_RETRIES
    diagnose_failures: bool = True             # Tier 4 explains a failure before the retry
    # Mark the shared prefix for the provider's prompt cache (and use Gemini explicit caches
    # where they pay); off sends every prompt uncached.  See prompt_cache.py.
    prompt_cache: bool = True
    # The first worker on a model writes the cache before the others of its level start; the
    # measured default (docs/performance.md: bench_cache) is on.
    cache_warmup: bool = True

    def __post_init__(self) -> None:
        if self.max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {self.max_workers}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")

    @classmethod
    def for_provider(cls, provider: str | None = None,
                     models: TierModels | Mapping[str, Any] | None = None, **knobs: Any) -> RunSettings:
        """Settings for `provider` (default: `ai_client.default_provider()`), its default models
        with `models` (config shape, or a TierModels) laid over them."""
        if provider is None:
            import ai_client
            provider = ai_client.default_provider()
        return cls(provider, _models_for(provider, models), **knobs)

    def replace(self, **changes: Any) -> RunSettings:
        return dataclasses.replace(self, **changes)

    def with_provider(self, provider: str, models: TierModels | Mapping[str, Any] | None = None) -> RunSettings:
        """Another provider: its default models unless `models` are given."""
        return self.replace(provider=provider, models=_models_for(provider, models))


def _models_for(provider: str, models: TierModels | Mapping[str, Any] | None) -> TierModels:
    defaults = catalog.tier_defaults(provider)
    return defaults.merged(models) if models else defaults
