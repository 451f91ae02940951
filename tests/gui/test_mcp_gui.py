"""MCP servers in the app, by real clicks under the Test Engine: the MCP Servers window (add,
status, restart, disable, remove, save) and a chat reply that calls an MCP tool after the
user approves it in the Approvals window."""
from __future__ import annotations

import os
import sys

import pytest

import project
import providers
from gui.layout import WIN_MCP
from providers.base import ChatRequest, ChatResponse, ToolCall, Usage
from tests.gui.helpers import make_app, run_gui, wait_until
from tests.test_mcp import FAILING, failing_server, processes_with

pytestmark = pytest.mark.usefixtures("xvfb_display")
MARKER = f"gui-mcp-{os.getpid()}"


class ToolThenTextAdapter:
    """The chat's model: first it calls `flaky__write_note`, then it quotes the tool result."""
    name = "mcp_chat"

    def __init__(self, **_):
        pass

    def generate(self, request: ChatRequest, on_chunk=None) -> ChatResponse:
        results = [m for m in request.messages if m.get("role") == "tool"]
        if not results:
            assert "flaky__write_note" in {t.name for t in request.tools}
            return ChatResponse("", [ToolCall("c1", "flaky__write_note", {"path": "note.txt", "text": "hi"})],
                                Usage(10, 5), "tool_use", request.model)
        text = f"The tool said: {results[-1]['content']}"
        if on_chunk:
            on_chunk(text)
        return ChatResponse(text, usage=Usage(20, 6), model=request.model)


@pytest.fixture
def mcp_project(tmp_path, mock_env, monkeypatch):
    root = tmp_path / "project"
    root.mkdir()
    cfg = project.load_project(root)
    cfg.mcp_servers = [failing_server(name="flaky", marker=MARKER)]
    project.save_project(cfg)
    # the chat's "mock" model is the scripted one here (the provider picker only offers catalog names)
    monkeypatch.setitem(providers.PROVIDERS, "mock", ("tests.gui.test_mcp_gui", "ToolThenTextAdapter"))
    return tmp_path


def test_mcp_window_and_a_chat_tool_call_after_approval(mcp_project, artifacts_dir):
    app = make_app(mcp_project, provider="mock")
    seen: dict = {}
    try:
        def test(ctx):
            from imgui_bundle.immapp import testing
            wait_until(ctx, lambda: [s.state for s in app.mcp.statuses] == ["running"], "the flaky server")
            seen["alive"] = processes_with(MARKER)
            app._runner_params.docking_params.focus_dockable_window(WIN_MCP)
            ctx.yield_(3)
            # add a second server by typing into the form
            ctx.item_click("//MCP Servers/##mcp_name")
            ctx.key_chars("echo2")
            ctx.item_click("//MCP Servers/##mcp_command")
            ctx.key_chars(f"{sys.executable} {FAILING} ok")
            ctx.item_click("//MCP Servers/Add server##mcp")
            wait_until(ctx, lambda: {s.name: s.state for s in app.mcp.statuses}.get("echo2") == "running",
                       "the added server")
            # a bad entry is an error, nothing is added
            ctx.item_click("//MCP Servers/##mcp_name")
            ctx.key_chars("bad name")
            ctx.item_click("//MCP Servers/##mcp_command")
            ctx.key_chars("x")
            ctx.item_click("//MCP Servers/Add server##mcp")
            ctx.yield_(2)
            seen["bad"] = [e.message for e in app.ctx.errors if e.source == "mcp"]
            ctx.item_click("//MCP Servers/Restart##mcp_echo2")
            wait_until(ctx, lambda: {s.name: s.state for s in app.mcp.statuses}.get("echo2") == "running",
                       "the restarted server")
            ctx.item_click("//MCP Servers/Enabled##mcp_echo2")
            wait_until(ctx, lambda: {s.name: s.state for s in app.mcp.statuses}.get("echo2") == "disabled",
                       "the disabled server")
            ctx.yield_(2)
            testing.capture(ctx, os.path.join(artifacts_dir, "mcp_servers_window.png"))
            ctx.item_click("//MCP Servers/Remove##mcp_echo2")
            ctx.item_click("//MCP Servers/Save project##mcp")
            # the chat's model calls an MCP tool that is not read-only: it waits for the Approvals window
            app._runner_params.docking_params.focus_dockable_window("Discussion")
            ctx.yield_(3)
            ctx.item_click("//**/##ai_input")
            ctx.key_chars("Write a note please")
            ctx.item_click("//**/Send")
            wait_until(ctx, lambda: any(a.kind == "tool" for a in app.mma.pending_approvals.values()),
                       "the chat's tool approval")
            approval = next(a for a in app.mma.pending_approvals.values() if a.kind == "tool")
            seen["approval"] = dict(approval.payload)
            seen["written_before"] = (app.project_dir / "note.txt").exists()
            ctx.yield_(2)
            testing.capture(ctx, os.path.join(artifacts_dir, "mcp_chat_tool_approval.png"))
            ctx.item_click(f"//Approvals/Approve##{approval.request_id}")
            wait_until(ctx, lambda: not app.ctx.busy, "the chat reply")

        run_gui(app, test)
        assert "mcp_servers[1].name" in seen["bad"][0] or "bad name" in seen["bad"][0]
        assert [s.name for s in project.load_project(app.project_dir).mcp_servers] == ["flaky"]
        payload = seen["approval"]
        assert payload["ticket_id"] == "chat" and payload["tool"] == "flaky__write_note"
        assert payload["description"]["server"] == "flaky" and payload["args"] == {"path": "note.txt", "text": "hi"}
        assert seen["written_before"] is False
        assert (app.project_dir / "note.txt").read_text() == "hi"
        assert "wrote 2 characters to note.txt" in app.ctx.last_reply
        snap = app.get_state_snapshot()["mcp_servers"]
        assert [(s["name"], s["state"]) for s in snap] == [("flaky", "running")]
        assert seen["alive"], "the server ran while the window was open"
    finally:
        app.shutdown()
    assert app.mcp.hub is None
    assert processes_with(MARKER) == [], "closing the window stopped its MCP servers"
