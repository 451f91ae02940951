"""The Changes window: review a track branch, then Apply or Discard it.

`draw(state, actions)`: `state` is the `ChangesState` (gui/changes.py) the window shows;
`actions` (`ChangesActions`, satisfied by `gui_2.App`) is what it reads and calls.  It shows
the git question waiting before a track starts, the track's commits with their tickets, the
files and the unified diff (per ticket or for the whole track, one file or all; `+`/`-`/`@@`
lines coloured), the QA runs, and the Apply / Discard buttons.  Widget labels for the Test
Engine (docs/guide_gui.md):

  "Proceed from HEAD##offer", "Stop##offer", "git init##changes", "##changes_track",
  "Refresh##changes", "Apply##changes", "Discard##changes",
  "##change_list/All changes##change", "##change_list/<ticket> <sha>##change-<sha>",
  "##change_list/<path>##file-<path>"
"""
from __future__ import annotations

from typing import Protocol

from imgui_bundle import imgui

from gui import theme
from gui.actions import GuardedCalls
from gui.changes import ALL, WIN_CHANGES, ChangesState, TrackChanges

__all__ = ["WIN_CHANGES", "ChangesActions", "draw", "diff_color"]

ADDED: theme.Color = (0.45, 0.85, 0.45, 1.0)
REMOVED: theme.Color = (0.95, 0.45, 0.42, 1.0)
HUNK: theme.Color = (0.45, 0.75, 0.95, 1.0)
HEADER: theme.Color = (0.85, 0.78, 0.50, 1.0)


class ChangesActions(GuardedCalls, Protocol):
    @property
    def workspace_offer(self) -> dict | None: ...
    @property
    def saved_tracks(self) -> list[dict]: ...
    @property
    def is_git_project(self) -> bool: ...
    def changes_key(self) -> tuple: ...
    def refresh_changes(self, track_id: str | None = None) -> dict: ...
    def select_change(self, selection: str = ALL, file: str = "") -> dict: ...
    def apply_changes(self, track_id: str | None = None) -> dict: ...
    def discard_changes(self, track_id: str | None = None) -> dict: ...
    def workspace_proceed(self) -> dict: ...
    def workspace_stop(self) -> dict: ...
    def workspace_git_init(self) -> dict: ...


def diff_color(line: str) -> theme.Color | None:
    """The colour of a unified-diff line (None: plain text)."""
    if line.startswith(("+++", "---", "diff --git", "index ", "new file", "deleted file")):
        return HEADER
    if line.startswith("+"):
        return ADDED
    if line.startswith("-"):
        return REMOVED
    if line.startswith("@@"):
        return HUNK
    return None


def draw(state: ChangesState, actions: ChangesActions) -> None:
    state.shown = {"offer": "", "commits": 0, "files": 0, "diff_lines": 0}
    _offer(state, actions)
    if not actions.is_git_project:
        imgui.text_wrapped("This folder is not a git repository, so tracks run with read-only tools and change "
                           "nothing. Make it one (git init and a first commit of what is here) to let workers "
                           "change code on a track branch you review here before applying it.")
        if imgui.button("git init##changes"):
            actions.ui(actions.workspace_git_init)
        _status(state)
        return
    _track_row(state, actions)
    key = actions.changes_key()
    if key and not state.busy and state.loaded_key != key:
        actions.ui(actions.refresh_changes)
    _status(state)
    data = state.data
    if data is None or data.track_id != state.track_id:
        imgui.text_disabled("loading ..." if state.busy else "Pick a track that has run.")
        return
    _summary(data, actions, state)
    if not data.exists:
        return
    imgui.begin_child("##change_list", imgui.ImVec2(imgui.get_content_region_avail().x * 0.34, 0),
                      imgui.ChildFlags_.borders | imgui.ChildFlags_.resize_x)
    _commit_list(data, actions)
    _file_list(data, actions)
    _qa_list(data)
    imgui.end_child()
    state.shown.update(commits=len(data.commits), files=len(data.files))
    imgui.same_line()
    imgui.begin_child("##diff", imgui.ImVec2(0, 0), imgui.ChildFlags_.borders,
                      imgui.WindowFlags_.horizontal_scrollbar)
    state.shown["diff_lines"] = _diff(data)
    imgui.end_child()


def _offer(state: ChangesState, actions: ChangesActions) -> None:
    offer = actions.workspace_offer
    if not offer:
        return
    state.shown["offer"] = offer.get("kind", "")
    imgui.text_colored(theme.BANNER_TEXT, "Before the track starts")
    imgui.text_wrapped(offer.get("message", ""))
    for path in offer.get("files", [])[:8]:
        imgui.bullet_text(path)
    if len(offer.get("files", [])) > 8:
        imgui.text_disabled(f"... and {len(offer['files']) - 8} more")
    if imgui.button("Proceed from HEAD##offer"):
        actions.ui(actions.workspace_proceed)
    imgui.same_line()
    if imgui.button("Stop##offer"):
        actions.ui(actions.workspace_stop)
    imgui.separator()


def _track_row(state: ChangesState, actions: ChangesActions) -> None:
    ids = [str(t["id"]) for t in actions.saved_tracks]
    if state.track_id and state.track_id not in ids:
        ids.insert(0, state.track_id)
    imgui.set_next_item_width(min(320.0, imgui.get_content_region_avail().x * 0.5))
    if imgui.begin_combo("##changes_track", state.track_id or "(no track)"):
        for tid in ids:
            if imgui.selectable(tid, tid == state.track_id)[0]:
                actions.ui(actions.refresh_changes, tid)
        imgui.end_combo()
    imgui.same_line()
    if imgui.button("Refresh##changes"):
        actions.ui(actions.refresh_changes, state.track_id or None)
    imgui.same_line()
    imgui.begin_disabled(bool(state.busy) or state.data is None or not state.data.exists)
    if imgui.button("Apply##changes"):
        actions.ui(actions.apply_changes)
    if imgui.is_item_hovered(imgui.HoveredFlags_.allow_when_disabled):
        imgui.set_tooltip("Merge the track branch into your checked-out branch (a fast-forward when possible).")
    imgui.same_line()
    if imgui.button("Discard##changes"):
        actions.ui(actions.discard_changes)
    if imgui.is_item_hovered(imgui.HoveredFlags_.allow_when_disabled):
        imgui.set_tooltip("Delete the track branch, its ticket branches and worktrees. Your branch is not touched.")
    imgui.end_disabled()


def _status(state: ChangesState) -> None:
    if state.busy:
        imgui.text_disabled(f"{state.busy} ...")
    elif state.status:
        imgui.text_wrapped(state.status)


def _summary(data: TrackChanges, actions: ChangesActions, state: ChangesState) -> None:
    if not data.exists:
        imgui.text_disabled(data.message)
        return
    into = f" -> {data.target}" if data.target else " (HEAD is detached: check out a branch to apply)"
    imgui.text(f"{data.branch}{into}: {data.message}, base {data.base[:7]}")
    if data.qa:
        passed = sum(1 for r in data.qa if r.get("passed"))
        color = theme.STATUS_COLORS["completed"] if passed == len(data.qa) else theme.STATUS_COLORS["blocked"]
        imgui.same_line()
        imgui.text_colored(color, f"QA {passed}/{len(data.qa)} passed")


def _commit_list(data: TrackChanges, actions: ChangesActions) -> None:
    imgui.text_disabled("Commits (one per ticket)")
    if imgui.selectable("All changes##change", data.selection == ALL)[0]:
        actions.ui(actions.select_change, ALL)
    for c in data.commits:
        label = f"{c.ticket_id or '?'} {c.short}##change-{c.sha}"
        if imgui.selectable(label, data.selection == c.sha)[0]:
            actions.ui(actions.select_change, c.sha)
        if imgui.is_item_hovered():
            imgui.set_tooltip(f"{c.subject}\nmade by {c.model or 'unknown'}")


def _file_list(data: TrackChanges, actions: ChangesActions) -> None:
    imgui.spacing()
    imgui.text_disabled(f"Files ({len(data.files)})")
    for f in data.files:
        label = f"{f.status} {f.path}  +{f.added} -{f.removed}##file-{f.path}"
        if imgui.selectable(label, data.file == f.path)[0]:
            actions.ui(actions.select_change, data.selection, "" if data.file == f.path else f.path)


def _qa_list(data: TrackChanges) -> None:
    if not data.qa:
        return
    imgui.spacing()
    imgui.text_disabled(f"QA runs ({len(data.qa)})")
    for run in data.qa:
        color = theme.STATUS_COLORS["completed" if run.get("passed") else "blocked"]
        tickets = ", ".join(run.get("tickets") or [])
        imgui.text_colored(color, f"{run.get('verdict', '?')}  {tickets}  {run.get('seconds', 0)} s")
        if imgui.is_item_hovered() and run.get("output"):
            imgui.set_tooltip(f"$ {run.get('command', '')}\n{str(run['output'])[-1500:]}")


def _diff(data: TrackChanges) -> int:
    lines = data.diff_lines
    if not lines:
        imgui.text_disabled("no changes")
        return 0
    clipper = imgui.ListClipper()
    clipper.begin(len(lines))
    while clipper.step():
        for i in range(clipper.display_start, clipper.display_end):
            color = diff_color(lines[i])
            if color is None:
                imgui.text_unformatted(lines[i])
            else:
                imgui.text_colored(color, lines[i])
    clipper.end()
    if data.truncated:
        imgui.text_colored(theme.ERROR_TEXT, "[diff cut: pick one file to see all of it]")
    return len(lines)
