"""The one error type the tools raise."""
from __future__ import annotations


class ToolError(Exception):
    """A tool call failed for a reason the model can act on.

    `str(error)` is written for the model (and shown to the developer), e.g.
    "path '../x' is outside the project root".  The tool loop sends it back as
    the tool result instead of crashing the session.
    """
