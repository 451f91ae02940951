"""Git for tracks: the repository, branches, worktrees, commits, merges, review and apply.

Everything goes through the `git` command line (present wherever MMA Desk runs); nothing
here merges by itself.  `track_workspace.TrackWorkspace` uses these pieces to give each
running ticket its own worktree and to land its commit on the track branch.

Names (docs/guide_mma.md, "Git: worktrees, commits, review"):

  mma/<track>                 the track branch, made from the user's HEAD; the user's own
                              branch changes only on Apply
  mma-ticket/<track>/<ticket> a ticket's branch (deleted once its commit is on the track
                              branch; kept when the ticket ends blocked by a merge conflict)
  <git dir>/mma-desk/<track>/ the track's worktrees (inside the repository's git folder, so
                              they never show up in the user's working tree or its tools)

Git runs with `LC_ALL=C` (messages are parsed), no terminal prompts, and without any
`GIT_DIR`/`GIT_WORK_TREE` the caller's environment may hold.  Commits are made with the
plumbing (`write-tree`, `commit-tree`): no hooks, no signing prompts, and one commit per
ticket whatever the model did to its worktree's HEAD.  When git has no identity configured,
commits are made as "MMA Desk <mma-desk@localhost>".
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TRACK_PREFIX = "mma/"
TICKET_PREFIX = "mma-ticket/"
WORKTREE_DIR = "mma-desk"            # under the repository's common git dir
TRAILER_TRACK = "MMA-Track"
TRAILER_TICKET = "MMA-Ticket"
TRAILER_MODEL = "MMA-Model"
FALLBACK_NAME, FALLBACK_EMAIL = "MMA Desk", "mma-desk@localhost"
GIT_TIMEOUT_S = 300.0
# Files MMA Desk itself writes into a project: they never make a working tree "dirty" for us,
# and an initial commit leaves them out.
APP_PATHS = ("conductor", ".mma_desk", ".mma_project.last_good.toml")
_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_PREFIX",
             "GIT_COMMON_DIR", "GIT_NAMESPACE")


class GitError(RuntimeError):
    """A git command failed; the message names the command and git's own words."""

    def __init__(self, args: list[str], code: int, stderr: str):
        self.args_run, self.code, self.stderr = args, code, stderr.strip()
        detail = self.stderr.splitlines()[-1] if self.stderr else f"exit code {code}"
        super().__init__(f"git {' '.join(args[:3])} failed: {detail}")


class NotARepository(ValueError):
    """The project folder is not inside a git repository."""


def git_available() -> bool:
    return shutil.which("git") is not None


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env.update(LC_ALL="C", LANGUAGE="C", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0")
    env.update(extra or {})
    return env


def run_git(cwd: str | Path, *args: str, env: dict[str, str] | None = None, check: bool = True,
            input_text: str | None = None, timeout: float = GIT_TIMEOUT_S) -> subprocess.CompletedProcess:
    """`git <args>` in `cwd`; raises GitError when it fails and `check` is set."""
    cmd = ["git", *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=_env(env), input=input_text, capture_output=True,
                              text=True, encoding="utf-8", errors="replace", timeout=timeout)
    except FileNotFoundError as exc:
        raise GitError(list(args), 127, "git is not installed (or not on PATH)") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(list(args), -1, f"timed out after {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        raise GitError(list(args), proc.returncode, proc.stderr or proc.stdout)
    return proc


def ref_safe(name: str) -> str:
    """`name` as one ref-name component (ids may hold ':' or '..', which refs may not)."""
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)
    safe = re.sub(r"\.{2,}", "_", safe).strip(".") or "x"
    if safe.endswith(".lock"):
        safe += "_"
    if safe != name:                 # keep different ids apart after the substitution
        safe = f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"
    return safe


def track_branch(track_id: str) -> str:
    return TRACK_PREFIX + ref_safe(track_id)


def ticket_branch(track_id: str, ticket_id: str) -> str:
    return f"{TICKET_PREFIX}{ref_safe(track_id)}/{ref_safe(ticket_id)}"


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    ticket_id: str           # from the MMA-Ticket trailer ("" for commits MMA Desk did not make)
    model: str

    @property
    def short(self) -> str:
        return self.sha[:7]


@dataclass(frozen=True)
class FileChange:
    status: str              # A, M, D, R...
    path: str
    added: int
    removed: int


class Repo:
    """The git repository a project folder lives in.

    `prefix` is the project folder relative to the repository's top level ("" when they
    are the same): a ticket's worker works in `<worktree>/<prefix>`.
    """

    def __init__(self, toplevel: Path, common_dir: Path, prefix: str):
        self.toplevel, self.common_dir, self.prefix = toplevel, common_dir, prefix
        self._identity: dict[str, str] | None = None

    @classmethod
    def find(cls, project_dir: str | Path) -> Repo | None:
        """The repository holding `project_dir`, or None (not a repository, or no git)."""
        project = Path(project_dir).resolve()
        if not project.is_dir() or not git_available():
            return None
        proc = run_git(project, "rev-parse", "--show-toplevel", "--git-common-dir", "--show-prefix",
                       check=False)
        if proc.returncode != 0:
            return None
        lines = proc.stdout.splitlines()
        if len(lines) < 2:                     # a bare repository or the inside of .git
            return None
        toplevel = Path(lines[0]).resolve()
        common = Path(lines[1])
        common = (common if common.is_absolute() else project / common).resolve()
        prefix = lines[2].strip().rstrip("/") if len(lines) > 2 else ""
        return cls(toplevel, common, prefix)

    @classmethod
    def open(cls, project_dir: str | Path) -> Repo:
        repo = cls.find(project_dir)
        if repo is None:
            why = "git is not installed" if not git_available() else "it is not inside a git repository"
            raise NotARepository(f"{project_dir}: {why}")
        return repo

    def git(self, *args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
        return run_git(cwd or self.toplevel, *args, **kw)

    def out(self, *args: str, cwd: Path | None = None) -> str:
        return self.git(*args, cwd=cwd).stdout.strip()

    # -- refs -----------------------------------------------------------------------------------
    def rev(self, ref: str) -> str | None:
        proc = self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def head(self) -> str | None:
        return self.rev("HEAD")

    def current_branch(self) -> str | None:
        """The user's checked-out branch, or None when HEAD is detached."""
        proc = self.git("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return proc.stdout.strip() or None

    def branches(self, pattern: str) -> list[str]:
        out = self.out("for-each-ref", "--format=%(refname:short)", f"refs/heads/{pattern}")
        return [b for b in out.splitlines() if b]

    def delete_branch(self, name: str) -> None:
        self.git("update-ref", "-d", f"refs/heads/{name}", check=False)

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.git("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0

    # -- the user's working tree ------------------------------------------------------------------
    def uncommitted(self) -> list[str]:
        """Changed and untracked files of the user's checkout (`XY path`), MMA Desk's own files left out."""
        excludes = [f":(exclude,top){p}" for p in APP_PATHS] + [":(exclude,top)mma_project.toml"]
        out = self.git("status", "--porcelain", "--untracked-files=normal", "--", ":/", *excludes).stdout
        return [line for line in out.splitlines() if line.strip()]

    # -- identity ----------------------------------------------------------------------------------
    def identity_env(self) -> dict[str, str]:
        """Author/committer for our commits: the user's git identity, else MMA Desk's."""
        if self._identity is None:
            name = self.git("config", "user.name", check=False).stdout.strip()
            email = self.git("config", "user.email", check=False).stdout.strip()
            self._identity = {} if name and email else {
                "GIT_AUTHOR_NAME": name or FALLBACK_NAME, "GIT_AUTHOR_EMAIL": email or FALLBACK_EMAIL,
                "GIT_COMMITTER_NAME": name or FALLBACK_NAME, "GIT_COMMITTER_EMAIL": email or FALLBACK_EMAIL}
        return self._identity

    # -- worktrees ---------------------------------------------------------------------------------
    def worktree_root(self, track_id: str) -> Path:
        return self.common_dir / WORKTREE_DIR / ref_safe(track_id)

    def worktrees(self) -> list[Path]:
        out = self.out("worktree", "list", "--porcelain")
        return [Path(line[len("worktree "):]) for line in out.splitlines() if line.startswith("worktree ")]

    def remove_worktrees_under(self, root: Path) -> int:
        """Remove every worktree below `root` (a crash's leftovers, or a finished track's), then prune.

        The folders are deleted directly and git's records pruned: `git worktree remove` first
        checks the tree for changes, which re-reads every file of a fresh checkout (~15 s for
        10,000 files here), and these trees are ours to drop."""
        inside = os.path.realpath(root) + os.sep
        ours = [path for path in self.worktrees() if os.path.realpath(path).startswith(inside)]
        for path in ours:
            shutil.rmtree(path, ignore_errors=True)
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
        self.git("worktree", "prune")
        return len(ours)

    # -- commits -------------------------------------------------------------------------------------
    def commits(self, base: str, tip: str) -> list[Commit]:
        """Commits in `base..tip`, oldest first, with their MMA-Ticket and MMA-Model trailers."""
        fmt = (f"%H%x1f%s%x1f%(trailers:key={TRAILER_TICKET},valueonly,separator=%x2c)"
               f"%x1f%(trailers:key={TRAILER_MODEL},valueonly,separator=%x2c)%x1e")
        out = self.git("log", "--reverse", f"--format={fmt}", f"{base}..{tip}").stdout
        commits = []
        for record in out.split("\x1e"):
            fields = record.strip("\n").split("\x1f")
            if len(fields) == 4:
                commits.append(Commit(fields[0], fields[1], fields[2].strip(), fields[3].strip()))
        return commits

    def changed_files(self, base: str, tip: str) -> list[FileChange]:
        """The files `git diff base tip` touches, with added/removed line counts."""
        status = self.out("diff", "--name-status", "--no-renames", base, tip)
        counts = {}
        for line in self.out("diff", "--numstat", "--no-renames", base, tip).splitlines():
            added, removed, path = line.split("\t", 2)
            counts[path] = (int(added) if added.isdigit() else 0, int(removed) if removed.isdigit() else 0)
        files = []
        for line in status.splitlines():
            kind, path = line.split("\t", 1)
            files.append(FileChange(kind[:1], path, *counts.get(path, (0, 0))))
        return files

    def diff(self, base: str, tip: str, path: str | None = None) -> str:
        args = ["diff", "--no-color", "--no-renames", base, tip]
        return self.git(*args, *(["--", path] if path else [])).stdout


def commit_message(track_id: str, ticket_id: str, description: str, model: str) -> str:
    first = " ".join(description.split())
    subject = f"{ticket_id}: {first}"
    if len(subject) > 72:
        subject = subject[:71].rstrip() + "\u2026"
    body = f"Ticket {ticket_id} of track {track_id}, made by {model or 'an unknown model'} (MMA Desk)."
    if first and len(f"{ticket_id}: {first}") > 72:
        body = f"{description.strip()}\n\n{body}"
    return (f"{subject}\n\n{body}\n\n{TRAILER_TRACK}: {track_id}\n{TRAILER_TICKET}: {ticket_id}\n"
            f"{TRAILER_MODEL}: {model or 'unknown'}\n")


def init_repository(project_dir: str | Path) -> Repo:
    """`git init` the folder and commit what is there (its .gitignore respected; MMA Desk's own
    files left out).  Refuses a folder that already is inside a repository."""
    project = Path(project_dir)
    if Repo.find(project) is not None:
        raise ValueError(f"{project} is already inside a git repository")
    run_git(project, "init", "--quiet")
    repo = Repo.open(project)
    excludes = [f":(exclude){p}" for p in APP_PATHS]
    repo.git("add", "--all", "--", ".", *excludes)
    tree = repo.out("write-tree")
    sha = repo.git("commit-tree", tree, "-m", "Initial commit (made by MMA Desk's git init)",
                   env=repo.identity_env()).stdout.strip()
    repo.git("update-ref", "HEAD", sha)
    log.info("initialised a git repository in %s (first commit %s)", project, sha[:7])
    return repo


@dataclass(frozen=True)
class ApplyResult:
    applied: bool
    fast_forward: bool = False
    message: str = ""
    conflicts: tuple[str, ...] = ()


def apply_track(project_dir: str | Path, track_id: str, *, delete_branch: bool = True) -> ApplyResult:
    """Merge the track branch into the user's checked-out branch (fast-forward when possible).

    A merge that conflicts is aborted, so the user's branch and files stay as they were; the
    result names the files.  Git itself refuses when the user's uncommitted changes would be
    overwritten, and nothing changes then either.
    """
    repo = Repo.open(project_dir)
    branch = track_branch(track_id)
    tip = repo.rev(branch)
    if tip is None:
        raise ValueError(f"no track branch {branch} in {repo.toplevel}")
    target = repo.current_branch()
    if target is None:
        raise ValueError("HEAD is detached: check out the branch the track should go into, then apply")
    if target == branch:
        raise ValueError(f"{branch} itself is checked out: check out the branch to apply it to")
    head = repo.head()
    ff = False
    if head is not None and repo.is_ancestor(tip, head):
        message = f"{branch} is already in {target}; nothing to apply"
    else:
        ff = head is None or repo.is_ancestor(head, tip)
        proc = repo.git("merge", "--ff" if ff else "--no-ff", "--no-edit", "-m",
                        f"Merge MMA track {track_id}", branch, check=False, env=repo.identity_env())
        if proc.returncode != 0:
            conflicts = tuple(repo.out("diff", "--name-only", "--diff-filter=U").splitlines())
            if conflicts:
                repo.git("merge", "--abort", check=False)
                return ApplyResult(False, message=f"applying {branch} to {target} conflicts in "
                                   f"{', '.join(conflicts)}; nothing was changed (merge it by hand: "
                                   f"git merge {branch})", conflicts=conflicts)
            reason = (proc.stderr or proc.stdout).strip().splitlines()
            return ApplyResult(False, message=f"git refused to merge {branch} into {target}: "
                               f"{reason[-1] if reason else 'exit code ' + str(proc.returncode)}")
        message = (f"{branch} fast-forwarded into {target}" if ff else f"{branch} merged into {target}")
    if delete_branch:
        discard_track(project_dir, track_id, branch_too=True, repo=repo)
    log.info("%s", message)
    return ApplyResult(True, fast_forward=ff, message=message)


def discard_track(project_dir: str | Path, track_id: str, *, branch_too: bool = True,
                  repo: Repo | None = None) -> list[str]:
    """Remove the track's worktrees and (with `branch_too`) its track and ticket branches."""
    repo = repo or Repo.open(project_dir)
    repo.remove_worktrees_under(repo.worktree_root(track_id))
    gone = []
    if branch_too:
        for name in [track_branch(track_id), *repo.branches(f"{TICKET_PREFIX}{ref_safe(track_id)}")]:
            if repo.rev(name) is not None:
                repo.delete_branch(name)
                gone.append(name)
    return gone
