"""The Ticket DAG window: the active track's tickets as an imgui-node-editor graph.

`draw(state, view)`: `state` is the `MMAState` (tickets, critical path, track);
the window calls no command.  `view` (`DagView`, created by `gui/layout.py`
with the window) holds the node-editor context and when the nodes were last
laid out; `destroy_editor(view)` frees the context before the window closes.
The layout (`dag_levels` / `dag_positions` / `dag_links`) is in `gui/mma_display.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgui_bundle import imgui
from imgui_bundle import imgui_node_editor as ed

from gui import theme
from gui.mma_display import dag_links, dag_positions
from gui.mma_state import MMAState

NODE_DESC_CHARS = 20
FIT_AFTER_FRAMES = 3               # nodes are measured over two frames: fit the view after that


@dataclass
class DagView:
    editor: ed.EditorContext | None = None    # created on first draw, with no settings file
    layout_key: tuple[Any, ...] = ()          # (track id, ticket ids) the nodes were placed for
    frames_since_layout: int = 0


def destroy_editor(view: DagView) -> None:
    if view.editor is not None:
        ed.destroy_editor(view.editor)
        view.editor = None


def draw(state: MMAState, view: DagView) -> None:
    tickets = state.active_tickets
    if not tickets:
        imgui.text_disabled("No tickets yet: accept a track and Tier 2 will draw its ticket DAG here.")
        return
    if view.editor is None:
        config = ed.Config()
        config.settings_file = ""                 # no NodeEditor.json in the user's folder
        view.editor = ed.create_editor(config)
    ids = tuple(str(t.get("id")) for t in tickets)
    key = ((state.active_track or {}).get("id"), ids)
    relayout = key != view.layout_key
    if relayout:
        view.layout_key, view.frames_since_layout = key, 0
    positions = dag_positions(tickets) if relayout else {}
    index = {tid: i for i, tid in enumerate(ids)}
    critical = set(state.critical_path)
    imgui.text_disabled("colour = status · orange = critical path · hover for details · F fits")
    ed.set_current_editor(view.editor)
    ed.begin("ticket_dag", imgui.ImVec2(0, 0))
    for t in tickets:
        tid = str(t.get("id"))
        i = index[tid]
        status = str(t.get("status", ""))
        color = theme.status_color(status)
        node_id = ed.NodeId(i + 1)
        if relayout:
            x, y = positions[tid]
            ed.set_node_position(node_id, imgui.ImVec2(x, y))
        ed.push_style_color(ed.StyleColor.node_border, imgui.ImVec4(*color))
        ed.push_style_color(ed.StyleColor.node_bg, imgui.ImVec4(color[0] * 0.22, color[1] * 0.22,
                                                                color[2] * 0.22, 0.95))
        ed.push_style_var(ed.StyleVar.node_border_width, 3.0 if tid in critical else 1.5)
        ed.begin_node(node_id)
        ed.begin_pin(ed.PinId(10_000 + i), ed.PinKind.input)
        imgui.text("o")
        ed.end_pin()
        imgui.same_line()
        imgui.text(tid)
        imgui.same_line()
        imgui.text_colored(imgui.ImVec4(*color), status)
        imgui.same_line()
        ed.begin_pin(ed.PinId(20_000 + i), ed.PinKind.output)
        imgui.text("o")
        ed.end_pin()
        desc = str(t.get("description", ""))
        imgui.text(desc[:NODE_DESC_CHARS] + ("..." if len(desc) > NODE_DESC_CHARS else ""))
        usage = t.get("usage") or {}
        imgui.text_disabled(f"tok {usage.get('input', 0)}/{usage.get('output', 0)}"
                            + (f" · retry {t.get('retry_count')}" if t.get("retry_count") else ""))
        ed.end_node()
        ed.pop_style_var(1)
        ed.pop_style_color(2)
    for k, (src, dst, on_critical) in enumerate(dag_links(tickets, state.critical_path)):
        link_color = theme.CRITICAL_LINK if on_critical else theme.NORMAL_LINK
        ed.link(ed.LinkId(30_000 + k), ed.PinId(20_000 + index[src]), ed.PinId(10_000 + index[dst]),
                imgui.ImVec4(*link_color), 3.0 if on_critical else 1.5)
    hovered = ed.get_hovered_node()
    if hovered and 0 < hovered.id() <= len(tickets):
        t = tickets[hovered.id() - 1]
        ed.suspend()
        imgui.set_tooltip(f"{t.get('id')} [{t.get('status')}] {t.get('model') or t.get('assigned_to') or ''}\n"
                          f"{t.get('description', '')}"
                          + (f"\nblocked: {t['blocked_reason']}" if t.get("blocked_reason") else "")
                          + ("\n(on the critical path)" if str(t.get("id")) in critical else ""))
        ed.resume()
    ed.end()
    view.frames_since_layout += 1
    if view.frames_since_layout == FIT_AFTER_FRAMES:
        ed.navigate_to_content(0.0)
