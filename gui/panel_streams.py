"""The Tier Streams window: one tab per stream id, the text drawn line by line with a clipper.

`draw(state, view)`: `state` is the `MMAState` (its live `mma_streams`, a `StreamStore`,
and `stream_groups`, the streams of earlier tracks); the window calls no app command
(*Copy* puts the text on the clipboard and says "Copied" for a moment).  `view`
(`StreamsView`, created by `gui/layout.py` with the window) holds the per-stream
wrapped-line caches (`gui/mma_display.py: LineCache`, extended in O(new text) on
appends), the Markdown / Follow / Jump toggles, the track picker and the search text.

Streams are grouped per track: ticket ids repeat across tracks, so when a track starts
the previous track's tabs move to a group of their own (`MMAState.start_track`); the
*Track* picker shows the live track or an earlier one.  *Search* keeps the lines of the
selected stream that contain every word (case-insensitive), with their line numbers.

Labels: tabs "##streams/<stream_id>" ("Tier 1", "Tier 2 (Tech Lead)", "Tier 3 (Worker): T1", ...,
"Tier 4 (QA): T2"); "##stream_search", the combo "##stream_track"; in the selected tab
"Copy##<stream_id>", "Markdown##<stream_id>", "Follow##<stream_id>", "Jump to new streams".
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from imgui_bundle import imgui, imgui_md

from gui import theme
from gui.mma_display import LineCache, update_line_cache
from gui.mma_state import MMAState, StreamStore, stream_sort_key

MARKDOWN_LIMIT = 64_000          # final texts up to this size may render as markdown
STATUS_AS_TICKET = {"done": "completed", "streaming": "in_progress"}   # colour a stream like a ticket
COPIED_FEEDBACK_S = 1.5
MAX_SEARCH_HITS = 2000


@dataclass
class StreamsView:
    caches: dict[str, LineCache] = field(default_factory=dict)
    markdown: dict[str, bool] = field(default_factory=dict)
    follow: dict[str, bool] = field(default_factory=dict)
    seen_version: dict[str, int] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    auto_select: bool = True       # a new stream's tab comes to the front
    search: str = ""
    group: int = 0                 # 0: the live track; i: the i-th newest earlier track
    copied: tuple[str, float] = ("", 0.0)
    hits: dict[str, int] = field(default_factory=dict)   # search matches per stream (last drawn)


def search_lines(text: str, query: str, limit: int = MAX_SEARCH_HITS) -> list[tuple[int, str]]:
    """(1-based line number, line) of the lines containing every word of `query`."""
    words = query.lower().split()
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        low = line.lower()
        if all(w in low for w in words):
            out.append((n, line))
            if len(out) >= limit:
                break
    return out


def draw(state: MMAState, view: StreamsView) -> None:
    groups = state.stream_groups
    if groups:
        names = [f"{state.stream_group_label or 'current track'} (live)"] + [g.label for g in reversed(groups)]
        view.group = min(view.group, len(names) - 1)
        imgui.align_text_to_frame_padding()
        imgui.text("Track")
        imgui.same_line()
        imgui.set_next_item_width(min(260.0, imgui.get_content_region_avail().x * 0.4))
        if imgui.begin_combo("##stream_track", names[view.group]):
            for i, name in enumerate(names):
                if imgui.selectable(name, i == view.group)[0]:
                    view.group = i
            imgui.end_combo()
        imgui.same_line()
    imgui.set_next_item_width(min(260.0, imgui.get_content_region_avail().x * 0.5))
    _, view.search = imgui.input_text_with_hint("##stream_search", "search this stream", view.search)
    if view.group == 0:
        _live(state.mma_streams, view)
    else:
        g = groups[len(groups) - view.group]
        _archived(g.label, g.texts, g.status, view)


def _live(store: StreamStore, view: StreamsView) -> None:
    ids = store.ordered_ids()
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
            imgui.set_tooltip(f"{sid}: {store.status.get(sid, 'streaming')}, {store.length(sid)} chars")
        if selected:
            _stream(store[sid], store.status.get(sid, "streaming"), sid, view, store.generation.get(sid, 0),
                    store.version.get(sid, 0), store.truncated(sid))
            imgui.end_tab_item()
    imgui.end_tab_bar()


def _archived(label: str, texts: dict[str, str], status: dict[str, str], view: StreamsView) -> None:
    if not imgui.begin_tab_bar(f"##old_streams/{label}", imgui.TabBarFlags_.fitting_policy_scroll):
        return
    for sid in sorted(texts, key=stream_sort_key):
        selected, _ = imgui.begin_tab_item(sid)
        if selected:
            _stream(texts[sid], status.get(sid) or "ended", f"{label}/{sid}", view, 0, 0, False)
            imgui.end_tab_item()
    imgui.end_tab_bar()


def _stream(text: str, status: str, sid: str, view: StreamsView, generation: int, version: int,
            truncated: bool) -> None:
    imgui.text_colored(theme.status_color(STATUS_AS_TICKET.get(status, status)), status)
    imgui.same_line()
    imgui.text_disabled(f"{len(text)} chars" + (" (oldest output truncated)" if truncated else ""))
    imgui.same_line()
    copied = view.copied[0] == sid and time.monotonic() - view.copied[1] < COPIED_FEEDBACK_S
    if imgui.small_button(f"{'Copied' if copied else 'Copy'}##{sid}"):
        imgui.set_clipboard_text(text)
        view.copied = (sid, time.monotonic())
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
    if view.search.strip():
        hits = search_lines(text, view.search)
        view.hits[sid] = len(hits)
        imgui.text_colored(theme.HINT_TEXT, f"{len(hits)}{'+' if len(hits) >= MAX_SEARCH_HITS else ''} "
                           f"line(s) match {view.search.strip()!r}")
        clipper = imgui.ListClipper()
        clipper.begin(len(hits))
        while clipper.step():
            for i in range(clipper.display_start, clipper.display_end):
                n, line = hits[i]
                imgui.text_disabled(f"{n:>5}")
                imgui.same_line()
                imgui.text_unformatted(line)
        clipper.end()
    elif can_md and view.markdown[sid]:
        imgui_md.render_unindented(text)
    else:
        cache = view.caches.setdefault(sid, LineCache())
        char_w = max(1.0, imgui.calc_text_size("abcdefghijklmnopqrstuvwxyz").x / 26.0)
        cols = max(20, int(imgui.get_content_region_avail().x / char_w * 0.92))
        update_line_cache(cache, text, generation, cols)
        clipper = imgui.ListClipper()
        clipper.begin(len(cache.lines))
        while clipper.step():
            for i in range(clipper.display_start, clipper.display_end):
                imgui.text_unformatted(cache.lines[i])
        clipper.end()
    if view.follow[sid] and view.seen_version.get(sid) != version and not view.search.strip():
        imgui.set_scroll_here_y(1.0)
    view.seen_version[sid] = version
    imgui.end_child()
