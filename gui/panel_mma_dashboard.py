"""The MMA Dashboard window: run status and controls, tickets, epic, proposed and saved tracks, tier models.

`draw(state, actions, view)`: `state` is the `MMAState` the window shows; `actions`
(`DashboardActions`, satisfied by `gui_2.App`) is what it may read from the app
and call; `view` (`DashboardView`) is what the window drew last frame (the ticket
table's description cells, for tests) and its dialogs' state.  Computations live
in `gui/mma_display.py`, the commands in `gui/commands.py`.

The ticket table fits its window: no horizontal scrollbar; ID, Run and Step come
first (Run is reachable whatever the width), the description takes the free width
(cut with "..." and complete on hover, the blocked reason under it), and below
`WIDE_TABLE_PX` the Model and Tokens columns fold into the description's tooltip.
Abort and Reject ask first.  Widget labels are stable for the Test Engine (see
docs/guide_gui.md):

  "##epic", "Plan Epic", "Auto-approve", "Auto-queue",
  "Accept##<track_id>", "Reject##<track_id>", "Pause", "Resume", "Abort",
  the dialogs' "//$FOCUSED/Abort track" and "//$FOCUSED/Reject track",
  "Refresh##saved", "saved_tracks/Resume##<track_id>",
  "##step-<ticket_id>", "Run##<ticket_id>",
  "Tier 1##model", "Tier 2##model", "Tier 3 (escalation)##model", "Tier 4##model",
  "Apply models", "Save project##mma"
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from imgui_bundle import imgui

from gui import theme, widgets
from gui.actions import GuardedCalls
from gui.mma_display import saved_track_rows, ticket_received, ticket_run_and_wait, ticket_times
from gui.mma_state import MMAState
from providers import catalog

WIDE_TABLE_PX = 900            # below this the Model and Tokens columns fold into the tooltip
DESCRIPTION_MIN_PX = 160
ABORT_POPUP = "Abort the running track?"
REJECT_POPUP = "Reject the proposed track?"


@dataclass
class DashboardView:
    """What the dashboard drew last frame (tests read it) and which track a dialog is about."""
    descriptions: dict[str, dict] = field(default_factory=dict)   # ticket id -> {text, shown, x0, x1, width}
    table_width: float = 0.0
    window_width: float = 0.0        # the window's width last frame (gui/layout_fit.py reads it)
    reject_track_id: str = ""


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
    def provider(self) -> str: ...
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


def draw(state: MMAState, actions: DashboardActions, view: DashboardView) -> None:
    view.window_width = imgui.get_window_width()
    _status_row(state, actions)
    _notes(state)
    _tickets(state, actions, view)   # once a track has tickets they matter most: on top
    _epic(state, actions)
    _tracks(state, actions, view)
    _saved_tracks(state, actions)
    _tier_models(actions)


def _notes(mma: MMAState) -> None:
    """What the engine said once about this run (`mma_log` events): the track branch, the QA gate,
    read-only tools outside a git repository."""
    notes = list(mma.logs)
    if not notes:
        return
    imgui.text_colored(theme.HINT_TEXT, notes[-1])       # one line: the layout below stays put
    if imgui.is_item_hovered():
        imgui.set_tooltip("\n".join(notes[-8:]))


def _epic(mma: MMAState, actions: DashboardActions) -> None:
    if not imgui.collapsing_header("Epic", imgui.TreeNodeFlags_.default_open):
        return
    lines = 1.5 if mma.active_tickets else 3       # room for the ticket table once a track runs
    h = imgui.get_text_line_height() * lines + 8
    _, actions.mma_epic_input = imgui.input_text_multiline("##epic", actions.mma_epic_input, imgui.ImVec2(-1, h),
                                                           imgui.InputTextFlags_.word_wrap)
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
    running = actions.engine_running
    imgui.begin_disabled(not running)
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
        widgets.ask(ABORT_POPUP)
    imgui.pop_style_color()
    imgui.end_disabled()
    if actions.engine_paused:              # only while running: a finished track is never "paused"
        imgui.same_line()
        imgui.text_colored(theme.RUN_STATUS_COLORS["planning"], "paused: no new tickets start")
    if widgets.dialog(ABORT_POPUP, "Abort cuts the Tier 1/2 call in flight, or stops every worker of the "
                      "running track between two stream chunks and cancels its open approvals.",
                      ("Abort track",), "Its tickets go back to todo; Resume under Saved tracks runs them "
                      "again later.", danger="Abort track") == "Abort track":
        actions.ui(actions.abort)
    if mma.active_track:
        imgui.text_disabled(f"Track: {mma.active_track.get('title', mma.active_track.get('id', ''))}")
    if mma.notice:
        imgui.push_text_wrap_pos(0.0)
        imgui.text_colored(theme.HINT_TEXT, mma.notice)
        imgui.pop_text_wrap_pos()


def _tracks(mma: MMAState, actions: DashboardActions, view: DashboardView) -> None:
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
            view.reject_track_id = tid
            widgets.ask(REJECT_POPUP)
    imgui.end_table()
    title = next((str(t.get("title", "")) for t in mma.tracks if str(t.get("id")) == view.reject_track_id), "")
    if widgets.dialog(REJECT_POPUP, f"Discard the proposed track \"{title}\"?", ("Reject track",),
                      "Plan Epic proposes tracks again.", danger="Reject track") == "Reject track":
        actions.ui(actions.reject_track, view.reject_track_id)


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


def _tickets(mma: MMAState, actions: DashboardActions, view: DashboardView) -> None:
    tickets = mma.active_tickets
    view.descriptions = {}
    if not tickets:
        return
    done = sum(1 for t in tickets if t.get("status") == "completed")
    if not imgui.collapsing_header(f"Tickets ({done}/{len(tickets)} done)###tickets_header",
                                   imgui.TreeNodeFlags_.default_open):
        return
    avail = imgui.get_content_region_avail().x
    wide = avail >= WIDE_TABLE_PX
    pad = imgui.get_style().cell_padding.x * 2

    def w(sample: str) -> float:
        return imgui.calc_text_size(sample).x + pad
    # Fixed columns of a non-resizable table fit their content each frame (width 0).
    columns: list[tuple[str, float]] = [
        ("ID", 0.0), ("Run", w("Run") + imgui.get_style().frame_padding.x * 2),
        ("Step", imgui.get_frame_height() + pad), ("Status", 0.0),
        ("Description", 0.0), ("Run / wait", 0.0), ("Try", 0.0)]
    if wide:
        columns += [("Model", 0.0), ("Tokens in/out", 0.0)]
    flags = (imgui.TableFlags_.borders | imgui.TableFlags_.row_bg | imgui.TableFlags_.sizing_fixed_fit
             | imgui.TableFlags_.no_host_extend_x)
    if not imgui.begin_table("tickets", len(columns), flags):
        return
    for name, width in columns:
        if name == "Description":
            imgui.table_setup_column(name, imgui.TableColumnFlags_.width_stretch)
        else:
            imgui.table_setup_column(name, imgui.TableColumnFlags_.width_fixed, width)
    imgui.table_headers_row()
    view.table_width = avail
    critical = set(mma.critical_path)
    has_engine, by_hand = actions.has_active_engine, actions.manual_queue
    waiting_for = {a.ticket_id: a.kind for a in mma.pending_approvals.values()}
    now = time.time()
    for t in tickets:
        tid = str(t.get("id", ""))
        status = str(t.get("status", ""))
        usage = t.get("usage") or {}
        model = str(t.get("model") or t.get("assigned_to") or "")
        tokens = f"{usage.get('input', 0)} / {usage.get('output', 0)}"
        imgui.table_next_row()
        imgui.table_next_column()                                  # ID
        imgui.text(tid + (" *" if tid in critical else ""))
        if imgui.is_item_hovered() and tid in critical:
            imgui.set_tooltip("on the critical path")
        imgui.table_next_column()                                  # Run
        if by_hand and status == "todo":
            if imgui.small_button(f"Run##{tid}"):
                actions.ui(actions.queue_ticket, tid)
        else:
            imgui.text_disabled("auto" if status == "todo" else "-")
        imgui.table_next_column()                                  # Step
        imgui.begin_disabled(not has_engine or status != "todo")
        changed, value = imgui.checkbox(f"##step-{tid}", actions.step_mode_of(t))
        if changed:
            actions.ui(actions.set_step_mode, tid, value)
        imgui.end_disabled()
        if imgui.is_item_hovered(imgui.HoveredFlags_.allow_when_disabled):
            imgui.set_tooltip("Step mode: ask for approval before this ticket starts")
        imgui.table_next_column()                                  # Status
        waiting = waiting_for.get(tid)
        if waiting:                      # in progress, but held until someone answers
            imgui.text_colored(theme.RUN_STATUS_COLORS["planning"], f"{waiting} approval")
            if imgui.is_item_hovered():
                imgui.set_tooltip(f"{status}: waiting for a {waiting} approval (Approvals window)")
        else:
            imgui.text_colored(theme.status_color(status), status)
        imgui.table_next_column()                                  # Description
        _description(t, tid, model, tokens, wide, view)
        imgui.table_next_column()                                  # Run / wait
        run, wait = ticket_run_and_wait(t, mma.approval_waits.get(tid), now)
        imgui.text(run + (f" / {wait}" if wait else ""))
        if imgui.is_item_hovered() and t.get("started_at"):
            imgui.set_tooltip(ticket_times(t) + f"\nrunning {run}" + (f", waiting for approval {wait}" if wait else ""))
        imgui.table_next_column()                                  # Try
        imgui.text(str(int(t.get("retry_count", 0)) + 1))
        if imgui.is_item_hovered():
            imgui.set_tooltip(f"attempt {int(t.get('retry_count', 0)) + 1} (retries: {t.get('retry_count', 0)})")
        if wide:
            imgui.table_next_column()
            imgui.text(model)
            imgui.table_next_column()
            imgui.text(tokens)
            if t.get("received") and imgui.is_item_hovered():
                imgui.set_tooltip(ticket_received(t))
    imgui.end_table()
    if critical:
        imgui.text_disabled("* on the critical path: " + " -> ".join(mma.critical_path))


def _description(t: dict, tid: str, model: str, tokens: str, wide: bool, view: DashboardView) -> None:
    """The ticket's description in the free width (complete on hover), its blocked reason below."""
    text = " ".join(str(t.get("description", "")).split())
    width = max(imgui.get_content_region_avail().x, 1.0)
    shown = widgets.fit_text(text, width)
    imgui.text(shown)
    lo, hi = imgui.get_item_rect_min(), imgui.get_item_rect_max()
    view.descriptions[tid] = {"text": text, "shown": shown, "x0": lo.x, "x1": hi.x, "width": width,
                              "window_x1": imgui.get_window_pos().x + imgui.get_window_size().x}
    if imgui.is_item_hovered():
        extra = "" if wide else f"\n\nmodel {model} · tokens in/out {tokens}"
        imgui.set_tooltip(text + extra)
    reason = str(t.get("blocked_reason") or "")
    if reason:
        imgui.push_text_wrap_pos(0.0)
        imgui.text_colored(theme.STATUS_COLORS["blocked"], reason)
        imgui.pop_text_wrap_pos()
        if t.get("diagnosis") and imgui.is_item_hovered():
            imgui.set_tooltip("Tier 4: " + str(t["diagnosis"]))


def _tier_models(actions: DashboardActions) -> None:
    if not imgui.collapsing_header("Tier models"):
        return
    imgui.push_item_width(-190)
    _, actions.tier1_model = imgui.input_text("Tier 1##model", actions.tier1_model)
    _unknown_models(actions.tier1_model, actions.provider)
    _, actions.tier2_model = imgui.input_text("Tier 2##model", actions.tier2_model)
    _unknown_models(actions.tier2_model, actions.provider)
    _, actions.tier3_models = imgui.input_text("Tier 3 (escalation)##model", actions.tier3_models)
    if imgui.is_item_hovered():
        imgui.set_tooltip("Comma-separated: the first runs a ticket, the next ones take retries.")
    _unknown_models(actions.tier3_models, actions.provider)
    _, actions.tier4_model = imgui.input_text("Tier 4##model", actions.tier4_model)
    _unknown_models(actions.tier4_model, actions.provider)
    imgui.pop_item_width()
    if imgui.button("Apply models"):
        actions.ui(actions.apply_tier_models)
    imgui.same_line()
    if imgui.button("Save project##mma"):
        actions.ui(actions.save_project)
    imgui.same_line()
    imgui.text_disabled("(applies to the next accepted track)")


def unknown_models(text: str, provider: str) -> list[str]:
    """The names in a tier field (comma list) that `providers.catalog` does not list for `provider`."""
    known = {m for m in catalog.model_names() if catalog.model_info(m).provider == provider}
    return [m for m in (x.strip() for x in text.split(",")) if m and m not in known]


def _unknown_models(text: str, provider: str) -> None:
    """A warning after a tier field whose model the catalog does not know for the provider."""
    unknown = unknown_models(text, provider)
    if not unknown:
        return
    imgui.same_line()
    imgui.text_colored(theme.RUN_STATUS_COLORS["aborted"], "(!) unknown")
    if imgui.is_item_hovered():
        listed = [m for m in catalog.model_names() if catalog.model_info(m).provider == provider]
        imgui.set_tooltip(f"Not in the {provider} catalog: {', '.join(unknown)}\n"
                          "(a typo? the provider will reject it; window and price are guessed)\n\n"
                          "Known: " + ", ".join(listed))
