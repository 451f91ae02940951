"""GUI-free state behind the MCP Servers window, and the chat's tool approvals.

`McpServers` keeps the project's `McpHub` in step with the project's `[[mcp_servers]]`
(`ContextState.config.mcp_servers`): it starts the enabled servers when a project is loaded,
follows Open/Reload, and applies every edit (add, remove, enable, trust) to the running
servers at once.  Edits change the project in memory; File > Save project (or the window's
*Save project*) writes them.  `poll()` copies the hub's statuses for the window once per
frame; `busy` is True while a server is starting, so frames keep coming.

`chat_tool_approver(event_queue, timeout)` is the chat's `pre_tool_callback`: a tool call
that needs approval is published as an `ApprovalRequest` (kind "tool", ticket "chat") on the
app's event queue, so it appears in the Approvals window like a worker's; Stop cancels it.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import approvals
import events
from gui.context_state import ContextState
from providers.base import interrupt_on_cancel
from tools.mcp_client import STARTING, McpHub, ServerStatus
from tools.mcp_config import McpConfigError, McpServerConfig, check_unique, parse_command_line

log = logging.getLogger(__name__)

CHAT_APPROVAL_ID = "chat"        # the "ticket" of a chat tool approval


@dataclass
class McpInputs:
    """The Add server form."""
    name: str = ""
    command: str = ""            # "program args..." or an http(s):// URL
    trusted: bool = False


class McpServers:
    """State and actions of the MCP Servers window.  GUI thread only (the hub is thread-safe)."""

    def __init__(self, ctx: ContextState, hub_factory: Callable[..., McpHub] = McpHub):
        self.ctx = ctx
        self._hub_factory = hub_factory
        self.inputs = McpInputs()
        self.statuses: list[ServerStatus] = []
        self.hub: McpHub | None = None
        self._loads_seen = -1
        self._closing: list[threading.Thread] = []

    # ---------------------------------------------------------------- per frame
    @property
    def servers(self) -> list[McpServerConfig]:
        return self.ctx.config.mcp_servers

    @property
    def busy(self) -> bool:
        return any(s.state == STARTING for s in self.statuses)

    def poll(self) -> None:
        if self.ctx.project_loads != self._loads_seen:
            self._loads_seen = self.ctx.project_loads
            self._follow_project()
        self.statuses = self.hub.statuses() if self.hub is not None else []

    def _follow_project(self) -> None:
        root = self.ctx.project_dir
        if self.hub is not None and self.hub.root != root:
            self._close_in_background(self.hub)
            self.hub = None
        if self.hub is None and self.servers:
            self.hub = self._hub_factory(root)
        self._apply()

    def _apply(self) -> None:
        if self.hub is None:
            if not self.servers:
                return
            self.hub = self._hub_factory(self.ctx.project_dir)
        future = self.hub.apply(list(self.servers))
        future.add_done_callback(_log_failure)

    def _close_in_background(self, hub: McpHub) -> None:
        """Stopping servers takes a moment (stdin closed, then SIGTERM): not on the GUI thread."""
        thread = threading.Thread(target=hub.close, name="mcp-close", daemon=True)
        thread.start()
        self._closing.append(thread)

    # ---------------------------------------------------------------- actions
    def _replace(self, servers: list[McpServerConfig]) -> None:
        check_unique(servers)
        self.ctx.config.mcp_servers = servers
        self._apply()

    def _find(self, name: str) -> int:
        for i, server in enumerate(self.servers):
            if server.name == name:
                return i
        raise KeyError(f"no MCP server named {name!r}")

    def add_server(self, name: str | None = None, command: str | None = None, trusted: bool | None = None) -> bool:
        """Add a server from the form (or the arguments); a bad entry is an error, nothing changes."""
        name = (self.inputs.name if name is None else name).strip()
        command = (self.inputs.command if command is None else command).strip()
        trusted = self.inputs.trusted if trusted is None else trusted
        try:
            if command.startswith(("http://", "https://")):
                config = McpServerConfig(name, url=command, trusted=trusted)
            else:
                program, args = parse_command_line(command)
                config = McpServerConfig(name, command=program, args=args, trusted=trusted)
            self._replace([*self.servers, config])
        except McpConfigError as exc:
            self.ctx.add_error("mcp", str(exc), "name: letters, digits, - and _; command: the program and "
                                                "its arguments, or an http(s):// URL")
            return False
        self.inputs = McpInputs()
        log.info("MCP server %s added: %s", config.name, config.launch_line())
        return True

    def remove_server(self, name: str) -> bool:
        index = self._find(name)
        self._replace([s for i, s in enumerate(self.servers) if i != index])
        return True

    def set_enabled(self, name: str, enabled: bool) -> bool:
        index = self._find(name)
        self._replace([s.replace(enabled=bool(enabled)) if i == index else s for i, s in enumerate(self.servers)])
        return True

    def set_trusted(self, name: str, trusted: bool) -> bool:
        index = self._find(name)
        self._replace([s.replace(trusted=bool(trusted)) if i == index else s for i, s in enumerate(self.servers)])
        return True

    def restart(self, name: str) -> bool:
        self._find(name)
        if self.hub is None:
            raise ValueError("no MCP server is running for this project")
        self.hub.restart(name).add_done_callback(_log_failure)
        return True

    def save(self) -> bool:
        return self.ctx.save()

    def close(self, timeout: float = 10.0) -> None:
        """Stop every server (app exit)."""
        if self.hub is not None:
            self.hub.close(timeout)
            self.hub = None
        for thread in self._closing:
            thread.join(timeout)

    def snapshot(self) -> list[dict]:
        """For the hook API: one dict per server."""
        return [{"name": s.name, "state": s.state, "error": s.error, "tools": [t.qualified for t in s.tools],
                 "trusted": s.trusted, "enabled": s.enabled, "transport": s.transport} for s in self.statuses]


def _log_failure(future: concurrent.futures.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("applying the MCP servers failed: %r", future.exception())


def chat_tool_approver(event_queue: events.AsyncEventQueue,
                       timeout: Callable[[], float]) -> Callable[..., dict]:
    """The chat's approval: `(name, args, description, cancel_event) -> {"approved", "args"}`."""
    def approve(name: str, args: dict, description: dict, cancel_event: Any = None) -> dict:
        with contextlib.ExitStack() as hooks:
            def on_request(future: concurrent.futures.Future) -> None:   # Stop cancels the open approval
                hooks.enter_context(interrupt_on_cancel(cancel_event, future.cancel))

            decision = approvals.confirm_execution({"tool": name, "args": args, "description": description},
                                                   event_queue, CHAT_APPROVAL_ID, timeout=timeout(),
                                                   kind="tool", on_request=on_request)
        return decision.tool_answer(args)
    return approve
