"""The Tier Streams window: one tab per stream id, the text drawn line by line with a clipper.

`draw(state, view)`: `state` is the `StreamStore` (`MMAState.mma_streams`);
the window calls no app command (*Copy* puts the text on the clipboard).
`view` (`StreamsView`, created by `gui/layout.py` with the window) holds the
per-stream wrapped-line caches (`gui/mma_display.py: LineCache`, extended in
O(new text) on appends) and the Markdown / Follow / Jump toggles.

Labels: tabs "##streams/<stream_id>" ("Tier 1", "Tier 2 (Tech Lead)", "Tier 3 (Worker): T1", ...);
in the selected tab "Copy##<stream_id>", "Markdown##<stream_id>", "Follow##<stream_id>",
"Jump to new streams".
"""
from __future__ import annotations

from dataclasses import dataclass, field

from imgui_bundle import imgui, imgui_md

from gui import theme
from gui.mma_display import LineCache, update_line_cache
from gui.mma_state import StreamStore

MARKDOWN_LIMIT = 64_000          # final texts up to this size may render as markdown
STATUS_AS_TICKET = {"done": "completed", "streaming": "in_progress"}   # colour a stream like a ticket


@dataclass
class StreamsView:
    caches: dict[str, LineCache] = field(default_factory=dict)
    markdown: dict[str, bool] = field(default_factory=dict)
    follow: dict[str, bool] = field(default_factory=dict)
    seen_version: dict[str, int] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    auto_select: bool = True       # a new stream's tab comes to the front


def draw(state: StreamStore, view: StreamsView) -> None:
    ids = state.ordered_ids()
    if not ids:
        imgui.text_disabled("No model output yet. Type an epic in the MMA Dashboard and press Plan Epic.")
        return
    if not imgui.begin_tab_bar("##streams", imgui.TabBarFlags_.fitting_policy_scroll):
        return
    new_ids = [sid for sid in ids if sid not in view.known]
    view.known.update(new_ids)
    select = new_ids[-1] if new_ids and view.auto_select else None
    for sid in ids:
        flags = imgui.TabItemFlags_.set_selected if sid == select else 0
        selected, _ = imgui.begin_tab_item(sid, None, flags)
        if imgui.is_item_hovered():
            imgui.set_tooltip(f"{sid}: {state.status.get(sid, 'streaming')}, {state.length(sid)} chars")
        if selected:
            _stream(state, view, sid)
            imgui.end_tab_item()
    imgui.end_tab_bar()


def _stream(store: StreamStore, view: StreamsView, sid: str) -> None:
    status = store.status.get(sid, "streaming")
    text = store[sid]
    imgui.text_colored(theme.status_color(STATUS_AS_TICKET.get(status, status)), status)
    imgui.same_line()
    imgui.text_disabled(f"{len(text)} chars" + (" (oldest output truncated)" if store.truncated(sid) else ""))
    imgui.same_line()
    if imgui.small_button(f"Copy##{sid}"):
        imgui.set_clipboard_text(text)
    imgui.same_line()
    can_md = status == "done" and len(text) <= MARKDOWN_LIMIT
    _, view.markdown[sid] = imgui.checkbox(f"Markdown##{sid}", view.markdown.get(sid, True))
    imgui.same_line()
    _, view.follow[sid] = imgui.checkbox(f"Follow##{sid}", view.follow.get(sid, True))
    imgui.same_line()
    _, view.auto_select = imgui.checkbox("Jump to new streams", view.auto_select)
    if imgui.is_item_hovered():
        imgui.set_tooltip("Bring a stream's tab to the front when it starts (e.g. a new worker)")
    flags = imgui.WindowFlags_.horizontal_scrollbar
    imgui.begin_child(f"##text-{sid}", imgui.ImVec2(0, 0), imgui.ChildFlags_.borders, flags)
    if can_md and view.markdown[sid]:
        imgui_md.render_unindented(text)
    else:
        cache = view.caches.setdefault(sid, LineCache())
        char_w = max(1.0, imgui.calc_text_size("abcdefghijklmnopqrstuvwxyz").x / 26.0)
        cols = max(20, int(imgui.get_content_region_avail().x / char_w * 0.92))
        update_line_cache(cache, text, store.generation.get(sid, 0), cols)
        clipper = imgui.ListClipper()
        clipper.begin(len(cache.lines))
        while clipper.step():
            for i in range(clipper.display_start, clipper.display_end):
                imgui.text_unformatted(cache.lines[i])
        clipper.end()
    version = store.version.get(sid, 0)
    if view.follow[sid] and view.seen_version.get(sid) != version:
        imgui.set_scroll_here_y(1.0)
    view.seen_version[sid] = version
    imgui.end_child()
