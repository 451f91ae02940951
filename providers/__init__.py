"""Provider adapters behind `ai_client`: one small adapter per provider.

`make_adapter(name)` builds the adapter that `PROVIDERS` names for a provider.
`PROVIDERS` starts as the catalog's table of built-in adapters
(`providers.catalog`: `mock`, `gemini`, `anthropic`, and `gemini-cli`, which runs
Gemini through the Gemini CLI, `providers.gemini_cli`); tests and benchmarks
register stand-in adapters in it at run time.  SDK imports stay lazy so the mock path never pays for them.
"""
from __future__ import annotations

import importlib

from providers import catalog
from providers.base import ProviderAdapter, ProviderUnavailableError

PROVIDERS: dict[str, tuple[str, str]] = catalog.adapter_classes()   # name -> (module, class)


def make_adapter(name: str, **options) -> ProviderAdapter:
    try:
        module_name, class_name = PROVIDERS[name]
    except KeyError:
        raise ProviderUnavailableError(
            f"unknown provider {name!r}", provider=name,
            hint=f"choose one of: {', '.join(PROVIDERS)}") from None
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**options)
