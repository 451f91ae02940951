"""The Changes window's state and commands: review a track branch, apply or discard it, and the
git questions asked before a track starts.

`ChangesState` holds what the window shows (`TrackChanges`, loaded from git off the GUI thread
by a one-thread pool, picked up each frame by `poll()`).  `ChangesCommands` is a mixin of
`gui_2.App`: the buttons (`refresh_changes`, `select_change`, `apply_changes`,
`discard_changes`), the workspace questions (`workspace_gate`, `workspace_proceed`,
`workspace_stop`, `workspace_git_init`), and what the hook API clicks.

Before a track runs in a git repository whose checkout has uncommitted changes, Accept stops
and asks (`workspace_offer`): the track starts from HEAD without them (they are left alone),
or nothing starts.  A folder that is not a repository runs its tracks with read-only tools
(the engine says so in the dashboard); the window offers `git init` for the next track.
"""
from __future__ import annotations

import concurrent.futures
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import conductor_io
import track_git
from track_git import Commit, FileChange

if TYPE_CHECKING:
    from imgui_bundle import hello_imgui

    import multi_agent_conductor as mac
    from gui.mma_state import MMAState

log = logging.getLogger(__name__)

WIN_CHANGES = "Changes"
DIFF_LIMIT_CHARS = 400_000          # a bigger diff is cut (the window says so)
ALL = "all"


@dataclass(frozen=True)
class TrackChanges:
    """One track branch as the window shows it (a snapshot; reloaded, never edited)."""
    track_id: str
    branch: str = ""
    exists: bool = False
    base: str = ""
    target: str = ""                                # the user's checked-out branch ("" if detached)
    commits: tuple[Commit, ...] = ()
    selection: str = ALL                            # ALL or a commit sha
    file: str = ""                                  # one file of the selection, or "" for all
    files: tuple[FileChange, ...] = ()
    diff: str = ""
    truncated: bool = False
    qa: tuple[dict, ...] = ()
    message: str = ""

    @functools.cached_property
    def diff_lines(self) -> list[str]:
        return self.diff.splitlines()


def load_changes(project_dir: Path, track_id: str, selection: str = ALL, file: str = "") -> TrackChanges:
    """Read the track branch from git (worker thread): commits with their tickets, files, the diff."""
    repo = track_git.Repo.find(project_dir)
    if repo is None:
        return TrackChanges(track_id, message=f"{project_dir} is not a git repository")
    branch = track_git.track_branch(track_id)
    tip = repo.rev(branch)
    if tip is None:
        return TrackChanges(track_id, branch, message=f"no branch {branch}: the track has not run here yet, "
                                                      "or it was applied or discarded")
    head = repo.head()
    base = repo.git("merge-base", head, tip, check=False).stdout.strip() if head else ""
    base = base or tip
    commits = tuple(repo.commits(base, tip))
    shas = {c.sha for c in commits}
    if selection not in shas:
        selection = ALL
    older, newer = (base, tip) if selection == ALL else (f"{selection}^", selection)
    files = tuple(repo.changed_files(older, newer))
    if file not in {f.path for f in files}:
        file = ""
    diff = repo.diff(older, newer, file or None)
    truncated = len(diff) > DIFF_LIMIT_CHARS
    qa: tuple[dict, ...] = ()
    try:
        git_state = conductor_io.load_track_extras(project_dir, track_id).get("git")
        if isinstance(git_state, dict) and isinstance(git_state.get("qa"), list):
            qa = tuple(r for r in git_state["qa"] if isinstance(r, dict))
    except (OSError, ValueError) as exc:
        log.info("no saved QA results for %s: %s", track_id, exc)
    return TrackChanges(track_id, branch, True, base, repo.current_branch() or "", commits, selection, file,
                        files, diff[:DIFF_LIMIT_CHARS], truncated, qa,
                        f"{len(commits)} commit(s), {len(files)} file(s) changed")


@dataclass
class ChangesState:
    """What the Changes window shows, and the background job that loads or applies it."""
    track_id: str = ""
    selection: str = ALL
    file: str = ""
    data: TrackChanges | None = None
    status: str = ""                                # the last apply/discard/init result, for the window
    loaded_key: tuple = ()
    shown: dict = field(default_factory=dict)       # what the window drew last frame (tests read it)
    _job: concurrent.futures.Future | None = None
    _job_what: str = ""
    _on_done: Callable[[Any], None] | None = None
    _pool: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mma-changes"))

    @property
    def busy(self) -> str:
        """What the background job is doing ("" when idle)."""
        return self._job_what if self._job is not None else ""

    def run(self, what: str, fn: Callable[[], Any], on_done: Callable[[Any], None]) -> None:
        if self._job is not None:
            raise ValueError(f"the Changes window is still busy ({self._job_what}); try again in a moment")
        self._job, self._job_what, self._on_done = self._pool.submit(fn), what, on_done

    def poll(self) -> None:
        """GUI thread, each frame: hand a finished job's result to its callback."""
        job, on_done = self._job, self._on_done
        if job is None or not job.done():
            return
        self._job, self._on_done = None, None
        try:
            result = job.result()
        except (OSError, ValueError, track_git.GitError) as exc:
            log.warning("Changes: %s failed: %s", self._job_what, exc)
            self.status = f"{self._job_what} failed: {exc}"
            return
        if on_done is not None:
            on_done(result)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class ChangesCommands:
    """Mixin of `gui_2.App`: the Changes window's buttons and the pre-run git questions."""
    # ---------------------------------------------------------------- provided by the host (gui_2.App)
    mma: MMAState
    changes: ChangesState
    project_dir: Path
    saved_tracks: list[dict]
    workspace_offer: dict | None
    _workspace_proceed: set[str]
    _runner_params: hello_imgui.RunnerParams | None

    if TYPE_CHECKING:
        @property
        def active_track_id(self) -> str | None: ...
        @property
        def active_engine(self) -> mac.ConductorEngine | None: ...
        def accept_track(self, track_id: str | None = None) -> dict: ...
        def refresh_saved_tracks(self) -> list[dict]: ...

    # ---------------------------------------------------------------- questions before a run
    def workspace_gate(self, track_id: str) -> dict | None:
        """Accept asks this first: None to go on, or the question now shown in the Changes window."""
        if track_id in self._workspace_proceed:
            self._workspace_proceed.discard(track_id)
            return None
        repo = track_git.Repo.find(self.project_dir)
        if repo is None or repo.rev(track_git.track_branch(track_id)) is not None:
            return None                 # read-only (said by the engine), or continuing an existing branch
        changed = repo.uncommitted()
        if not changed:
            return None
        self.workspace_offer = {
            "kind": "uncommitted", "track_id": track_id, "files": [line[3:] for line in changed],
            "message": (f"Your checkout has {len(changed)} uncommitted change(s). Track {track_id} would start "
                        f"from HEAD without them, on branch {track_git.track_branch(track_id)}; they stay as "
                        "they are either way.")}
        self._focus_changes()
        log.info("track %s waits for an answer: %d uncommitted change(s)", track_id, len(changed))
        return self.workspace_offer

    def workspace_proceed(self) -> dict:
        """Proceed from HEAD: start the track the question was about."""
        offer = self._take_offer()
        self._workspace_proceed.add(offer["track_id"])
        return self.accept_track(offer["track_id"])

    def workspace_stop(self) -> dict:
        offer = self._take_offer()
        self.changes.status = f"track {offer['track_id']} not started: commit or stash your changes, then accept it"
        return {"stopped": offer["track_id"]}

    def _take_offer(self) -> dict:
        offer = self.workspace_offer
        if offer is None:
            raise ValueError("no question is waiting for an answer")
        self.workspace_offer = None
        return offer

    def workspace_git_init(self) -> dict:
        """Make the project a git repository (first commit of what is there) for the next track."""
        if track_git.Repo.find(self.project_dir) is not None:
            raise ValueError(f"{self.project_dir} is already in a git repository")
        if self.mma.pipeline_active:
            raise ValueError("wait for the running track to finish before making the folder a repository")
        repo = track_git.init_repository(self.project_dir)
        head = repo.head() or ""
        self.changes.status = (f"{self.project_dir} is now a git repository (first commit {head[:7]}); "
                               "the next track works on a track branch")
        return {"initialised": str(self.project_dir), "head": head}

    def prune_abandoned_worktrees(self) -> None:
        """Start-up, in the background: worktrees left by a run that died are removed."""
        from track_workspace import prune_abandoned
        project = self.project_dir

        def done(removed: int) -> None:
            if removed:
                self.changes.status = f"removed {removed} worktree(s) left by an earlier run that did not end cleanly"
        self.changes.run("pruning", lambda: prune_abandoned(project), done)

    def _focus_changes(self) -> None:
        rp = self._runner_params
        if rp is not None:
            rp.docking_params.focus_dockable_window(WIN_CHANGES)

    # ---------------------------------------------------------------- review
    @property
    def is_git_project(self) -> bool:
        return track_git.Repo.find(self.project_dir) is not None

    def default_changes_track(self) -> str:
        """The active track, else the most recently updated saved one."""
        if self.active_track_id:
            return self.active_track_id
        tracks = sorted(self.saved_tracks, key=lambda t: t.get("updated_at") or "", reverse=True)
        return str(tracks[0]["id"]) if tracks else ""

    def refresh_changes(self, track_id: str | None = None) -> dict:
        """Load a track's branch into the Changes window (in the background)."""
        state = self.changes
        if track_id is not None and track_id != state.track_id:
            state.track_id, state.selection, state.file = track_id, ALL, ""
        state.track_id = state.track_id or self.default_changes_track()
        if not state.track_id:
            raise ValueError("no track to review yet: accept or resume a track first")
        state.loaded_key = self.changes_key()
        project, tid, sel, file = self.project_dir, state.track_id, state.selection, state.file

        def loaded(data: TrackChanges) -> None:
            if data.track_id == state.track_id:
                state.data, state.selection, state.file = data, data.selection, data.file
        state.run("loading", lambda: load_changes(project, tid, sel, file), loaded)
        return {"loading": tid}

    def changes_summary(self) -> dict:
        """For the hook API's snapshot: what the Changes window has loaded and last did."""
        state, data = self.changes, self.changes.data
        summary: dict[str, Any] = {"track_id": state.track_id, "busy": state.busy, "status": state.status}
        if data is not None:
            summary.update(branch=data.branch, exists=data.exists, message=data.message,
                           commits=[{"ticket_id": c.ticket_id, "sha": c.sha} for c in data.commits],
                           files=[f.path for f in data.files], diff_lines=len(data.diff_lines), qa=len(data.qa))
        return summary

    def changes_key(self) -> tuple:
        """What the loaded data depends on; the window reloads when it changes (() = nothing to show)."""
        track_id = self.changes.track_id or self.default_changes_track()
        if not track_id:
            return ()
        landed = sum(1 for t in self.mma.active_tickets if t.get("commit"))     # reload as commits land
        return (track_id, self.changes.selection, self.changes.file, self.mma.mma_status, landed,
                str(self.project_dir))

    def select_change(self, selection: str = ALL, file: str = "") -> dict:
        """Show the whole track (ALL) or one ticket's commit, optionally one file of it."""
        self.changes.selection, self.changes.file = selection or ALL, file
        return self.refresh_changes()

    def _track_running(self, track_id: str) -> bool:
        engine = self.active_engine
        return bool(engine is not None and engine.track.id == track_id and engine.status in ("starting", "running"))

    def apply_changes(self, track_id: str | None = None) -> dict:
        """Apply: merge the track branch into the user's branch (fast-forward when possible)."""
        tid = self._review_target(track_id, "apply")

        def done(result: track_git.ApplyResult) -> None:
            self.changes.status = result.message
            if not result.applied:
                self.mma.add_error(result.message, "resolve it in your checkout, then apply again")
            self.refresh_changes()
        self.changes.run("applying", lambda: track_git.apply_track(self.project_dir, tid), done)
        return {"submitted": "apply", "track_id": tid}

    def discard_changes(self, track_id: str | None = None) -> dict:
        """Discard: delete the track branch, its ticket branches and worktrees."""
        tid = self._review_target(track_id, "discard")

        def done(gone: list[str]) -> None:
            self.changes.status = f"discarded: deleted {', '.join(gone) or 'nothing (no branch left)'}"
            self.refresh_changes()
        self.changes.run("discarding", lambda: track_git.discard_track(self.project_dir, tid), done)
        return {"submitted": "discard", "track_id": tid}

    def _review_target(self, track_id: str | None, what: str) -> str:
        tid = track_id or self.changes.track_id or self.default_changes_track()
        if not tid:
            raise ValueError(f"no track to {what}")
        if self._track_running(tid):
            raise ValueError(f"track {tid} is still running: wait for it to end (or abort it), then {what}")
        return tid
