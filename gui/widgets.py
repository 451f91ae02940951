"""Small widgets the panels share: confirmation dialogs and text cut to a width.

Confirmation dialogs guard destructive actions (Clear log, Abort, Reject a track, Reload).

`ask(popup_id)` opens the dialog (call it where the button was pressed); `dialog(...)`,
drawn every frame in the same ID scope, shows it and returns the label of the button the
user pressed, or None.  The buttons say what they do ("Clear log", "Abort track"), the
safe choice is *Cancel*, and Escape closes the dialog like Cancel.  The dialog is an
ImGui modal, so nothing behind it can be clicked while it is open.

Test Engine: the modal is focused while open, so its buttons are `//$FOCUSED/<label>`.

`fit_text(text, width)` cuts a text with "..." to a pixel width (the full text belongs in a
tooltip).
"""
from __future__ import annotations

from imgui_bundle import imgui

from gui import theme

CANCEL = "Cancel"


def ask(popup_id: str) -> None:
    imgui.open_popup(popup_id)


def dialog(popup_id: str, message: str, buttons: tuple[str, ...], detail: str = "",
           danger: str | None = None) -> str | None:
    """Draw the modal `popup_id` if it is open; the pressed button's label, or None.

    `buttons` are the actions besides *Cancel*; `danger` names the one drawn in red."""
    center = imgui.get_main_viewport().get_center()
    imgui.set_next_window_pos(center, imgui.Cond_.appearing, imgui.ImVec2(0.5, 0.5))
    imgui.set_next_window_size_constraints(imgui.ImVec2(320, 0), imgui.ImVec2(640, 10_000))
    opened, _ = imgui.begin_popup_modal(popup_id, None, imgui.WindowFlags_.always_auto_resize)
    if not opened:
        return None
    chosen: str | None = None
    imgui.push_text_wrap_pos(imgui.get_font_size() * 34)
    imgui.text_unformatted(message)
    if detail:
        imgui.text_colored(theme.MUTED_TEXT, detail)
    imgui.pop_text_wrap_pos()
    imgui.spacing()
    for label in buttons:
        red = label == danger
        if red:
            imgui.push_style_color(imgui.Col_.button, imgui.ImVec4(0.55, 0.16, 0.14, 1.0))
        if imgui.button(label):
            chosen = label
        if red:
            imgui.pop_style_color()
        imgui.same_line()
    if imgui.button(CANCEL) or imgui.is_key_pressed(imgui.Key.escape):
        chosen = CANCEL
    if chosen is not None:
        imgui.close_current_popup()
    imgui.end_popup()
    return chosen


def fit_text(text: str, width: float) -> str:
    """`text`, cut with an ellipsis so it is at most `width` pixels wide."""
    if imgui.calc_text_size(text).x <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:                       # longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if imgui.calc_text_size(text[:mid] + "...").x <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "..."
