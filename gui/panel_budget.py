"""Budget panel: context tokens in use vs the model window, share per source, trim order, cache.

`draw(state)` draws the `ContextState`'s budget into the current window; it
calls no command, so it takes no `actions`.  All numbers come from
`ContextState.budget()` / `trim_preview()`, which only recompute when the
context changed (never per frame).  Layout: a progress bar (tokens in use vs
the limit), a stacked bar of the mix, the table "budget_sources", the trim
order, cache counters.
"""
from __future__ import annotations

from imgui_bundle import imgui

from gui.context_state import ContextState
from gui.file_items import SOURCES
from gui.panel_project import DIM_COLOR, ERROR_COLOR

SOURCE_COLORS = {
    "files": imgui.ImVec4(0.33, 0.62, 0.95, 1.0),
    "screenshots": imgui.ImVec4(0.85, 0.55, 0.95, 1.0),
    "history": imgui.ImVec4(0.45, 0.85, 0.5, 1.0),
    "system": imgui.ImVec4(0.95, 0.78, 0.35, 1.0),
    "message": imgui.ImVec4(0.7, 0.7, 0.7, 1.0),
}
OK_BAR = imgui.ImVec4(0.3, 0.65, 0.4, 1.0)
WARN_BAR = imgui.ImVec4(0.85, 0.65, 0.2, 1.0)
OVER_BAR = imgui.ImVec4(0.85, 0.3, 0.25, 1.0)
ACTION_TEXT = {
    "drop_discussion": "drop discussion entry",
    "downgrade_to_skeleton": "downgrade to skeleton",
    "drop_file": "drop file",
}


def _stacked_bar(parts: list[tuple[str, int]], limit: int, height: float = 10.0) -> None:
    """One bar: each source's tokens as a share of `limit`, in its colour."""
    draw_list = imgui.get_window_draw_list()
    origin = imgui.get_cursor_screen_pos()
    width = max(imgui.get_content_region_avail().x, 1.0)
    draw_list.add_rect_filled(origin, imgui.ImVec2(origin.x + width, origin.y + height),
                              imgui.get_color_u32(imgui.Col_.frame_bg))
    x = origin.x
    scale = width / limit if limit else 0.0
    for source, tokens in parts:
        w = tokens * scale
        if w <= 0:
            continue
        w = max(w, 2.0)                       # a tiny share still shows
        end = min(x + w, origin.x + width)
        draw_list.add_rect_filled(imgui.ImVec2(x, origin.y), imgui.ImVec2(end, origin.y + height),
                                  imgui.get_color_u32(SOURCE_COLORS[source]))
        x = end
    imgui.dummy(imgui.ImVec2(width, height))


def draw(state: ContextState) -> None:
    b = state.budget()
    limit, total = b["limit"], b["total_tokens"]
    fraction = b["fraction"]
    color = OVER_BAR if fraction > 1 else WARN_BAR if fraction > 0.8 else OK_BAR
    imgui.push_style_color(imgui.Col_.plot_histogram, color)
    imgui.progress_bar(min(fraction, 1.0), imgui.ImVec2(-1, 0),
                       f"{total:,} / {limit:,} tokens ({fraction * 100:.1f}%)")
    imgui.pop_style_color()
    if b.get("building"):
        done, total = b.get("build_progress") or (0, 0)
        imgui.text_colored(DIM_COLOR, f"measuring the context… {done:,}/{total:,} files" if total
                           else "measuring the context…")
    window_note = (f"model window {b['context_window']:,} ({state.current_model})"
                   f" · project budget {b['budget_limit']:,}")
    imgui.text_colored(DIM_COLOR, window_note)

    parts = [(s, b["by_source"].get(s, 0)) for s in SOURCES] + [("message", b["draft_tokens"])]
    _stacked_bar(parts, total)        # the mix; the progress bar above shows the fill
    flags = imgui.TableFlags_.borders_inner_h | imgui.TableFlags_.sizing_stretch_prop
    if imgui.begin_table("budget_sources", 3, flags):
        imgui.table_setup_column("Source", imgui.TableColumnFlags_.width_stretch)
        pad = imgui.get_style().cell_padding.x * 2
        imgui.table_setup_column("Tokens", imgui.TableColumnFlags_.width_fixed,
                                 imgui.calc_text_size(f"{max(total, 1):,}").x + pad)
        imgui.table_setup_column("Share", imgui.TableColumnFlags_.width_fixed, imgui.calc_text_size("100.0%").x + pad)
        imgui.table_headers_row()
        for source, tokens in parts:
            imgui.table_next_row()
            imgui.table_next_column()
            imgui.color_button(f"##swatch_{source}", SOURCE_COLORS[source],
                               imgui.ColorEditFlags_.no_tooltip | imgui.ColorEditFlags_.no_drag_drop,
                               imgui.ImVec2(10, 10))
            imgui.same_line()
            imgui.text("message (draft)" if source == "message" else source)
            imgui.table_next_column()
            imgui.text(f"{tokens:,}")
            imgui.table_next_column()
            imgui.text(f"{(tokens / total * 100) if total else 0:.1f}%")
        imgui.end_table()

    if b["over_budget"]:
        imgui.push_style_color(imgui.Col_.text, ERROR_COLOR)
        verdict = ("over budget: trimming below would make it fit" if b["fits_after_trim"]
                   else "over budget even after every trim step")
        imgui.text_wrapped(verdict)
        imgui.pop_style_color()
        imgui.text("Trim plan (in order):")
    else:
        imgui.text("If trimming is needed, it drops first:")
    steps = state.trim_preview()
    if not steps:
        imgui.text_colored(DIM_COLOR, "  nothing to trim")
    for step in steps:
        imgui.bullet_text(f"{ACTION_TEXT.get(step.action, step.action)}: {step.label} "
                          f"(-{step.tokens_saved:,})")

    imgui.separator_text("Cache")
    c = b["cache"]
    imgui.text(f"{c['entries']} files cached · {c['hits']:,} hits · {c['misses']:,} misses · "
               f"{c['parses']:,} parses")
    imgui.text_colored(DIM_COLOR, f"rebuilt {b['refresh_count']}× (last {b['last_refresh_ms']:.1f} ms), "
                                  f"{b['disk_rebuilds']} after changes on disk")
    u = b["session_usage"]
    imgui.text_colored(DIM_COLOR, f"chat session: {u['input_tokens']:,} in / {u['output_tokens']:,} out")
    if b["errors"]:
        imgui.push_style_color(imgui.Col_.text, ERROR_COLOR)
        for err in b["errors"][:5]:
            imgui.text_wrapped(err)
        imgui.pop_style_color()
