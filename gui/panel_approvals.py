"""The Approvals window: every pending spawn / step / tool request, oldest first.

`draw(state, actions, view)`: `state` is the `MMAState` (`pending_approvals`, keyed
by request id, and `approval_history`); the window edits each `Approval`'s
fields in place and answers through `actions.approve` (`ApprovalActions`,
satisfied by `gui_2.App`).  `view` (`ApprovalsView`) holds the misfire guard:
answering one request removes it and the list moves up under the cursor, so
for `ANSWER_GUARD_S` after an answer every Approve/Reject button is disabled.
A double click therefore answers exactly one request: the second click lands on
a disabled button, and a click that started on a disabled button does not fire
when the button comes back (ImGui buttons need press and release on the same,
enabled item).  Each request shows how long it has waited and the time left
before it times out.  Labels (request ids look like `spawn-T1-3`):

  "##prompt-<request_id>", "###ctx-<request_id>/##context-<request_id>", "##args-<request_id>",
  "Approve##<request_id>", "Reject##<request_id>"
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from imgui_bundle import imgui

from gui import theme
from gui.actions import GuardedCalls
from gui.mma_state import Approval, MMAState

DIFF_COLORS = {"+": (0.45, 0.85, 0.45, 1.0), "-": (0.95, 0.45, 0.42, 1.0), "@": (0.45, 0.70, 1.0, 1.0)}
KIND_TITLES = {"spawn": "Spawn worker", "step": "Run step", "tool": "Tool call"}
# Longer than a double click (ImGui's io.mouse_double_click_time is 0.30 s) plus a frame or two.
ANSWER_GUARD_S = 0.6


@dataclass
class ApprovalsView:
    guard_until: float = 0.0       # time.monotonic() before which no answer button is enabled
    answered: int = 0              # answers given from this window (tests read it)


class ApprovalActions(GuardedCalls, Protocol):
    def approve(self, request_id: str, approved: bool = True, **edits: Any) -> dict: ...
    @property
    def approval_timeout_s(self) -> float: ...


def time_left(created_at: float, timeout_s: float, now: float) -> str:
    """"4:32 left" until an approval times out ("timing out" once past)."""
    left = created_at + timeout_s - now
    if left <= 0:
        return "timing out"
    return f"{int(left // 60)}:{int(left % 60):02d} left"


def draw(state: MMAState, actions: ApprovalActions, view: ApprovalsView) -> None:
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
    guarded = time.monotonic() < view.guard_until
    for approval in approvals:
        if _one(actions, approval, guarded):
            view.guard_until = time.monotonic() + ANSWER_GUARD_S
            view.answered += 1
            guarded = True         # the rest of this frame too: one answer per click


def _one(actions: ApprovalActions, a: Approval, guarded: bool) -> bool:
    """One request; returns whether it was answered this frame."""
    rid = a.request_id
    now = time.time()
    imgui.separator_text(f"{KIND_TITLES.get(a.kind, a.kind)} · {a.ticket_id}")
    imgui.text_disabled(f"{rid} · waiting {now - a.created_at:.0f}s · "
                        f"{time_left(a.created_at, actions.approval_timeout_s, now)}"
                        + (f" · model {a.payload['model']}" if a.payload.get("model") else ""))
    width = imgui.ImVec2(-1, imgui.get_text_line_height() * 6)
    wrap = imgui.InputTextFlags_.word_wrap
    if a.kind == "spawn":
        imgui.text("Prompt (editable):")
        _, a.prompt = imgui.input_text_multiline(f"##prompt-{rid}", a.prompt, width, wrap)
        if imgui.tree_node(f"Context ({len(a.context_md)} chars)###ctx-{rid}"):
            _, a.context_md = imgui.input_text_multiline(f"##context-{rid}", a.context_md, width, wrap)
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
    answer: bool | None = None
    imgui.begin_disabled(guarded)
    imgui.push_style_color(imgui.Col_.button, imgui.ImVec4(0.16, 0.45, 0.22, 1.0))
    if imgui.button(f"Approve##{rid}"):
        answer = True
    imgui.pop_style_color()
    imgui.same_line()
    imgui.push_style_color(imgui.Col_.button, imgui.ImVec4(0.55, 0.16, 0.14, 1.0))
    if imgui.button(f"Reject##{rid}"):
        answer = False
    imgui.pop_style_color()
    imgui.end_disabled()
    if answer is None:
        return False
    actions.ui(actions.approve, rid, answer)
    return True


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
