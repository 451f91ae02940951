"""A track's git workspace: one worktree per running ticket, one commit per ticket, the QA gate.

`ConductorEngine` owns one `TrackWorkspace` per run and calls it from its thread pool
(never from the loop thread):

  open()              the track branch `mma/<track>` (from the user's HEAD, or the existing
                      one on a resume), its integration worktree, leftovers of a crash
                      removed; returns the tickets whose commits are already on the branch
  prepare(ticket)     a worktree on `mma-ticket/<track>/<ticket>` at the track branch's head
                      -> the folder the worker's file and shell tools are confined to
  discard(ticket)     the attempt ended without DONE (blocked, error, abort): its changes go
  land(ticket)        commit the worktree (nothing changed: no commit), put the commit on the
                      track branch (fast-forward, else cherry-pick = a three-way merge with
                      the ticket's base), run the QA command, and only then move the branch
  verify_level()      with `[qa] run_after = "level"`: one QA run for the merges of a level;
                      on a failure the merges are replayed one by one to find the culprit
  close()             every worktree removed; ticket branches deleted except those of
                      tickets blocked with a commit (a conflict, a QA failure)

The branch only ever points at verified work: merges happen on the integration worktree's
detached HEAD and the branch moves after QA passes, so a kill -9 mid-QA leaves nothing
unverified on it.  Worktrees are reused: a finished ticket's worktree is reset to the new
head for the next ticket (`checkout -f -B` + `clean -ffdx`), which on a 10,000-file
repository costs a fraction of a fresh checkout (docs/performance.md).

A project that is not in a git repository gets a read-only workspace: workers run in the
project folder with read-only tools, and nothing is committed.
"""
from __future__ import annotations

import enum
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import track_git
from track_git import GitError, Repo, commit_message
from track_qa import QaConfig, QaResult, QaRunner

log = logging.getLogger(__name__)

# Every git call that commits or merges here: no user hooks, no signing prompt, no auto-gc
# (a gc packing refs while another worker thread creates a branch makes that branch fail).
_QUIET = ("-c", "core.hooksPath=/dev/null", "-c", "commit.gpgSign=false", "-c", "gc.auto=0",
          "-c", "maintenance.auto=false", "-c", "advice.detachedHead=false")
QA_RESULTS_KEPT = 50
OWNER_FILE = "owner.pid"           # in a track's worktree folder: the process running it


class LandingKind(enum.Enum):
    COMMITTED = "committed"        # the ticket's commit is on the track branch
    NO_CHANGE = "no_change"        # the worker changed nothing: complete, no commit
    MERGED = "merged"              # merged, waiting for the level's QA run
    CONFLICT = "conflict"          # its commit does not merge onto the track head
    QA_FAILED = "qa_failed"        # merged, but the QA command failed: the merge was undone
    CANCELLED = "cancelled"        # aborted while landing; nothing moved
    ERROR = "error"                # git failed


@dataclass(frozen=True)
class Landing:
    ticket_id: str
    kind: LandingKind
    sha: str = ""                  # the commit on the track branch (COMMITTED / MERGED)
    files: tuple[str, ...] = ()    # conflicting files
    qa: QaResult | None = None
    message: str = ""

    @property
    def short(self) -> str:
        return self.sha[:7]


@dataclass
class _Slot:
    path: Path
    admin: Path                    # its git dir (.git/worktrees/<name>), fixed at creation


@dataclass
class _Attempt:
    slot: _Slot
    base: str                      # the track head it started from
    branch: str


@dataclass
class WorkerPlace:
    """Where a ticket's worker runs and what it may do there."""
    base_dir: str
    read_only: bool = False


@dataclass
class _State:
    landed: dict[str, str] = field(default_factory=dict)          # ticket -> commit on the track branch
    commits: dict[str, str] = field(default_factory=dict)         # ticket -> its own commit (ticket branch)
    unverified: list[tuple[str, str]] = field(default_factory=list)   # (ticket, merged sha) awaiting QA
    kept_branches: set[str] = field(default_factory=set)
    reruns: set[str] = field(default_factory=set)                 # tickets re-run after a conflict
    notes: dict[str, str] = field(default_factory=dict)           # ticket -> text for its next prompt


class TrackWorkspace:
    """See the module docstring.  `prepare`/`discard` may run on several pool threads at once;
    `land` and `verify_level` are called one at a time (the engine lands in DAG order)."""

    def __init__(self, project_dir: str | Path, track_id: str, *, qa: QaConfig | None = None,
                 repo: Repo | None = None):
        self.project_dir = Path(project_dir).resolve()
        self.track_id = track_id
        self.repo = repo
        self.qa_config = qa or QaConfig()
        self.qa = QaRunner(self.qa_config)
        self.qa_results: list[QaResult] = []
        self.notes: list[str] = []             # what the user should be told once (the engine emits them)
        self.base = ""                          # the commit the track branch started from
        self.branch = track_git.track_branch(track_id)
        self._opened = False
        self._lock = threading.Lock()
        self._free: list[_Slot] = []
        self._slots = 0
        self._attempts: dict[str, _Attempt] = {}
        self._state = _State()
        self._track_wt: _Slot | None = None
        self._closed = False

    @classmethod
    def for_project(cls, project_dir: str | Path, track_id: str, qa: QaConfig | None = None) -> TrackWorkspace:
        """A git workspace when the project is in a repository, else a read-only one (found by `open`,
        which runs off the engine's loop thread)."""
        return cls(project_dir, track_id, qa=qa)

    @property
    def isolated(self) -> bool:
        """True: tickets run in worktrees and land as commits.  False: read-only tools in the project."""
        return self.repo is not None

    @property
    def level_qa(self) -> bool:
        return self.isolated and self.qa_config.enabled and self.qa_config.run_after == "level"

    def describe(self) -> dict:
        """For state.json and the Changes window."""
        if not self._opened:
            return {"mode": "pending"}
        if self.repo is None:
            return {"mode": "read_only"}
        with self._lock:
            kept = sorted(self._state.kept_branches)
        return {"mode": "git", "branch": self.branch, "base": self.base, "qa_command": self.qa_config.command,
                "qa_run_after": self.qa_config.run_after,
                "qa": [r.to_dict() for r in self.qa_results[-QA_RESULTS_KEPT:]], "kept_branches": kept}

    # ================================================================= git helpers
    def _git(self, slot: _Slot, *args: str, check: bool = True, input_text: str | None = None):
        """git in a worktree, pointed at its own git dir: a model that rewrote the worktree's
        `.git` file cannot redirect us to another repository."""
        assert self.repo is not None
        env = {"GIT_DIR": str(slot.admin), "GIT_WORK_TREE": str(slot.path), **self.repo.identity_env()}
        return track_git.run_git(slot.path, *_QUIET, *args, env=env, check=check, input_text=input_text)

    def _new_worktree(self, name: str, *args: str) -> _Slot:
        assert self.repo is not None
        path = self.repo.worktree_root(self.track_id) / name
        self.repo.git(*_QUIET, "worktree", "add", "--quiet", *args[:-1], str(path), args[-1])
        admin = Path(self.repo.out("rev-parse", "--absolute-git-dir", cwd=path))
        return _Slot(path, admin)

    def _in_project(self, slot: _Slot) -> str:
        return str(slot.path / self.repo.prefix) if self.repo and self.repo.prefix else str(slot.path)

    def _head(self, slot: _Slot) -> str:
        return self._git(slot, "rev-parse", "HEAD").stdout.strip()

    # ================================================================= open / close
    def open(self) -> dict[str, str]:
        """Make or reuse the track branch and its integration worktree.  Returns {ticket id: commit}
        for every ticket whose commit is already on the branch (a resume must not redo them).
        `base` may be set beforehand to where the track started (from its saved state)."""
        if self.repo is None:
            self.repo = Repo.find(self.project_dir)
        self._opened = True
        if self.repo is None:
            self.notes.append(f"{self.project_dir} is not a git repository: workers run with read-only "
                              "tools and change nothing (make it a repository to let them change code on "
                              "a track branch)")
            return {}
        repo = self.repo
        with self._lock:                       # a second run of the same engine starts afresh
            self._closed, self._free, self._slots = False, [], 0
            self._attempts.clear()
        root = repo.worktree_root(self.track_id)
        pruned = repo.remove_worktrees_under(root)
        if pruned:
            self.notes.append(f"removed {pruned} worktree(s) left by an earlier run of this track")
        tip = repo.rev(self.branch)
        if tip is None:
            head = repo.head()
            if head is None:
                raise GitError(["branch"], 128, "the repository has no commit yet: commit your files first")
            repo.git("branch", self.branch, head)
            self.base = head
            where = repo.current_branch() or "a detached HEAD"
            self.notes.append(f"track branch {self.branch} made from {where} at {head[:7]}; your branch "
                              "and files stay as they are until you apply it")
            uncommitted = repo.uncommitted()
            if uncommitted:
                shown = ", ".join(line[3:] for line in uncommitted[:5]) + (" ..." if len(uncommitted) > 5 else "")
                self.notes.append(f"{len(uncommitted)} uncommitted change(s) in your checkout are not part of "
                                  f"the track (it starts from HEAD) and are left untouched: {shown}")
        else:
            if not (self.base and repo.rev(self.base) and repo.is_ancestor(self.base, tip)):
                proc = repo.git("merge-base", "HEAD", self.branch, check=False)
                self.base = proc.stdout.strip() or tip
            self.notes.append(f"continuing on track branch {self.branch} at {tip[:7]}")
        root.mkdir(parents=True, exist_ok=True)
        (root / OWNER_FILE).write_text(f"{os.getpid()}\n")   # prune_abandoned() leaves a live run alone
        self._track_wt = self._new_worktree("track", "--detach", self.branch)
        for commit in repo.commits(self.base, self.branch):
            if commit.ticket_id:
                self._state.landed[commit.ticket_id] = commit.sha
        if not self.qa_config.enabled:
            self.notes.append("QA gate: no [qa] command in mma_project.toml, so nothing checks the "
                              "merges (add one, e.g. [qa] command = \"pytest -q\")")
        return dict(self._state.landed)

    def close(self) -> None:
        """Remove every worktree of the track; keep only branches a user may need."""
        self.qa.cancel()
        with self._lock:
            if self._closed or self.repo is None:
                self._closed = True
                return
            self._closed = True
        repo = self.repo
        try:
            repo.remove_worktrees_under(repo.worktree_root(self.track_id))
            prefix = f"{track_git.TICKET_PREFIX}{track_git.ref_safe(self.track_id)}"
            with self._lock:
                kept = set(self._state.kept_branches)
            for name in repo.branches(prefix):
                if name not in kept:
                    repo.delete_branch(name)
        except GitError as exc:
            log.error("cleaning up the worktrees of track %s failed: %s", self.track_id, exc)

    def cancel(self) -> None:
        """Abort: stop a QA run in progress (any thread)."""
        self.qa.cancel()

    # ================================================================= a ticket's attempt
    def prepare(self, ticket_id: str) -> WorkerPlace:
        """The place the ticket's worker runs: its own worktree at the track head (git), or the project."""
        if self.repo is None:
            return WorkerPlace(str(self.project_dir), read_only=True)
        branch = track_git.ticket_branch(self.track_id, ticket_id)
        with self._lock:
            if self._closed:
                raise GitError(["worktree"], 1, "the track's workspace is closed")
            slot = self._free.pop() if self._free else None
            if slot is None:
                self._slots += 1
                name = f"w{self._slots}"
        head = self.repo.rev(self.branch)
        if head is None:
            raise GitError(["rev-parse"], 128, f"the track branch {self.branch} is gone")
        try:
            if slot is None:
                slot = self._new_worktree(name, "-B", branch, head)
            else:
                self._git(slot, "checkout", "--quiet", "--force", "-B", branch, head)
                self._git(slot, "clean", "--quiet", "-ffdx")
        except GitError:
            if slot is not None:
                self._give_back(slot)
            raise
        with self._lock:
            self._attempts[ticket_id] = _Attempt(slot, head, branch)
        return WorkerPlace(self._in_project(slot))

    def take_note(self, ticket_id: str) -> str:
        """Extra text for the ticket's next prompt (the conflict of its last attempt), once."""
        with self._lock:
            return self._state.notes.pop(ticket_id, "")

    def discard(self, ticket_id: str) -> None:
        """The attempt ended without a result to keep: its worktree goes back to the pool."""
        with self._lock:
            attempt = self._attempts.pop(ticket_id, None)
        if attempt is None:
            return
        with self._lock:
            keep = attempt.branch in self._state.kept_branches
        try:
            self._git(attempt.slot, "checkout", "--quiet", "--force", "--detach")
            if not keep:
                assert self.repo is not None
                self.repo.delete_branch(attempt.branch)
        except GitError as exc:
            log.warning("resetting the worktree of %s failed: %s", ticket_id, exc)
        self._give_back(attempt.slot)

    def _give_back(self, slot: _Slot) -> None:
        with self._lock:
            if not self._closed:
                self._free.append(slot)

    # ================================================================= landing
    def land(self, ticket_id: str, description: str, model: str) -> Landing:
        """Commit the ticket's worktree and put the commit on the track branch (see the module doc)."""
        if self.repo is None:
            return Landing(ticket_id, LandingKind.NO_CHANGE)
        with self._lock:
            attempt = self._attempts.pop(ticket_id, None)
        if attempt is None:
            return Landing(ticket_id, LandingKind.ERROR, message=f"no worktree was prepared for {ticket_id}")
        try:
            sha = self._commit(attempt, ticket_id, description, model)
            self._git(attempt.slot, "checkout", "--quiet", "--force", "--detach")
        except GitError as exc:
            self._give_back(attempt.slot)
            return Landing(ticket_id, LandingKind.ERROR, message=f"committing {ticket_id} failed: {exc}")
        self._give_back(attempt.slot)
        if sha is None:
            self.repo.delete_branch(attempt.branch)
            return Landing(ticket_id, LandingKind.NO_CHANGE, message=f"{ticket_id} changed no file")
        self._state.commits[ticket_id] = sha
        try:
            landing = self._integrate(ticket_id, sha, check=not self.level_qa)
        except GitError as exc:
            landing = Landing(ticket_id, LandingKind.ERROR, message=f"merging {ticket_id} failed: {exc}")
        self._after_landing(landing, attempt.branch)
        return landing

    def land_all(self, ticket_id: str, description: str, model: str) -> list[Landing]:
        """`land` as a list, the shape `verify_level` returns."""
        return [self.land(ticket_id, description, model)]

    def _commit(self, attempt: _Attempt, ticket_id: str, description: str, model: str) -> str | None:
        """The worktree as one commit on top of the ticket's base, or None when nothing changed."""
        slot, prefix = attempt.slot, (self.repo.prefix + "/" if self.repo and self.repo.prefix else "")
        private = [f":(top,exclude){prefix}{p}" for p in track_git.APP_PATHS]
        self._git(slot, "add", "--all", "--", ":/", *private)
        tracked = self._git(slot, "ls-files", "--", f":(top){prefix}conductor").stdout.strip()
        if tracked:                                # conductor/ files the user already tracks may change
            self._git(slot, "add", "--update", "--", f":(top){prefix}conductor")
        tree = self._git(slot, "write-tree").stdout.strip()
        if tree == self._git(slot, "rev-parse", f"{attempt.base}^{{tree}}").stdout.strip():
            return None
        message = commit_message(self.track_id, ticket_id, description, model)
        sha = self._git(slot, "commit-tree", tree, "-p", attempt.base, "-F", "-", input_text=message).stdout.strip()
        self._git(slot, "update-ref", f"refs/heads/{attempt.branch}", sha)
        return sha

    def _integrate(self, ticket_id: str, sha: str, *, check: bool) -> Landing:
        """Merge `sha` onto the integration worktree's HEAD; with `check`, run QA and move the branch."""
        wt = self._track_wt
        assert wt is not None and self.repo is not None
        before = self._head(wt)
        parent = self._git(wt, "rev-parse", f"{sha}^").stdout.strip()
        if parent == before:
            self._git(wt, "checkout", "--quiet", "--detach", sha)
            merged = sha
        else:
            proc = self._git(wt, "cherry-pick", "--no-commit", sha, check=False)
            if proc.returncode != 0:
                files = tuple(self._git(wt, "diff", "--name-only", "--diff-filter=U").stdout.split())
                self._git(wt, "cherry-pick", "--abort", check=False)
                self._git(wt, "reset", "--quiet", "--hard", before)
                if not files:
                    raise GitError(["cherry-pick"], proc.returncode, proc.stderr or proc.stdout)
                return Landing(ticket_id, LandingKind.CONFLICT, files=files,
                               message=f"merge conflict in {', '.join(files)}")
            if self._git(wt, "diff", "--cached", "--quiet", check=False).returncode == 0:
                self._git(wt, "reset", "--quiet", "--hard", before)
                return Landing(ticket_id, LandingKind.NO_CHANGE,
                               message=f"{ticket_id}'s change is already on the track branch")
            self._git(wt, "commit", "--quiet", "--no-verify", "-C", sha)
            merged = self._head(wt)
        if not check:
            self._state.unverified.append((ticket_id, merged))
            return Landing(ticket_id, LandingKind.MERGED, merged)
        qa = self._run_qa(merged, (ticket_id,))
        if qa is not None and not qa.passed:
            self._git(wt, "reset", "--quiet", "--hard", before)
            kind = LandingKind.CANCELLED if qa.cancelled else LandingKind.QA_FAILED
            return Landing(ticket_id, kind, qa=qa, message=f"QA {qa.verdict} after merging {ticket_id}: "
                           f"`{qa.command}`")
        self._advance(merged)
        return Landing(ticket_id, LandingKind.COMMITTED, merged, qa=qa)

    def _run_qa(self, head: str, tickets: tuple[str, ...]) -> QaResult | None:
        if not self.qa_config.enabled:
            return None
        assert self._track_wt is not None
        result = self.qa.run(Path(self._in_project(self._track_wt)), head, tickets)
        self.qa_results.append(result)
        return result

    def _advance(self, sha: str) -> None:
        """Move the track branch to a verified commit."""
        assert self.repo is not None
        old = self.repo.rev(self.branch) or ""
        self.repo.git("update-ref", "-m", "MMA Desk: ticket landed", f"refs/heads/{self.branch}", sha, old)

    def _after_landing(self, landing: Landing, branch: str) -> None:
        assert self.repo is not None
        with self._lock:
            if landing.kind in (LandingKind.COMMITTED, LandingKind.MERGED):
                self._state.landed[landing.ticket_id] = landing.sha
            if landing.kind is LandingKind.COMMITTED:
                self._state.kept_branches.discard(branch)
            elif landing.kind in (LandingKind.CONFLICT, LandingKind.QA_FAILED):
                self._state.kept_branches.add(branch)       # the work is never lost
                if landing.kind is LandingKind.CONFLICT:
                    self._state.landed.pop(landing.ticket_id, None)
        if landing.kind is LandingKind.COMMITTED:
            self.repo.delete_branch(branch)

    def conflict_rerun(self, landing: Landing) -> bool:
        """A conflicting ticket runs once more on top of the new head, told about the conflict;
        False when it already had that second chance (it is blocked then)."""
        tid = landing.ticket_id
        with self._lock:
            if tid in self._state.reruns:
                return False
            self._state.reruns.add(tid)
            self._state.notes[tid] = (
                f"MERGE CONFLICT: your previous attempt at this ticket changed {', '.join(landing.files)}, "
                "and other tickets changed the same lines meanwhile. You now start from the current track "
                "head, which has their changes: make your change on top of them, keeping their work.")
        return True

    # ================================================================= level QA
    def verify_level(self) -> list[Landing]:
        """QA once for the merges waiting since the last check; on a failure replay them one at a
        time (QA after each) so the failure is pinned on the merge that caused it."""
        assert self.repo is not None and self._track_wt is not None
        pending, self._state.unverified = self._state.unverified, []
        if not pending:
            return []
        head = self._head(self._track_wt)
        qa = self._run_qa(head, tuple(t for t, _ in pending))
        if qa is None or qa.passed:
            self._advance(head)
            for tid, _sha in pending:
                self.repo.delete_branch(track_git.ticket_branch(self.track_id, tid))
            return [Landing(tid, LandingKind.COMMITTED, sha, qa=qa) for tid, sha in pending]
        if qa.cancelled:
            self._git(self._track_wt, "reset", "--quiet", "--hard", self.branch)
            return [Landing(tid, LandingKind.CANCELLED, qa=qa) for tid, _sha in pending]
        log.info("level QA failed for %s; checking the merges one by one", [t for t, _ in pending])
        self._git(self._track_wt, "reset", "--quiet", "--hard", self.branch)
        results = []
        for tid, _sha in pending:
            branch = track_git.ticket_branch(self.track_id, tid)
            try:
                landing = self._integrate(tid, self._state.commits[tid], check=True)
            except GitError as exc:
                landing = Landing(tid, LandingKind.ERROR, message=f"merging {tid} failed: {exc}")
            self._after_landing(landing, branch)
            results.append(landing)
        return results

    def has_unverified(self) -> bool:
        return bool(self._state.unverified)

    def unverified_ids(self) -> list[str]:
        return [tid for tid, _sha in self._state.unverified]

    def ticket_branch(self, ticket_id: str) -> str:
        return track_git.ticket_branch(self.track_id, ticket_id)


def worktree_count(project_dir: str | Path) -> int:
    """How many worktrees besides the main one the project's repository has (for tests and the UI)."""
    repo = Repo.find(project_dir)
    return 0 if repo is None else max(0, len(repo.worktrees()) - 1)



def prune_abandoned(project_dir: str | Path) -> int:
    """Start-up: remove the worktrees of tracks whose run died (kill -9, a crash) and prune git's
    records of them.  A track folder whose owner process is still alive is left alone.  Returns
    how many worktrees were removed."""
    repo = Repo.find(project_dir)
    if repo is None:
        return 0
    parent = repo.common_dir / track_git.WORKTREE_DIR
    removed = 0
    for root in sorted(parent.iterdir()) if parent.is_dir() else []:
        if root.is_dir() and not _owner_alive(root / OWNER_FILE):
            removed += repo.remove_worktrees_under(root)
    repo.git("worktree", "prune")
    if removed:
        log.info("removed %d worktree(s) left by runs that ended without cleaning up", removed)
    return removed


def _owner_alive(owner: Path) -> bool:
    try:
        pid = int(owner.read_text().strip())
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                      # someone else's live process
    return True
