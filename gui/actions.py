"""The typed piece every MMA panel's actions interface shares: `GuardedCalls`.

Each panel module declares a `typing.Protocol` of exactly what it may call
(`DashboardActions`, `ApprovalActions`, `UsageActions`, ...); `gui_2.App`
satisfies them structurally, and mypy checks that where `gui/layout.py` mounts
the panel.  The MMA panels call every command through `ui(fn, *args)`, which
turns a refusal into an error-bar entry instead of an exception in the frame.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class GuardedCalls(Protocol):
    def ui(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R | None:
        """Call `fn(*args, **kwargs)`; a ValueError/KeyError/LookupError becomes an error-bar entry."""
        ...
