"""Git workspace bench: per-ticket overhead (worktree + commit + merge) on a 10,000-file repository.

    python bench/bench_git.py [--quick]

A repository of 10,000 small files in 100 folders (--quick: 300) is made in a temp folder.
`TrackWorkspace` (track_workspace.py) opens a track on it, then runs tickets the way the
engine does, minus the model: `prepare` (the ticket's worktree at the track head), a
"worker" that changes one file and adds one, `land` (commit + merge onto the track branch; no
QA command, so the git cost alone).  Tickets run in pairs prepared on the same head, so the
first of a pair lands as a fast-forward and the second as a cherry-pick (a real three-way
merge), as parallel tickets do.

Measured per ticket: prepare, land, and their sum, the per-ticket overhead (target: median
< 1 s).  The first ticket of each worktree slot pays a full checkout and is reported apart.
Baseline, same run: what a fresh worktree per ticket costs (`git worktree add` with a full
checkout + `git worktree remove`), the design a reused, reset worktree replaces.
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

TARGET_S = 1.0


def make_repo(path: Path, files: int) -> None:
    path.mkdir(parents=True)
    for i in range(files):
        folder = path / f"pkg{i // 100:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"mod{i:05d}.py").write_text(f'"""Module {i}."""\n' + "".join(f"x{j} = {j}\n" for j in range(20)))
    env_args = ["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], [*env_args, "commit", "-q", "-m", "10k files"]):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)


def fake_worker(base_dir: str, n: int) -> None:
    """What a worker leaves behind: one file changed, one added."""
    target = Path(base_dir) / f"pkg{n // 100:03d}" / f"mod{n:05d}.py"
    target.write_text(target.read_text() + f"changed_by_ticket_{n} = True\n")
    (Path(base_dir) / "notes").mkdir(exist_ok=True)
    (Path(base_dir) / "notes" / f"T{n}.md").write_text(f"# ticket {n}\n")


def fresh_worktree_cost(repo: Path, rounds: int) -> list[float]:
    times = []
    for i in range(rounds):
        path = repo.parent / f"fresh{i}"
        start = time.perf_counter()
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(path), "HEAD"], cwd=repo, check=True,
                       capture_output=True)
        shutil.rmtree(path)                     # as TrackWorkspace.close does (`worktree remove` re-reads every file)
        subprocess.run(["git", "worktree", "prune"], cwd=repo, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = common.arg_parser(__doc__.splitlines()[0])
    opts = parser.parse_args(argv)
    common.setup_logging(opts.verbose)
    from track_workspace import LandingKind, TrackWorkspace
    files = 300 if opts.quick else 10_000
    pairs = 2 if opts.quick else 8
    tmp = Path(tempfile.mkdtemp(prefix="bench-git-"))
    try:
        repo = tmp / "repo"
        start = time.perf_counter()
        make_repo(repo, files)
        setup_s = time.perf_counter() - start
        ws = TrackWorkspace.for_project(repo, "bench")
        start = time.perf_counter()
        ws.open()
        open_s = time.perf_counter() - start
        prepare_s, land_s, kinds = [], [], []
        first_slot_s = []
        n = 0
        for _pair in range(pairs):
            tickets = []
            for _ in range(2):                       # two tickets from the same head, like parallel ones
                n += 1
                fresh_slot = n <= 2
                start = time.perf_counter()
                place = ws.prepare(f"T{n}")
                took = time.perf_counter() - start
                (first_slot_s if fresh_slot else prepare_s).append(took)
                fake_worker(place.base_dir, n)
                tickets.append(n)
            for t in tickets:
                start = time.perf_counter()
                landing = ws.land(f"T{t}", f"bench ticket {t}", "bench-model")
                land_s.append(time.perf_counter() - start)
                kinds.append(landing.kind)
        start = time.perf_counter()
        ws.close()
        close_s = time.perf_counter() - start
        per_ticket = [p + land for p, land in zip(prepare_s, land_s[2:], strict=False)]
        landed = sum(1 for k in kinds if k is LandingKind.COMMITTED)
        commits = subprocess.run(["git", "rev-list", "--count", "main..mma/bench"], cwd=repo, check=True,
                                 capture_output=True, text=True).stdout.strip()
        leftover = subprocess.run(["git", "worktree", "list"], cwd=repo, check=True, capture_output=True,
                                  text=True).stdout.count("\n")
        fresh = fresh_worktree_cost(repo, 1 if opts.quick else 5)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    median = statistics.median(per_ticket)
    metrics = {
        "files": files, "tickets": n, "landed": landed, "all_landed": landed == n,
        "commits_on_track_branch": int(commits), "worktrees_left": leftover - 1,
        "per_ticket_overhead_s_median": round(median, 3), "per_ticket_overhead_s_max": round(max(per_ticket), 3),
        "prepare_s_median": round(statistics.median(prepare_s), 3),
        "land_s_median": round(statistics.median(land_s), 3),
        "first_ticket_of_a_slot_s": [round(x, 3) for x in first_slot_s],
        "open_track_s": round(open_s, 3), "close_track_s": round(close_s, 3), "repo_setup_s": round(setup_s, 2),
        "landings": sorted({k.value for k in kinds}),
    }
    baseline = {"fresh_worktree_add_remove_s_median": round(statistics.median(fresh), 3)}
    targets = [
        common.target(f"per-ticket overhead (worktree + commit + merge), {files:,} files",
                      f"< {TARGET_S} s median", f"{median:.3f} s median (max {max(per_ticket):.3f})",
                      median < TARGET_S, baseline=f"fresh worktree per ticket {baseline['fresh_worktree_add_remove_s_median']} s"),
        common.target("every ticket landed as one commit, no worktree left", "all", f"{landed}/{n}, "
                      f"{metrics['worktrees_left']} left", landed == n == int(commits) and leftover == 1),
    ]
    notes = ["tickets land in pairs prepared on the same head: the first of a pair fast-forwards, the second "
             "is cherry-picked (a three-way merge)",
             "the first ticket of each worktree slot pays a full checkout (first_ticket_of_a_slot_s); later "
             "tickets reuse the slot: checkout -f -B of the new head + clean -ffdx"]
    path = common.write_result("git", quick=opts.quick, metrics=metrics, baseline=baseline, targets=targets,
                               notes=notes, out_dir=opts.out_dir,
                               extra={"prepare_s": prepare_s, "land_s": land_s, "fresh_worktree_s": fresh})
    common.print_result(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
