"""Discussion panel: provider/model pickers, the curated history, the message box, the reply.

`draw(state, actions)` draws into the current window: `state` is the
`ContextState` it shows (the message box and the new-discussion name are edited
in place), `actions` (`DiscussionActions`) the commands it calls -- the same
`ContextState` satisfies both.  Replies are rendered as markdown
with imgui_md when the runner initialised it (`immapp.run(..., with_markdown=True)`
or `AddOnsParams(with_markdown=True)`); otherwise as wrapped plain text.

Sending: *Send* or Ctrl+Enter in the message box (Enter makes a new line).  A Send
over the model's window is refused, one over the project budget or a large one waits
in a dialog with the token count and estimated cost ("Send anyway", "Send trimmed"
when a measured trim fits, "Cancel"; see gui/send_check.py).  *Regenerate* asks the
last question again; *Copy* on an entry says "Copied" for a moment.

Labels tests rely on: combos "##provider", "##model", "##discussion" (find combos
by full path, e.g. "//Discussion/##provider"), "##new_discussion_name", "New discussion",
per entry "##role_<i>", "Edit##entry_<i>" / "Done##entry_<i>", "Up##entry_<i>",
"Down##entry_<i>", "Delete##entry_<i>", "Copy##entry_<i>", the editor "##text_<i>" (inside child
"history"), the message box "##ai_input", "Send", "Regenerate", "Stop", and in the
Send dialog (`SEND_POPUP`) "//$FOCUSED/Send anyway", "//$FOCUSED/Send trimmed", "//$FOCUSED/Cancel".
"""
from __future__ import annotations

import time
from typing import Protocol

from imgui_bundle import imgui, imgui_md

from gui import widgets
from gui.context_state import ContextState
from gui.panel_project import DIM_COLOR, ErrorActions, draw_errors
from project import PROVIDERS, ROLES

ROLE_COLORS = {
    "user": imgui.ImVec4(0.45, 0.75, 1.0, 1.0),
    "assistant": imgui.ImVec4(0.55, 0.9, 0.55, 1.0),
    "system": imgui.ImVec4(0.95, 0.8, 0.4, 1.0),
}
MESSAGE_BOX_LINES = 4
ERROR_SOURCES = ("send", "discussion")
SEND_POPUP = "###send_dialog"      # the title says whether it is a question or a refusal
SEND_ANYWAY = "Send anyway"
SEND_TRIMMED = "Send trimmed"
COPIED_FEEDBACK_S = 1.5


class DiscussionActions(ErrorActions, Protocol):
    def set_provider(self, provider: str) -> bool: ...
    def set_model(self, model: str) -> bool: ...
    def select_discussion(self, name: str) -> bool: ...
    def new_discussion(self, name: str) -> bool: ...
    def edit_entry(self, index: int, *, content: str | None = None, role: str | None = None) -> bool: ...
    def toggle_edit(self, index: int) -> bool: ...
    def delete_entry(self, index: int) -> bool: ...
    def move_entry(self, index: int, delta: int) -> bool: ...
    def send_message(self, confirmed: bool = False, trimmed: bool = False) -> bool: ...
    def cancel_send(self) -> None: ...
    def regenerate(self) -> bool: ...
    def cancel(self) -> bool: ...


def markdown_available() -> bool:
    """True when imgui_md has a context (its fonts were loaded by the runner)."""
    return imgui_md.get_current_context() is not None


def render_markdown(text: str) -> None:
    if markdown_available():
        imgui_md.render(text)
    else:
        imgui.text_wrapped(text)


def _combo(widget_id: str, current: str, choices: list[str] | tuple[str, ...], width: float,
           title: str = "") -> str | None:
    """A combo with its title on the left; returns the newly chosen value or None."""
    chosen = None
    if title:
        imgui.align_text_to_frame_padding()
        imgui.text(title)
        imgui.same_line()
    imgui.set_next_item_width(width)
    if imgui.begin_combo(widget_id, current):
        for choice in choices:
            if imgui.selectable(choice, choice == current)[0] and choice != current:
                chosen = choice
        imgui.end_combo()
    return chosen


def _draw_pickers(state: ContextState, actions: DiscussionActions) -> None:
    imgui.begin_disabled(state.busy)
    provider = _combo("##provider", state.current_provider, PROVIDERS, 95, "Provider")
    if provider:
        actions.set_provider(provider)
    imgui.same_line()
    models = state.models_for(state.current_provider)
    if state.current_model not in models:
        models = [state.current_model, *models]
    model = _combo("##model", state.current_model, models, -1, "Model")
    if model:
        actions.set_model(model)
    imgui.end_disabled()

    name = _combo("##discussion", state.active_discussion, state.discussion_names, 110, "Discussion")
    if name:
        actions.select_discussion(name)
    imgui.same_line()
    new_label = "New discussion"
    imgui.set_next_item_width(-imgui.calc_text_size(new_label).x - 2 * imgui.get_style().frame_padding.x
                              - imgui.get_style().item_spacing.x)
    entered, state.inputs.new_discussion_name = imgui.input_text_with_hint(
        "##new_discussion_name", "new discussion name", state.inputs.new_discussion_name,
        imgui.InputTextFlags_.enter_returns_true)
    imgui.same_line()
    if (imgui.button("New discussion") or entered) and actions.new_discussion(state.inputs.new_discussion_name):
        state.inputs.new_discussion_name = ""


def _short_ts(ts: str) -> str:
    """"2026-11-24T07:12:22+00:00" -> "11-24 07:12" (the full stamp is in the tooltip)."""
    return ts[5:16].replace("T", " ") if len(ts) >= 16 else ts


def _draw_entry(state: ContextState, actions: DiscussionActions, i: int, count: int) -> str | None:
    """One history entry; returns a structural action ("up"/"down"/"delete") to apply after the loop."""
    entry = state.entries[i]
    action = None
    imgui.color_button(f"##role_color_{i}", ROLE_COLORS.get(entry.role, DIM_COLOR),
                       imgui.ColorEditFlags_.no_tooltip | imgui.ColorEditFlags_.no_drag_drop,
                       imgui.ImVec2(6, imgui.get_frame_height()))
    imgui.same_line(0, 4)
    role = _combo(f"##role_{i}", entry.role, ROLES, 95)
    if role:
        actions.edit_entry(i, role=role)
    imgui.same_line()
    editing = state.is_editing(i)
    if imgui.small_button(f"{'Done' if editing else 'Edit'}##entry_{i}"):
        editing = actions.toggle_edit(i)
    imgui.same_line()
    imgui.begin_disabled(i == 0)
    if imgui.small_button(f"Up##entry_{i}"):
        action = "up"
    imgui.end_disabled()
    imgui.same_line()
    imgui.begin_disabled(i == count - 1)
    if imgui.small_button(f"Down##entry_{i}"):
        action = "down"
    imgui.end_disabled()
    imgui.same_line()
    if imgui.small_button(f"Delete##entry_{i}"):
        action = "delete"
    imgui.same_line()
    copied = state.inputs.copied_key == f"entry_{i}" and time.monotonic() - state.inputs.copied_at < COPIED_FEEDBACK_S
    if imgui.small_button(f"{'Copied' if copied else 'Copy'}##entry_{i}"):
        imgui.set_clipboard_text(entry.content)
        state.inputs.copied_key, state.inputs.copied_at = f"entry_{i}", time.monotonic()
    imgui.same_line()
    imgui.text_colored(DIM_COLOR, _short_ts(entry.ts))
    imgui.set_item_tooltip(entry.ts)
    if editing:
        lines = max(3, min(14, entry.content.count("\n") + 2))
        changed, text = imgui.input_text_multiline(
            f"##text_{i}", entry.content, imgui.ImVec2(-1, imgui.get_text_line_height() * lines + 8))
        if changed:
            actions.edit_entry(i, content=text)
    else:
        imgui.push_id(f"md_{i}")   # markdown widgets of different entries must not collide
        render_markdown(entry.content or "*(empty)*")
        imgui.pop_id()
    imgui.separator()
    return action


def draw(state: ContextState, actions: DiscussionActions) -> None:
    _draw_pickers(state, actions)
    shown_errors = sum(1 for e in state.errors if e.source in ERROR_SOURCES)
    footer = (imgui.get_text_line_height() * MESSAGE_BOX_LINES + imgui.get_frame_height_with_spacing() * 2
              + 24 + (min(shown_errors, 4) * 2 + 1) * imgui.get_text_line_height_with_spacing()
              * (shown_errors > 0))
    imgui.begin_child("history", imgui.ImVec2(0, -footer), imgui.ChildFlags_.borders)
    entries = state.entries
    pending = None
    for i in range(len(entries)):
        action = _draw_entry(state, actions, i, len(entries))
        if action:
            pending = (action, i)
    if not entries and not state.busy:
        imgui.text_colored(DIM_COLOR, "No messages yet. Curate the context, then write below.")
    if state.busy or state.stream_text:
        imgui.text_colored(ROLE_COLORS["assistant"], "assistant (streaming…)")
        imgui.push_id("stream")
        render_markdown(state.stream_text or "…")
        imgui.pop_id()
        if imgui.get_scroll_y() >= imgui.get_scroll_max_y() - 4:
            imgui.set_scroll_here_y(1.0)
    if state.scroll_history:
        state.scroll_history = False
        imgui.set_scroll_here_y(1.0)
    imgui.end_child()
    if pending:
        action, i = pending
        if action == "delete":
            actions.delete_entry(i)
        else:
            actions.move_entry(i, -1 if action == "up" else 1)

    draw_errors(state, actions, ERROR_SOURCES, "discussion")
    # Enter makes a new line; Ctrl+Enter "validates" a multi-line box, which enter_returns_true reports.
    ctrl_enter, state.ai_input = imgui.input_text_multiline(
        "##ai_input", state.ai_input,
        imgui.ImVec2(-1, imgui.get_text_line_height() * MESSAGE_BOX_LINES + 8),
        imgui.InputTextFlags_.enter_returns_true | imgui.InputTextFlags_.word_wrap)
    imgui.set_item_tooltip("Ctrl+Enter sends")
    measuring = state.background_builds and state.context_stale
    can_send = not state.busy and bool(state.ai_input.strip()) and not measuring
    imgui.begin_disabled(not can_send)
    if imgui.button("Send") or (ctrl_enter and can_send):
        actions.send_message()
    imgui.end_disabled()
    if measuring and imgui.is_item_hovered(imgui.HoveredFlags_.allow_when_disabled):
        imgui.set_tooltip("Send waits until the context is measured (see the Budget panel)")
    imgui.same_line()
    imgui.begin_disabled(not state.can_regenerate() or measuring)
    if imgui.button("Regenerate"):
        actions.regenerate()
    imgui.end_disabled()
    imgui.set_item_tooltip("drop the last reply and ask the same question again")
    imgui.same_line()
    _send_dialog(state, actions)
    if measuring:
        progress = state.build_progress
        done, total = progress if progress else (0, 0)
        imgui.text_colored(DIM_COLOR, f"measuring context… {done:,}/{total:,} files" if total
                           else "measuring context…")
    elif state.busy:
        if imgui.button("Stop"):
            actions.cancel()
        imgui.same_line()
        imgui.text_colored(DIM_COLOR, f"streaming from {state.current_provider}/{state.current_model}…")
    else:
        usage = state.last_usage
        tail = (f" · last reply: {usage['input_tokens']:,} in / {usage['output_tokens']:,} out"
                if usage else "")
        imgui.text_colored(DIM_COLOR, f"{len(state.ai_input):,} chars{tail}")


def _send_dialog(state: ContextState, actions: DiscussionActions) -> None:
    """The dialog of a Send that needs the user's word (over a limit, or large)."""
    check = state.pending_send
    if check is None:
        return
    if not imgui.is_popup_open(SEND_POPUP):
        widgets.ask(SEND_POPUP)
    buttons: list[str] = []
    offer = check.offer
    if check.verdict == "confirm":
        buttons.append(SEND_ANYWAY)
    if offer is not None and offer.fits:
        buttons.append(SEND_TRIMMED)
    if check.offer_pending:
        detail = "Working out a trim plan that fits..."
    elif offer is None:
        detail = "Large send: check the token count and the cost before it goes."
    elif offer.fits:
        dropped = ", ".join(f"{step.action.replace('_', ' ')} {step.label}" for step in offer.steps[:4])
        more = f" and {len(offer.steps) - 4} more" if len(offer.steps) > 4 else ""
        detail = (f"Send trimmed sends {offer.tokens:,} tokens (limit {offer.target:,} for the context): "
                  f"{dropped}{more}.")
    else:
        detail = (f"No trim plan gets the context under {offer.target:,} tokens: remove files or switch "
                  "them to skeleton/outline.")
    title = "Not sent: over the model's window" if check.verdict == "refuse" else "Send this message?"
    chosen = widgets.dialog(title + SEND_POPUP, check.describe(), tuple(buttons), detail)
    if chosen == SEND_ANYWAY:
        actions.send_message(confirmed=True)
    elif chosen == SEND_TRIMMED:
        actions.send_message(trimmed=True)
    elif chosen == widgets.CANCEL:
        actions.cancel_send()
