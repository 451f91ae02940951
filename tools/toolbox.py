"""The tools of one project: the built-in file and shell tools plus its MCP servers' tools.

`ai_client` asks `toolbox_for(base_dir)` for the specs it offers a model and for how to run
a call, so the chat, every tier with tools and the Gemini CLI provider get the same set and
the same approval rule from one place:

    box = toolbox_for(project_root)
    box.specs()                    -> [ToolSpec]   built-in first, then `<server>__<tool>`
    box.needs_approval(name)       -> bool          unknown built-in names: True (fail closed)
    box.describe(name, args)       -> dict          for the approval dialog; never raises
    box.execute(name, args, approved=...) -> ToolResult   (ToolError for a built-in's bad call)
    box.listing()                  -> [(name, server, policy)]   for `mma-desk tools`

A project's `McpHub` registers itself here for its root when it starts and leaves at
`close()`; with none registered a project has only the built-in tools.
"""
from __future__ import annotations

import logging
import os
import reprlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from providers.base import ToolResult, ToolSpec
from tools import registry
from tools.errors import ToolError

if TYPE_CHECKING:
    from tools.mcp_client import McpHub

log = logging.getLogger(__name__)

BUILT_IN = "built-in"

_hubs: dict[Path, McpHub] = {}
_hubs_lock = threading.Lock()


def _key(root: str | os.PathLike) -> Path:
    return Path(root).resolve()


def register_hub(root: str | os.PathLike, hub: McpHub) -> None:
    with _hubs_lock:
        _hubs[_key(root)] = hub


def unregister_hub(root: str | os.PathLike, hub: McpHub) -> None:
    with _hubs_lock:
        if _hubs.get(_key(root)) is hub:
            del _hubs[_key(root)]


def hub_for(root: str | os.PathLike) -> McpHub | None:
    with _hubs_lock:
        return _hubs.get(_key(root))


def toolbox_for(root: str | os.PathLike) -> Toolbox:
    return Toolbox(root, hub_for(root))


class Toolbox:
    def __init__(self, root: str | os.PathLike, hub: McpHub | None = None):
        self.root = root
        self.hub = hub

    def specs(self) -> list[ToolSpec]:
        specs = list(registry.TOOL_SPECS)
        if self.hub is not None:
            for tool in self.hub.tools():
                description = f"[MCP server {tool.server}] {tool.description}"
                if tool.needs_approval:
                    description += " Needs the developer's approval."
                specs.append(ToolSpec(tool.qualified, description, dict(tool.input_schema)))
        return specs

    def _mcp(self, name: str) -> bool:
        return name not in registry.TOOL_NAMES and self.hub is not None and self.hub.knows(name)

    def needs_approval(self, name: str) -> bool:
        """Built-in: writes and the shell.  MCP: unless read-only or trusted; a tool of a server that
        is down runs nothing (its call only reports that), so there is nothing to approve."""
        if self._mcp(name):
            assert self.hub is not None
            tool = self.hub.tool(name)
            return False if tool is None else tool.needs_approval
        return registry.needs_approval(name)

    def describe(self, name: str, args: Any) -> dict:
        if not self._mcp(name):
            return registry.describe(name, args, self.root)
        assert self.hub is not None
        tool = self.hub.tool(name)
        server = name.split("__", 1)[0] if tool is None else tool.server
        shown = _short.repr(args) if not isinstance(args, dict) else ", ".join(
            f"{k}={_short.repr(v)}" for k, v in list(args.items())[:8])
        out = {"tool": name, "server": server, "mcp_tool": tool.name if tool else name.split("__", 1)[-1],
               "needs_approval": self.needs_approval(name),
               "summary": f"MCP server {server}: {tool.name if tool else name}({shown})"}
        if tool is None:
            out["error"] = f"server {server!r} is not running"
        return out

    def execute(self, name: str, args: Any, *, approved: bool = False,
                cancel: threading.Event | None = None) -> ToolResult:
        """`cancel` (the session's abort) stops a shell command or the wait for an MCP server."""
        if not self._mcp(name):
            return ToolResult(registry.execute(name, args, self.root, approved=approved, cancel=cancel))
        assert self.hub is not None
        if not isinstance(args, dict) and args is not None:
            raise ToolError(f"{name} arguments must be an object, got {type(args).__name__}")
        if self.hub.tool(name) is None:
            return self.hub.call(name, args)          # the error result: which server is down, and why
        if self.needs_approval(name) and approved is not True:
            log.warning("refused %s: not approved", name)
            raise ToolError(f"{name} needs the developer's approval and was not approved; nothing was done")
        return self.hub.call(name, args, cancel=cancel)

    def listing(self) -> list[tuple[str, str, str]]:
        """(tool name, server or "built-in", approval policy) for every tool a model would get."""
        rows = [(name, BUILT_IN, "asks" if registry.needs_approval(name) else "runs unasked (read-only)")
                for name in registry.TOOL_NAMES]
        if self.hub is not None:
            rows += [(t.qualified, t.server, t.policy) for t in self.hub.tools()]
        return rows


_short = reprlib.Repr()
_short.maxstring = 80
_short.maxother = 80
