"""The MCP Servers window: the project's MCP servers, their state, tools and last error.

`draw(state, actions)`: `state` is the `gui.mcp_servers.McpServers` it shows (its form,
`state.inputs`, is edited in place); `actions` (`McpActions`, satisfied by the same object)
what the buttons call.  Edits apply to the running servers at once; *Save project##mcp*
writes them to mma_project.toml.  Labels tests rely on: "##mcp_name", "##mcp_command",
"Trusted##mcp_new", "Add server##mcp", per server "Enabled##mcp_<name>", "Trusted##mcp_<name>",
"Restart##mcp_<name>", "Remove##mcp_<name>", and "Save project##mcp".
"""
from __future__ import annotations

from typing import Protocol

from imgui_bundle import imgui

from gui import theme
from gui.mcp_servers import McpServers
from gui.panel_project import draw_errors
from tools.mcp_client import DISABLED, FAILED, RUNNING, STARTING

STATE_COLORS = {RUNNING: (0.45, 0.85, 0.45, 1.0), STARTING: (0.95, 0.75, 0.30, 1.0),
                FAILED: theme.ERROR_TEXT, DISABLED: theme.MUTED_TEXT}


class McpActions(Protocol):
    def add_server(self, name: str | None = None, command: str | None = None,
                   trusted: bool | None = None) -> bool: ...
    def remove_server(self, name: str) -> bool: ...
    def set_enabled(self, name: str, enabled: bool) -> bool: ...
    def set_trusted(self, name: str, trusted: bool) -> bool: ...
    def restart(self, name: str) -> bool: ...
    def save(self) -> bool: ...


def draw(state: McpServers, actions: McpActions) -> None:
    statuses = {s.name: s for s in state.statuses}
    if not state.servers:
        imgui.text_disabled("No MCP servers in this project.")
    for server in list(state.servers):
        _server(actions, server.name, server.enabled, server.trusted, server.launch_line(),
                statuses.get(server.name))
    imgui.separator_text("Add server")
    imgui.set_next_item_width(-1)
    _, state.inputs.name = imgui.input_text_with_hint("##mcp_name", "name (letters, digits, - and _)",
                                                      state.inputs.name)
    imgui.set_next_item_width(-1)
    _, state.inputs.command = imgui.input_text_with_hint(
        "##mcp_command", "program and arguments, or http(s)://.../mcp", state.inputs.command)
    _, state.inputs.trusted = imgui.checkbox("Trusted##mcp_new", state.inputs.trusted)
    imgui.set_item_tooltip("a trusted server's tools run without asking; otherwise only tools the "
                           "server marks read-only do")
    imgui.same_line()
    if imgui.button("Add server##mcp"):
        actions.add_server()
    if imgui.button("Save project##mcp"):
        actions.save()
    imgui.same_line()
    imgui.text_disabled("(changes apply now)")
    imgui.set_item_tooltip("Save project keeps them in mma_project.toml")
    draw_errors(state.ctx, state.ctx, ("mcp",), "mcp")


def _server(actions: McpActions, name: str, enabled: bool, trusted: bool, launch: str, status) -> None:
    """One server: name, state and tool count; Enabled / Trusted; Restart / Remove; its last error."""
    imgui.separator()
    state = status.state if status is not None else (DISABLED if not enabled else STARTING)
    tools = status.tools if status is not None else ()
    imgui.text(name)
    imgui.set_item_tooltip(launch)
    imgui.same_line()
    imgui.text_colored(imgui.ImVec4(*STATE_COLORS.get(state, theme.MUTED_TEXT)), state)
    imgui.same_line()
    imgui.text_disabled(f"{len(tools)} tool(s)")
    if tools:
        imgui.set_item_tooltip("\n".join(f"{t.qualified}: {t.policy}" for t in tools))
    changed, value = imgui.checkbox(f"Enabled##mcp_{name}", enabled)
    if changed:
        actions.set_enabled(name, value)
    imgui.same_line()
    changed, value = imgui.checkbox(f"Trusted##mcp_{name}", trusted)
    if changed:
        actions.set_trusted(name, value)
    imgui.begin_disabled(not enabled)
    if imgui.small_button(f"Restart##mcp_{name}"):
        actions.restart(name)
    imgui.end_disabled()
    imgui.same_line()
    if imgui.small_button(f"Remove##mcp_{name}"):
        actions.remove_server(name)
    if status is not None and status.error:
        imgui.push_style_color(imgui.Col_.text, imgui.ImVec4(*theme.ERROR_TEXT))
        imgui.text_wrapped(status.error[:400])
        imgui.pop_style_color()
