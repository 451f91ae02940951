"""The MMA Dashboard window: run status and controls, tickets, epic, proposed and saved tracks, tier models.

`draw(state, actions)`: `state` is the `MMAState` the window shows; `actions`
(`DashboardActions`, satisfied by `gui_2.App`) is what it may read from the app
and call.  Computations live in `gui/mma_display.py`, the commands in
`gui/commands.py`.  Widget labels are stable for the Test Engine (see
docs/guide_gui.md):

  "##epic", "Plan Epic", "Auto-approve", "Auto-queue",
  "Accept##<track_id>", "Reject##<track_id>", "Pause", "Resume", "Abort",
  "Refresh##saved", "saved_tracks/Resume##<track_id>",
  "##step-<ticket_id>", "Run##<ticket_id>",
  "Tier 1##model", "Tier 2##model", "Tier 3 (escalation)##model", "Tier 4##model",
  "Apply models", "Save project##mma"
"""
from __future__ import annotations

import time
from typing import Protocol

from imgui_bundle import imgui

from gui import theme
from gui.actions import GuardedCalls
from gui.mma_display import saved_track_rows, ticket_duration, ticket_received, ticket_times
from gui.mma_state import MMAState


class DashboardActions(GuardedCalls, Protocol):
    """What the dashboard reads from the app besides `MMAState`, and the commands it calls."""
    # text boxes the window edits in place (the hook API sets the same fields)
    mma_epic_input: str
    tier1_model: str
    tier2_model: str
    tier3_models: str
    tier4_model: str

    @property
    def auto_queue(self) -> bool: ...
    @property
    def engine_running(self) -> bool: ...
    @property
    def can_abort(self) -> bool: ...
    @property
    def engine_paused(self) -> bool: ...
    @property
    def has_active_engine(self) -> bool: ...
    @property
    def manual_queue(self) -> bool: ...
    @property
    def active_track_id(self) -> str | None: ...
    @property
    def saved_tracks(self) -> list[dict]: ...
    def step_mode_of(self, ticket: dict) -> bool: ...

    def plan_epic(self) -> dict: ...
    def set_auto_approve(self, enabled: bool) -> None: ...
    def set_auto_queue(self, enabled: bool) -> None: ...
    def pause(self) -> dict: ...
    def resume(self) -> dict: ...
    def abort(self) -> dict: ...
    def accept_track(self, track_id: str | None = None) -> dict: ...
    def reject_track(self, track_id: str | None = None) -> dict: ...
    def refresh_saved_tracks(self) -> list[dict]: ...
    def resume_track(self, track_id: str | None = None) -> dict: ...
    def set_step_mode(self, ticket_id: str, enabled: bool) -> dict: ...
    def queue_ticket(self, ticket_id: str) -> dict: ...
    def apply_tier_models(self) -> dict: ...
    def save_project(self) -> dict: ...


def draw(state: MMAState, actions: DashboardActions) -> None:
    _status_row(state, actions)
    _tickets(state, actions)         # once a track has tickets they matter most: on top
    _epic(state, actions)
    _tracks(state, actions)
    _saved_tracks(state, actions)
    _tier_models(actions)


def _epic(mma: MMAState, actions: DashboardActions) -> None:
    if not imgui.collapsing_header("Epic", imgui.TreeNodeFlags_.default_open):
        return
    lines = 1.5 if mma.active_tickets else 3       # room for the ticket table once a track runs
    h = imgui.get_text_line_height() * lines + 8
    _, actions.mma_epic_input = imgui.input_text_multiline("##epic", actions.mma_epic_input, imgui.ImVec2(-1, h))
    if imgui.is_item_hovered() and not actions.mma_epic_input:
        imgui.set_tooltip("Describe what you want built; one line per feature gives one track each.")
    if imgui.button("Plan Epic"):
        actions.ui(actions.plan_epic)
    imgui.same_line()
    changed, value = imgui.checkbox("Auto-approve", mma.auto_approve)
    if changed:
        actions.set_auto_approve(value)
    if imgui.is_item_hovered():
        imgui.set_tooltip("Approve every spawn, step and tool request as-is (no edits).")
    imgui.same_line()
    changed, value = imgui.checkbox("Auto-queue", actions.auto_queue)
    if changed:
        actions.set_auto_queue(value)
    if imgui.is_item_hovered():
        imgui.set_tooltip("Start every ready ticket by itself (off: press Run per ticket).\n"
                          "Applies to the next accepted track.")


def _status_row(mma: MMAState, actions: DashboardActions) -> None:
    imgui.text("Status:")
    imgui.same_line()
    imgui.text_colored(theme.status_color(mma.mma_status), mma.mma_status)
    if mma.active_tier:
        imgui.same_line()
        imgui.text_disabled(f"({mma.active_tier})")
    imgui.same_line()
    imgui.begin_disabled(not actions.engine_running)
    if actions.engine_paused:
        if imgui.button("Resume"):
            actions.ui(actions.resume)
    elif imgui.button("Pause"):
        actions.ui(actions.pause)
    imgui.end_disabled()
    imgui.same_line()
    imgui.begin_disabled(not actions.can_abort)        # a running track, or a Tier 1/2 call
    imgui.push_style_color(imgui.Col_.button, imgui.ImVec4(0.55, 0.16, 0.14, 1.0))
    if imgui.button("Abort"):
        actions.ui(actions.abort)
    imgui.pop_style_color()
    imgui.end_disabled()
    if actions.engine_paused:
        imgui.same_line()
        imgui.text_colored(theme.RUN_STATUS_COLORS["planning"], "paused: no new tickets start")
    if mma.active_track:
        imgui.text_disabled(f"Track: {mma.active_track.get('title', mma.active_track.get('id', ''))}")


def _tracks(mma: MMAState, actions: DashboardActions) -> None:
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
            actions.ui(actions.accept_track, tid)
        imgui.same_line()
        if imgui.button(f"Reject##{tid}"):
            actions.ui(actions.reject_track, tid)
    imgui.end_table()


def _saved_tracks(mma: MMAState, actions: DashboardActions) -> None:
    """conductor/tracks/* of the project (App.saved_tracks), with Resume for unfinished ones."""
    rows = saved_track_rows(actions.saved_tracks, actions.active_track_id, mma)
    if not imgui.collapsing_header(f"Saved tracks ({len(rows)})###saved_header", imgui.TreeNodeFlags_.default_open):
        return
    if imgui.small_button("Refresh##saved"):
        actions.refresh_saved_tracks()
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
    busy = mma.pipeline_active
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
                actions.ui(actions.resume_track, tid)
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


def _tickets(mma: MMAState, actions: DashboardActions) -> None:
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
    has_engine, by_hand = actions.has_active_engine, actions.manual_queue
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
        if t.get("received") and imgui.is_item_hovered():
            imgui.set_tooltip(ticket_received(t))
        imgui.table_next_column()
        imgui.begin_disabled(not has_engine or status != "todo")
        changed, value = imgui.checkbox(f"##step-{tid}", actions.step_mode_of(t))
        if changed:
            actions.ui(actions.set_step_mode, tid, value)
        imgui.end_disabled()
        if imgui.is_item_hovered(imgui.HoveredFlags_.allow_when_disabled):
            imgui.set_tooltip("Step mode: ask for approval before this ticket starts")
        imgui.table_next_column()
        if by_hand and status == "todo":
            if imgui.small_button(f"Run##{tid}"):
                actions.ui(actions.queue_ticket, tid)
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


def _tier_models(actions: DashboardActions) -> None:
    if not imgui.collapsing_header("Tier models"):
        return
    imgui.push_item_width(-160)
    _, actions.tier1_model = imgui.input_text("Tier 1##model", actions.tier1_model)
    _, actions.tier2_model = imgui.input_text("Tier 2##model", actions.tier2_model)
    _, actions.tier3_models = imgui.input_text("Tier 3 (escalation)##model", actions.tier3_models)
    if imgui.is_item_hovered():
        imgui.set_tooltip("Comma-separated: the first runs a ticket, the next ones take retries.")
    _, actions.tier4_model = imgui.input_text("Tier 4##model", actions.tier4_model)
    imgui.pop_item_width()
    if imgui.button("Apply models"):
        actions.ui(actions.apply_tier_models)
    imgui.same_line()
    if imgui.button("Save project##mma"):
        actions.ui(actions.save_project)
    imgui.same_line()
    imgui.text_disabled("(applies to the next accepted track)")
