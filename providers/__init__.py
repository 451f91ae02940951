"""Provider adapters behind `ai_client`: one small adapter per provider.

`make_adapter(name)` is the only place that knows which module implements
which provider; SDK imports stay lazy so the mock path never pays for them.
"""
from __future__ import annotations

import importlib

from providers.base import ProviderAdapter, ProviderUnavailableError

PROVIDERS = {
    "mock": ("providers.mock", "MockAdapter"),
    "gemini": ("providers.gemini", "GeminiAdapter"),
    "anthropic": ("providers.anthropic_provider", "AnthropicAdapter"),
}


def make_adapter(name: str, **options) -> ProviderAdapter:
    try:
        module_name, class_name = PROVIDERS[name]
    except KeyError:
        raise ProviderUnavailableError(
            f"unknown provider {name!r}", provider=name,
            hint=f"choose one of: {', '.join(PROVIDERS)}") from None
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**options)
