"""Comms log panel: every request/response/tool/retry/error entry, filterable, clipped.

`draw(state, actions)` draws into the current window: `state` is the
`CommsLog` it shows (its Follow box is edited in place), `actions`
(`CommsActions`) the filter / select / clear calls -- the same `CommsLog`
satisfies both.  The app calls `drain()` once per frame (before drawing).
Rows are drawn with `imgui.ListClipper`, so a 10k-entry log costs only the
visible rows.  Clicking a row shows its full payload below the table.

Filtering and clearing are kept apart: the filter row (kind, provider, direction,
search text) ends in *Reset filters*; when a filter hides rows, a warning says how
many and offers *Show all*.  *Clear log* sits on its own at the right and asks first.
Each row says which tier (and ticket) made the call (the session label: "Tier 3
(Worker): T1", "chat", ...).

Labels tests rely on: combos "##comms_kind", "##comms_provider",
"##comms_direction" (find combos by full path, e.g. "//Comms/##comms_kind"),
the text box "##comms_filter", "Reset filters##comms", "Show all##comms",
"Clear log##comms" (then "//$FOCUSED/Clear log" or "//$FOCUSED/Cancel"),
"Follow##comms", the table "comms_table" whose rows are selectables "#<seq>",
and the payload view "##comms_payload".
"""
from __future__ import annotations

from typing import Protocol

from imgui_bundle import imgui

from gui import theme, widgets
from gui.comms_log import CommsLog
from gui.panel_project import DIM_COLOR, ERROR_COLOR

DIRECTION_COLORS = {"OUT": imgui.ImVec4(0.45, 0.75, 1.0, 1.0), "IN": imgui.ImVec4(0.55, 0.9, 0.55, 1.0)}
DETAILS_HEIGHT = 150.0
CLEAR_POPUP = "Clear the comms log?"


class CommsActions(Protocol):
    def set_filter(self, *, kind: str | None = None, provider: str | None = None,
                   direction: str | None = None, text: str | None = None) -> None: ...
    def select(self, seq: int | None) -> None: ...
    def clear(self) -> None: ...
    def reset_filters(self) -> None: ...


def _filter_combo(title: str, widget_id: str, current: str, choices: list[str], width: float) -> str | None:
    chosen = None
    imgui.align_text_to_frame_padding()
    imgui.text(title)
    imgui.same_line(0, 4)
    imgui.set_next_item_width(width)
    if imgui.begin_combo(widget_id, current or "all"):
        for choice in ["", *choices]:
            if imgui.selectable(choice or "all", choice == current)[0] and choice != current:
                chosen = choice
        imgui.end_combo()
    return chosen


def draw(state: CommsLog, actions: CommsActions) -> None:
    kind = _filter_combo("Kind", "##comms_kind", state.filter_kind, sorted(state.kinds), 90)
    if kind is not None:
        actions.set_filter(kind=kind)
    imgui.same_line()
    provider = _filter_combo("Provider", "##comms_provider", state.filter_provider, sorted(state.providers), 80)
    if provider is not None:
        actions.set_filter(provider=provider)
    imgui.same_line()
    direction = _filter_combo("Dir", "##comms_direction", state.filter_direction, ["OUT", "IN"], 55)
    if direction is not None:
        actions.set_filter(direction=direction)
    clear_w = imgui.calc_text_size("Clear log").x + imgui.get_style().frame_padding.x * 2
    imgui.set_next_item_width(max(120.0, imgui.get_content_region_avail().x - clear_w - 240))
    changed, text = imgui.input_text_with_hint("##comms_filter", "search: kind, model, tier, ticket, payload",
                                               state.filter_text)
    imgui.set_item_tooltip("words that must all appear (kind, provider, model, tier/ticket or payload)")
    if changed:
        actions.set_filter(text=text)
    imgui.same_line()
    imgui.begin_disabled(not state.filtering)
    if imgui.small_button("Reset filters##comms"):
        actions.reset_filters()
    imgui.end_disabled()
    imgui.same_line()
    _, state.follow = imgui.checkbox("Follow##comms", state.follow)
    imgui.same_line(imgui.get_cursor_pos_x() + max(0.0, imgui.get_content_region_avail().x - clear_w))
    imgui.push_style_color(imgui.Col_.button, imgui.ImVec4(0.45, 0.16, 0.14, 1.0))
    if imgui.small_button("Clear log##comms"):
        widgets.ask(CLEAR_POPUP)
    imgui.pop_style_color()
    imgui.set_item_tooltip("delete every entry of the comms log (asks first)")
    if widgets.dialog(CLEAR_POPUP, f"Delete all {len(state.rows):,} entries of the comms log?",
                      ("Clear log",), "The session logs in .mma_desk/logs keep them.", danger="Clear log") == "Clear log":
        actions.clear()
    rows = state.visible()
    dropped = f", {state.dropped:,} oldest dropped" if state.dropped else ""
    imgui.text_colored(DIM_COLOR, f"{len(rows):,}/{len(state.rows):,} entries{dropped}")
    hidden = len(state.rows) - len(rows)
    if hidden:
        imgui.same_line()
        imgui.text_colored(theme.RUN_STATUS_COLORS["aborted"], f"the filter hides {hidden:,} entries")
        imgui.same_line()
        if imgui.small_button("Show all##comms"):
            actions.reset_filters()

    selected = state.selected
    table_height = -(DETAILS_HEIGHT if selected is not None else 1.0)
    flags = (imgui.TableFlags_.scroll_y | imgui.TableFlags_.scroll_x | imgui.TableFlags_.row_bg
             | imgui.TableFlags_.borders_inner_v | imgui.TableFlags_.resizable
             | imgui.TableFlags_.sizing_fixed_fit)
    if imgui.begin_table("comms_table", 10, flags, imgui.ImVec2(0, table_height)):
        imgui.table_setup_scroll_freeze(0, 1)
        imgui.table_setup_column("#", imgui.TableColumnFlags_.width_fixed, 44)
        imgui.table_setup_column("Time", imgui.TableColumnFlags_.width_fixed, 86)
        imgui.table_setup_column("Dir", imgui.TableColumnFlags_.width_fixed, 30)
        imgui.table_setup_column("Tier / ticket", imgui.TableColumnFlags_.width_fixed, 150)
        imgui.table_setup_column("Kind", imgui.TableColumnFlags_.width_fixed, 70)
        imgui.table_setup_column("Provider", imgui.TableColumnFlags_.width_fixed, 62)
        imgui.table_setup_column("Model", imgui.TableColumnFlags_.width_fixed, 120)
        imgui.table_setup_column("In", imgui.TableColumnFlags_.width_fixed, 48)
        imgui.table_setup_column("Out", imgui.TableColumnFlags_.width_fixed, 48)
        imgui.table_setup_column("Payload", imgui.TableColumnFlags_.width_fixed, 600)
        imgui.table_headers_row()
        at_bottom = imgui.get_scroll_y() >= imgui.get_scroll_max_y() - 2
        clipper = imgui.ListClipper()
        clipper.begin(len(rows))
        while clipper.step():
            for i in range(clipper.display_start, clipper.display_end):
                row = rows[i]
                imgui.table_next_row()
                imgui.table_next_column()
                clicked, _ = imgui.selectable(f"#{row.seq}", row.seq == state.selected_seq,
                                              imgui.SelectableFlags_.span_all_columns)
                if clicked:
                    actions.select(None if row.seq == state.selected_seq else row.seq)
                imgui.table_next_column()
                imgui.text(row.time_str)
                imgui.table_next_column()
                imgui.text_colored(DIRECTION_COLORS.get(row.direction, DIM_COLOR), row.direction)
                imgui.table_next_column()
                imgui.text(row.label)
                imgui.table_next_column()
                if row.kind == "error":
                    imgui.text_colored(ERROR_COLOR, row.kind)
                else:
                    imgui.text(row.kind)
                imgui.table_next_column()
                imgui.text(row.provider)
                imgui.table_next_column()
                imgui.text(row.model)
                imgui.table_next_column()
                imgui.text("" if row.tokens_in is None else f"{row.tokens_in:,}")
                imgui.table_next_column()
                imgui.text("" if row.tokens_out is None else f"{row.tokens_out:,}")
                imgui.table_next_column()
                imgui.text(row.preview)
        clipper.end()
        if at_bottom and state.follow:
            imgui.set_scroll_here_y(1.0)
        imgui.end_table()

    if selected is not None:
        imgui.text(f"#{selected.seq} {selected.direction} {selected.kind} · {selected.provider} "
                   f"{selected.model} · {selected.time_str}")
        imgui.same_line()
        if imgui.small_button("Close##comms_payload"):
            actions.select(None)
        imgui.input_text_multiline("##comms_payload", state.selected_payload(),
                                   imgui.ImVec2(-1, -1), imgui.InputTextFlags_.read_only)
