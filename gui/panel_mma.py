"""The MMA windows: dashboard, ticket DAG, tier streams, usage & cost.

Render functions only read `app.mma` (an `MMAState`) and call `App` methods;
all logic is in those, so a test reaches it without a window.  Widget labels
are stable for the Test Engine (see docs/guide_gui.md):

  MMA Dashboard:  "##epic", "Plan Epic", "Auto-approve", "Auto-queue",
                  "Accept##<track_id>", "Reject##<track_id>", "Pause", "Resume", "Abort",
                  "Refresh##saved", "saved_tracks/Resume##<track_id>",
                  "##step-<ticket_id>", "Run##<ticket_id>",
                  "Tier 1##model", "Tier 2##model", "Tier 3 (escalation)##model", "Tier 4##model",
                  "Apply models", "Save project##mma"
  Tier Streams:   one tab per stream id ("Tier 1", "Tier 2 (Tech Lead)", "Tier 3 (Worker): T1", ...),
                  "Copy##<stream_id>", "Markdown##<stream_id>", "Follow##<stream_id>"
  Usage & Cost:   "##in-<model>", "##out-<model>", "##new_price_model", "Add price", "Save prices"
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from imgui_bundle import imgui, imgui_md, imgui_node_editor as ed, implot

from gui import theme

log = logging.getLogger(__name__)

TIERS = ("Tier 1", "Tier 2", "Tier 3", "Tier 4")
MARKDOWN_LIMIT = 64_000          # final texts up to this size may render as markdown
NODE_W, NODE_H, NODE_GAP_X, NODE_GAP_Y = 150.0, 80.0, 50.0, 24.0
NODE_DESC_CHARS = 20


# ======================================================================== dashboard
def render(app) -> None:
    _status_row(app)
    _tickets(app)                    # once a track has tickets they matter most: on top
    _epic(app)
    _tracks(app)
    _saved_tracks(app)
    _tier_models(app)


def _epic(app) -> None:
    mma = app.mma
    if not imgui.collapsing_header("Epic", imgui.TreeNodeFlags_.default_open):
        return
    lines = 1.5 if mma.active_tickets else 3       # room for the ticket table once a track runs
    h = imgui.get_text_line_height() * lines + 8
    _, app.mma_epic_input = imgui.input_text_multiline("##epic", app.mma_epic_input, imgui.ImVec2(-1, h))
    if imgui.is_item_hovered() and not app.mma_epic_input:
        imgui.set_tooltip("Describe what you want built; one line per feature gives one track each.")
    if imgui.button("Plan Epic"):
        app.ui(app.plan_epic)
    imgui.same_line()
    changed, value = imgui.checkbox("Auto-approve", mma.auto_approve)
    if changed:
        app.set_auto_approve(value)
    if imgui.is_item_hovered():
        imgui.set_tooltip("Approve every spawn, step and tool request as-is (no edits).")
    imgui.same_line()
    changed, value = imgui.checkbox("Auto-queue", app.auto_queue)
    if changed:
        app.set_auto_queue(value)
    if imgui.is_item_hovered():
        imgui.set_tooltip("Start every ready ticket by itself (off: press Run per ticket).\n"
                          "Applies to the next accepted track.")


def _status_row(app) -> None:
    mma = app.mma
    imgui.text("Status:")
    imgui.same_line()
    imgui.text_colored(theme.status_color(mma.mma_status), mma.mma_status)
    if mma.active_tier:
        imgui.same_line()
        imgui.text_disabled(f"({mma.active_tier})")
    imgui.same_line()
    imgui.begin_disabled(not app.engine_running)
    if app.engine_paused:
        if imgui.button("Resume"):
            app.ui(app.resume)
    elif imgui.button("Pause"):
        app.ui(app.pause)
    imgui.same_line()
    imgui.push_style_color(imgui.Col_.button, imgui.ImVec4(0.55, 0.16, 0.14, 1.0))
    if imgui.button("Abort"):
        app.ui(app.abort)
    imgui.pop_style_color()
    imgui.end_disabled()
    if app.engine_paused:
        imgui.same_line()
        imgui.text_colored(theme.RUN_STATUS_COLORS["planning"], "paused: no new tickets start")
    if mma.active_track:
        imgui.text_disabled(f"Track: {mma.active_track.get('title', mma.active_track.get('id', ''))}")


def _tracks(app) -> None:
    mma = app.mma
    if not mma.tracks:
        return
    if not imgui.collapsing_header(f"Proposed tracks ({len(mma.tracks)})###tracks_header",
                                   imgui.TreeNodeFlags_.default_open):
        return
    flags = imgui.TableFlags_.borders_inner_h | imgui.TableFlags_.row_bg | imgui.TableFlags_.sizing_stretch_prop
    if not imgui.begin_table("tracks", 2, flags):
        return
    imgui.table_setup_column("Track", imgui.TableColumnFlags_.width_stretch)
    imgui.table_setup_column("Action", imgui.TableColumnFlags_.width_fixed)
    for track in list(mma.tracks):
        tid = str(track.get("id", ""))
        imgui.table_next_row()
        imgui.table_next_column()
        imgui.text(str(track.get("title", tid)))
        accepted = tid in mma.accepted_track_ids
        if accepted:                     # its description is on hover: the tickets need the room
            if imgui.is_item_hovered():
                imgui.set_tooltip(str(track.get("description", "")))
        else:
            imgui.push_text_wrap_pos(0.0)
            imgui.text_disabled(str(track.get("description", "")))
            imgui.pop_text_wrap_pos()
        imgui.table_next_column()
        if accepted:
            imgui.text_colored(theme.STATUS_COLORS["completed"], "accepted")
            continue
        if imgui.button(f"Accept##{tid}"):
            app.ui(app.accept_track, tid)
        imgui.same_line()
        if imgui.button(f"Reject##{tid}"):
            app.ui(app.reject_track, tid)
    imgui.end_table()


def saved_track_rows(app) -> list[dict]:
    """The Saved tracks rows; the running track shows its live progress, not the file's."""
    mma, active = app.mma, app.active_track_id
    rows = []
    for t in app.saved_tracks:
        if t["id"] == active and mma.active_tickets and mma.mma_status in ("running", "planning"):
            t = {**t, "status": "in_progress", "live": True,
                 "tickets_done": sum(1 for x in mma.active_tickets if x.get("status") == "completed"),
                 "tickets_total": len(mma.active_tickets)}
        rows.append(t)
    return rows


def _saved_tracks(app) -> None:
    """conductor/tracks/* of the project (App.saved_tracks), with Resume for unfinished ones."""
    rows = saved_track_rows(app)
    if not imgui.collapsing_header(f"Saved tracks ({len(rows)})###saved_header", imgui.TreeNodeFlags_.default_open):
        return
    if imgui.small_button("Refresh##saved"):
        app.refresh_saved_tracks()
    imgui.same_line()
    imgui.text_disabled("conductor/tracks/ of this project")
    if not rows:
        imgui.text_disabled("No saved tracks yet: an accepted track is saved as it runs.")
        return
    flags = imgui.TableFlags_.borders_inner_h | imgui.TableFlags_.row_bg | imgui.TableFlags_.sizing_stretch_prop
    if not imgui.begin_table("saved_tracks", 4, flags):
        return
    imgui.table_setup_column("Track", imgui.TableColumnFlags_.width_stretch)
    imgui.table_setup_column("Status", imgui.TableColumnFlags_.width_fixed)
    imgui.table_setup_column("Done", imgui.TableColumnFlags_.width_fixed, 70.0)
    imgui.table_setup_column("Action", imgui.TableColumnFlags_.width_fixed)
    imgui.table_headers_row()
    busy = app.mma.pipeline_active
    for t in rows:
        tid = t["id"]
        imgui.table_next_row()
        imgui.table_next_column()
        imgui.text(str(t["title"] or tid))
        if imgui.is_item_hovered():
            imgui.set_tooltip(f"{tid}\nupdated {t['updated_at'] or '-'}")
        if t["title"] and t["title"] != tid:
            imgui.text_disabled(tid)
        imgui.table_next_column()
        status = str(t["status"])
        if status == "in_progress" and not t.get("live"):     # saved mid-run by a session that ended
            imgui.text_colored(theme.RUN_STATUS_COLORS["aborted"], "interrupted")
            if imgui.is_item_hovered():
                imgui.set_tooltip("state.json says in_progress, but nothing runs it now: the session that "
                                  "ran it ended mid-track. Resume re-runs its unfinished tickets.")
        else:
            imgui.text_colored(theme.status_color(status), status)
        imgui.table_next_column()
        total, done = int(t["tickets_total"]), int(t["tickets_done"])
        imgui.progress_bar(done / total if total else 0.0, imgui.ImVec2(-1, 0), f"{done}/{total}")
        imgui.table_next_column()
        if t["resumable"]:
            imgui.begin_disabled(busy)
            if imgui.button(f"Resume##{tid}"):
                app.ui(app.resume_track, tid)
            imgui.end_disabled()
            if imgui.is_item_hovered(imgui.HoveredFlags_.allow_when_disabled):
                imgui.set_tooltip("Wait for the running track to end (or Abort it)" if busy else
                                  "Run the tickets that are not completed; completed ones are not re-run")
        elif t["status"] == "completed":
            imgui.text_disabled("done")
        else:
            imgui.text_disabled("no state")
            if imgui.is_item_hovered():
                imgui.set_tooltip("No state.json: this track was never run here, so there is nothing to resume")
    imgui.end_table()


def _tickets(app) -> None:
    mma = app.mma
    tickets = mma.active_tickets
    if not tickets:
        return
    done = sum(1 for t in tickets if t.get("status") == "completed")
    if not imgui.collapsing_header(f"Tickets ({done}/{len(tickets)} done)###tickets_header",
                                   imgui.TreeNodeFlags_.default_open):
        return
    flags = (imgui.TableFlags_.borders | imgui.TableFlags_.row_bg | imgui.TableFlags_.resizable
             | imgui.TableFlags_.sizing_fixed_fit | imgui.TableFlags_.scroll_x)
    rows_h = (len(tickets) + 1) * (imgui.get_frame_height() + 4) + 8
    if not imgui.begin_table("tickets", 10, flags, imgui.ImVec2(0, min(rows_h, 320))):
        return
    # Resizable tables keep a fixed column's first width: size Status and Time for their
    # widest values up front, not for the "todo" / "-" they start with.
    pad = imgui.get_style().cell_padding.x * 2
    widths = {"Status": imgui.calc_text_size("spawn approval").x + pad,
              "Time": imgui.calc_text_size("99.9 s ...").x + pad}
    for name in ("ID", "Status", "Time", "Depends on", "Model", "Retries", "Tokens in/out", "Step", "Run"):
        imgui.table_setup_column(name, imgui.TableColumnFlags_.width_fixed, widths.get(name, 0.0))
    imgui.table_setup_column("Blocked reason", imgui.TableColumnFlags_.width_stretch)
    imgui.table_setup_scroll_freeze(1, 1)
    imgui.table_headers_row()
    critical = set(mma.critical_path)
    engine = app.active_engine
    waiting_for = {a.ticket_id: a.kind for a in mma.pending_approvals.values()}
    now = time.time()
    for t in tickets:
        tid = str(t.get("id", ""))
        status = str(t.get("status", ""))
        imgui.table_next_row()
        imgui.table_next_column()
        imgui.text(tid + (" *" if tid in critical else ""))
        if imgui.is_item_hovered():
            imgui.set_tooltip(str(t.get("description", "")) + ("\n(on the critical path)" if tid in critical else ""))
        imgui.table_next_column()
        waiting = waiting_for.get(tid)
        if waiting:                      # in progress, but held until someone answers
            imgui.text_colored(theme.RUN_STATUS_COLORS["planning"], f"{waiting} approval")
            if imgui.is_item_hovered():
                imgui.set_tooltip(f"{status}: waiting for a {waiting} approval (Approvals window)")
        else:
            imgui.text_colored(theme.status_color(status), status)
        imgui.table_next_column()
        imgui.text(ticket_duration(t, now))
        if imgui.is_item_hovered() and t.get("started_at"):
            imgui.set_tooltip(ticket_times(t))
        imgui.table_next_column()
        imgui.text(", ".join(t.get("depends_on") or []) or "-")
        imgui.table_next_column()
        imgui.text(str(t.get("model") or t.get("assigned_to") or ""))
        imgui.table_next_column()
        imgui.text(str(t.get("retry_count", 0)))
        imgui.table_next_column()
        usage = t.get("usage") or {}
        imgui.text(f"{usage.get('input', 0)} / {usage.get('output', 0)}")
        imgui.table_next_column()
        imgui.begin_disabled(engine is None or status != "todo")
        changed, value = imgui.checkbox(f"##step-{tid}", app.step_mode_of(t))
        if changed:
            app.ui(app.set_step_mode, tid, value)
        imgui.end_disabled()
        if imgui.is_item_hovered(imgui.HoveredFlags_.allow_when_disabled):
            imgui.set_tooltip("Step mode: ask for approval before this ticket starts")
        imgui.table_next_column()
        if engine is not None and not engine.execution.auto_queue and status == "todo":
            if imgui.small_button(f"Run##{tid}"):
                app.ui(app.queue_ticket, tid)
        else:
            imgui.text_disabled("auto" if status == "todo" else "-")
        imgui.table_next_column()
        reason = str(t.get("blocked_reason") or "")
        if reason:
            imgui.text_colored(theme.STATUS_COLORS["blocked"], reason)
            if t.get("diagnosis") and imgui.is_item_hovered():
                imgui.set_tooltip("Tier 4: " + str(t["diagnosis"]))
    imgui.end_table()
    if critical:
        imgui.text_disabled("* on the critical path: " + " -> ".join(mma.critical_path))


def ticket_duration(ticket: dict, now: float) -> str:
    """How long the ticket's last attempt took ("1.4 s"), or has been running ("3.2 s ..."),
    from its `started_at` / `finished_at` (epoch seconds); "-" before it started."""
    started, finished = ticket.get("started_at"), ticket.get("finished_at")
    if not isinstance(started, (int, float)):
        return "-"
    if isinstance(finished, (int, float)):
        return _seconds(finished - started)
    return _seconds(now - started) + " ..." if ticket.get("status") == "in_progress" else "-"


def _seconds(value: float) -> str:
    value = max(0.0, value)
    return f"{value:.1f} s" if value < 60 else f"{int(value // 60)} m {int(value % 60):02d} s"


def ticket_times(ticket: dict) -> str:
    def clock(ts) -> str:
        if not isinstance(ts, (int, float)):
            return "-"
        return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"
    return f"started {clock(ticket.get('started_at'))}\nfinished {clock(ticket.get('finished_at'))}"


def _tier_models(app) -> None:
    if not imgui.collapsing_header("Tier models"):
        return
    imgui.push_item_width(-160)
    _, app.tier1_model = imgui.input_text("Tier 1##model", app.tier1_model)
    _, app.tier2_model = imgui.input_text("Tier 2##model", app.tier2_model)
    _, app.tier3_models = imgui.input_text("Tier 3 (escalation)##model", app.tier3_models)
    if imgui.is_item_hovered():
        imgui.set_tooltip("Comma-separated: the first runs a ticket, the next ones take retries.")
    _, app.tier4_model = imgui.input_text("Tier 4##model", app.tier4_model)
    imgui.pop_item_width()
    if imgui.button("Apply models"):
        app.ui(app.apply_tier_models)
    imgui.same_line()
    if imgui.button("Save project##mma"):
        app.ui(app.save_project)
    imgui.same_line()
    imgui.text_disabled("(applies to the next accepted track)")


# ======================================================================== ticket DAG
def dag_levels(tickets: list[dict]) -> dict[str, int]:
    """Topological level per ticket: 0 for roots, else 1 + the deepest dependency."""
    by_id = {str(t.get("id")): t for t in tickets}
    levels: dict[str, int] = {}

    def level(tid: str, stack: tuple = ()) -> int:
        if tid in levels:
            return levels[tid]
        if tid in stack:                          # a cycle can't come from the engine; don't recurse forever
            log.error("dependency cycle through %s", tid)
            return 0
        deps = [d for d in by_id[tid].get("depends_on") or [] if d in by_id]
        levels[tid] = 0 if not deps else 1 + max(level(d, stack + (tid,)) for d in deps)
        return levels[tid]
    for tid in by_id:
        level(tid)
    return levels


def dag_positions(tickets: list[dict]) -> dict[str, tuple[float, float]]:
    """Canvas positions: one column per level, tickets stacked in list order."""
    levels = dag_levels(tickets)
    rows: dict[int, int] = {}
    out = {}
    for t in tickets:
        tid = str(t.get("id"))
        lv = levels[tid]
        row = rows.get(lv, 0)
        rows[lv] = row + 1
        out[tid] = (lv * (NODE_W + NODE_GAP_X), row * (NODE_H + NODE_GAP_Y))
    return out


def dag_links(tickets: list[dict], critical_path: list[str]) -> list[tuple[str, str, bool]]:
    """(from, to, on_critical_path) for every dependency edge."""
    ids = {str(t.get("id")) for t in tickets}
    crit = set(zip(critical_path, critical_path[1:]))
    out = []
    for t in tickets:
        tid = str(t.get("id"))
        for dep in t.get("depends_on") or []:
            if dep in ids:
                out.append((dep, tid, (dep, tid) in crit))
    return out


@dataclass
class _DagView:
    layout_key: tuple = ()
    frames_since_layout: int = 0


def destroy_node_editor(app) -> None:
    if app.node_editor_context is not None:
        ed.destroy_editor(app.node_editor_context)
        app.node_editor_context = None


def render_dag(app) -> None:
    mma = app.mma
    tickets = mma.active_tickets
    if not tickets:
        imgui.text_disabled("No tickets yet: accept a track and Tier 2 will draw its ticket DAG here.")
        return
    view = app.views.setdefault("dag", _DagView())
    if app.node_editor_context is None:
        config = ed.Config()
        config.settings_file = ""                 # no NodeEditor.json in the user's folder
        app.node_editor_context = ed.create_editor(config)
    ids = tuple(str(t.get("id")) for t in tickets)
    key = ((mma.active_track or {}).get("id"), ids)
    relayout = key != view.layout_key
    if relayout:
        view.layout_key, view.frames_since_layout = key, 0
    positions = dag_positions(tickets) if relayout else {}
    index = {tid: i for i, tid in enumerate(ids)}
    critical = set(mma.critical_path)
    imgui.text_disabled("colour = status · orange = critical path · hover for details · F fits")
    ed.set_current_editor(app.node_editor_context)
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
    for k, (src, dst, on_critical) in enumerate(dag_links(tickets, mma.critical_path)):
        color = theme.CRITICAL_LINK if on_critical else theme.NORMAL_LINK
        ed.link(ed.LinkId(30_000 + k), ed.PinId(20_000 + index[src]), ed.PinId(10_000 + index[dst]),
                imgui.ImVec4(*color), 3.0 if on_critical else 1.5)
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
    if view.frames_since_layout == 3:             # nodes are measured over two frames
        ed.navigate_to_content(0.0)


# ======================================================================== tier streams
@dataclass
class _LineCache:
    """Visual lines of one stream, extended on appends, rebuilt on replace/resize."""
    generation: int = -1
    length: int = 0
    wrap_cols: int = 0
    lines: list[str] = field(default_factory=list)
    last_start: int = 0            # index in `lines` where the last logical line begins
    last_logical: str = ""


def wrap_line(line: str, cols: int) -> list[str]:
    """Break one logical line into pieces of at most `cols` characters, at spaces when possible."""
    if len(line) <= cols:
        return [line]
    out = []
    while len(line) > cols:
        cut = line.rfind(" ", cols // 2, cols + 1)
        cut = cols if cut <= 0 else cut + 1
        out.append(line[:cut])
        line = line[cut:]
    out.append(line)
    return out


def update_line_cache(cache: _LineCache, text: str, generation: int, wrap_cols: int) -> None:
    """Bring `cache` up to date with `text`: O(new text) on a pure append."""
    if (generation != cache.generation or wrap_cols != cache.wrap_cols or len(text) < cache.length):
        cache.generation, cache.wrap_cols = generation, wrap_cols
        cache.lines, cache.last_start, cache.last_logical, cache.length = [], 0, "", 0
        tail = text
    elif len(text) == cache.length:
        return
    else:
        tail = cache.last_logical + text[cache.length:]
        del cache.lines[cache.last_start:]
    parts = tail.split("\n")
    for part in parts[:-1]:
        cache.lines.extend(wrap_line(part, wrap_cols))
    cache.last_start = len(cache.lines)
    cache.last_logical = parts[-1]
    cache.lines.extend(wrap_line(parts[-1], wrap_cols))
    cache.length = len(text)


@dataclass
class _StreamView:
    caches: dict[str, _LineCache] = field(default_factory=dict)
    markdown: dict[str, bool] = field(default_factory=dict)
    follow: dict[str, bool] = field(default_factory=dict)
    seen_version: dict[str, int] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    auto_select: bool = True       # a new stream's tab comes to the front


def render_streams(app) -> None:
    store = app.mma.mma_streams
    ids = store.ordered_ids()
    if not ids:
        imgui.text_disabled("No model output yet. Type an epic in the MMA Dashboard and press Plan Epic.")
        return
    view = app.views.setdefault("streams", _StreamView())
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
            _render_stream(app, view, sid)
            imgui.end_tab_item()
    imgui.end_tab_bar()


def _render_stream(app, view: _StreamView, sid: str) -> None:
    store = app.mma.mma_streams
    status = store.status.get(sid, "streaming")
    text = store[sid]
    imgui.text_colored(theme.status_color({"done": "completed", "streaming": "in_progress"}.get(status, status)),
                       status)
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
        cache = view.caches.setdefault(sid, _LineCache())
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


# ======================================================================== usage & cost
def tier_cost(usage: dict, prices: dict) -> float | None:
    """USD for one tier bucket {"input","output","model"} with `prices` {model: ModelPrice}."""
    price = prices.get(str(usage.get("model") or ""))
    if price is None:
        return None
    return price.cost(int(usage.get("input", 0)), int(usage.get("output", 0)))


@dataclass
class _UsageView:
    new_model: str = ""


def render_usage(app) -> None:
    mma = app.mma
    prices = app.project.prices
    usage = {tier: dict(mma.mma_tier_usage.get(tier) or {}) for tier in TIERS}
    flags = imgui.TableFlags_.borders | imgui.TableFlags_.row_bg | imgui.TableFlags_.sizing_fixed_fit
    total_in = total_out = 0
    total_cost = 0.0
    unpriced = []
    if imgui.begin_table("tier_usage", 5, flags):
        for name in ("Tier", "Model", "Input", "Output", "Est. USD"):
            imgui.table_setup_column(name)
        imgui.table_headers_row()
        for tier in TIERS:
            u = usage[tier]
            cost = tier_cost(u, prices)
            total_in += int(u.get("input", 0))
            total_out += int(u.get("output", 0))
            imgui.table_next_row()
            for value in (tier, str(u.get("model", "")), str(u.get("input", 0)), str(u.get("output", 0))):
                imgui.table_next_column()
                imgui.text(value)
            imgui.table_next_column()
            if cost is None:
                imgui.text_disabled("no price")
                if u.get("input") or u.get("output"):
                    unpriced.append(str(u.get("model")))
            else:
                total_cost += cost
                imgui.text(f"{cost:.4f}")
        imgui.table_next_row()
        for value in ("Total", "", str(total_in), str(total_out), f"{total_cost:.4f}"):
            imgui.table_next_column()
            imgui.text(value)
        imgui.end_table()
    if unpriced:
        imgui.text_colored(theme.HINT_TEXT, "No price for: " + ", ".join(sorted(set(unpriced)))
                           + " (add it below)")
    values = np.array([float(usage[t].get("input", 0)) for t in TIERS]
                      + [float(usage[t].get("output", 0)) for t in TIERS], dtype=np.float64)
    if implot.begin_plot("Tokens per tier", imgui.ImVec2(-1, 180)):
        implot.setup_axes("", "tokens", implot.AxisFlags_.auto_fit, implot.AxisFlags_.auto_fit)
        implot.setup_axis_ticks(implot.ImAxis_.x1, [0.0, 1.0, 2.0, 3.0], list(TIERS))
        implot.setup_legend(implot.Location_.north, implot.LegendFlags_.horizontal | implot.LegendFlags_.outside)
        implot.plot_bar_groups(["input", "output"], values, 0.67)
        implot.end_plot()
    _price_table(app)


def _price_table(app) -> None:
    prices = app.project.prices
    view = app.views.setdefault("usage", _UsageView())
    if not imgui.collapsing_header("Prices (USD per 1M tokens)"):
        return
    flags = imgui.TableFlags_.borders | imgui.TableFlags_.row_bg | imgui.TableFlags_.sizing_stretch_prop
    if imgui.begin_table("prices", 3, flags):
        imgui.table_setup_column("Model")
        imgui.table_setup_column("Input")
        imgui.table_setup_column("Output")
        imgui.table_headers_row()
        for model in sorted(prices):
            price = prices[model]
            imgui.table_next_row()
            imgui.table_next_column()
            imgui.text(model)
            imgui.table_next_column()
            imgui.set_next_item_width(-1)
            changed, v = imgui.input_float(f"##in-{model}", price.input, 0.0, 0.0, "%.2f")
            if changed:
                price.input = max(0.0, v)
            imgui.table_next_column()
            imgui.set_next_item_width(-1)
            changed, v = imgui.input_float(f"##out-{model}", price.output, 0.0, 0.0, "%.2f")
            if changed:
                price.output = max(0.0, v)
        imgui.end_table()
    imgui.set_next_item_width(220)
    _, view.new_model = imgui.input_text_with_hint("##new_price_model", "model name", view.new_model)
    imgui.same_line()
    if imgui.button("Add price") and view.new_model.strip():
        app.ui(add_price, app, view.new_model.strip())
        view.new_model = ""
    imgui.same_line()
    if imgui.button("Save prices"):
        app.ui(app.save_project)


def add_price(app, model: str, input_usd: float = 0.0, output_usd: float = 0.0) -> None:
    from project import ModelPrice
    if model in app.project.prices:
        raise ValueError(f"{model} already has a price; edit it in the table")
    app.project.prices[model] = ModelPrice(float(input_usd), float(output_usd))


__all__ = ["render", "render_dag", "render_streams", "render_usage", "dag_levels",
                      "dag_positions", "dag_links", "update_line_cache", "wrap_line", "tier_cost"]
