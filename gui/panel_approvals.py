"""The Approvals window: every pending spawn / step / tool request, oldest first.

`draw(state, actions)`: `state` is the `MMAState` (`pending_approvals`, keyed
by request id, and `approval_history`); the window edits each `Approval`'s
fields in place and answers through `actions.approve` (`ApprovalActions`,
satisfied by `gui_2.App`).  Labels (request ids look like `spawn-T1-3`):

  "##prompt-<request_id>", "###ctx-<request_id>/##context-<request_id>", "##args-<request_id>",
  "Approve##<request_id>", "Reject##<request_id>"
"""
from __future__ import annotations

import time
from typing import Any, Protocol

from imgui_bundle import imgui

from gui import theme
from gui.actions import GuardedCalls
from gui.mma_state import Approval, MMAState

DIFF_COLORS = {"+": (0.45, 0.85, 0.45, 1.0), "-": (0.95, 0.45, 0.42, 1.0), "@": (0.45, 0.70, 1.0, 1.0)}
KIND_TITLES = {"spawn": "Spawn worker", "step": "Run step", "tool": "Tool call"}


class ApprovalActions(GuardedCalls, Protocol):
    def approve(self, request_id: str, approved: bool = True, **edits: Any) -> dict: ...


def draw(state: MMAState, actions: ApprovalActions) -> None:
    approvals = list(state.pending_approvals.values())
    if not approvals:
        imgui.text_disabled("No pending approvals.")
        imgui.text_wrapped("Workers ask here before they start (spawn), before a step-mode ticket runs, "
                           "and before a tool writes a file or runs a command.")
        history = list(state.approval_history)[-8:]
        if history:
            imgui.separator_text("Recent")
            for h in reversed(history):
                imgui.text_disabled(f"{h['request_id']}: {h['outcome']}")
        return
    imgui.text(f"{len(approvals)} pending")
    if len(approvals) > 1:
        imgui.same_line()
        imgui.text_disabled("(oldest first)")
    for approval in approvals:
        _one(actions, approval)


def _one(actions: ApprovalActions, a: Approval) -> None:
    rid = a.request_id
    imgui.separator_text(f"{KIND_TITLES.get(a.kind, a.kind)} · {a.ticket_id}")
    imgui.text_disabled(f"{rid} · waiting {time.time() - a.created_at:.0f}s"
                        + (f" · model {a.payload['model']}" if a.payload.get("model") else ""))
    width = imgui.ImVec2(-1, imgui.get_text_line_height() * 6)
    if a.kind == "spawn":
        imgui.text("Prompt (editable):")
        _, a.prompt = imgui.input_text_multiline(f"##prompt-{rid}", a.prompt, width)
        if imgui.tree_node(f"Context ({len(a.context_md)} chars)###ctx-{rid}"):
            _, a.context_md = imgui.input_text_multiline(f"##context-{rid}", a.context_md, width)
            imgui.tree_pop()
    elif a.kind == "tool":
        desc = a.payload.get("description") or {}
        desc = desc if isinstance(desc, dict) else {"summary": str(desc)}
        imgui.text(f"Tool: {a.payload.get('tool', desc.get('tool', '?'))}")
        if desc.get("server"):
            imgui.text_colored(theme.HINT_TEXT, f"MCP server {desc['server']}, tool {desc.get('mcp_tool', '?')}")
        if desc.get("summary"):
            imgui.text_wrapped(str(desc["summary"]))
        if desc.get("error"):
            imgui.text_colored(theme.ERROR_TEXT, f"Would fail: {desc['error']}")
        if desc.get("command"):
            imgui.text("Command:")
            imgui.text_colored(theme.HINT_TEXT, str(desc["command"]))
        if desc.get("diff"):
            imgui.text("Diff:")
            _diff(rid, str(desc["diff"]))
        imgui.text("Arguments (JSON, editable):")
        _, a.args_text = imgui.input_text_multiline(f"##args-{rid}", a.args_text, width)
    else:
        imgui.text_wrapped(str(a.payload.get("description", "")))
    imgui.push_style_color(imgui.Col_.button, imgui.ImVec4(0.16, 0.45, 0.22, 1.0))
    if imgui.button(f"Approve##{rid}"):
        actions.ui(actions.approve, rid, True)
    imgui.pop_style_color()
    imgui.same_line()
    imgui.push_style_color(imgui.Col_.button, imgui.ImVec4(0.55, 0.16, 0.14, 1.0))
    if imgui.button(f"Reject##{rid}"):
        actions.ui(actions.approve, rid, False)
    imgui.pop_style_color()


def _diff(rid: str, diff: str) -> None:
    lines = diff.splitlines()
    height = min(len(lines), 14) * imgui.get_text_line_height_with_spacing() + 8
    imgui.begin_child(f"##diff-{rid}", imgui.ImVec2(0, height), imgui.ChildFlags_.borders,
                      imgui.WindowFlags_.horizontal_scrollbar)
    for line in lines:
        color = DIFF_COLORS.get(line[:1]) if not line.startswith(("+++", "---")) else None
        if color:
            imgui.text_colored(imgui.ImVec4(*color), line)
        else:
            imgui.text_unformatted(line)
    imgui.end_child()
