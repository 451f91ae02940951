"""Tracks on real git repositories: a worktree per ticket, a commit per ticket, merges, conflicts,
the QA gate, review and apply.  Every test makes its own temporary repository (tests/git_fixtures.py)
and runs the real pipeline, engine, worker and mock provider, whose workers edit files through the
real write tool."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import cli
import conductor_io
import track_git
from models import Ticket, Track
from tests.git_fixtures import approve_everything, branch_files, git, make_repo, run_track, ticket_commits, worktrees


def run_cli(args, capsys):
    code = cli.main(args)
    return code, capsys.readouterr().out


def only_track(project):
    folders = list((project / "conductor" / "tracks").iterdir())
    assert len(folders) == 1
    return folders[0]


def diamond(**markers: str) -> list[Ticket]:
    """T1 -> (T2, T3 in parallel) -> T4, like the mock's own Tier 2 plan; `markers` add text per ticket."""
    def t(tid, deps):
        return Ticket(tid, f"Step {tid} of the test {markers.get(tid, '')}".strip(), depends_on=deps)
    return [t("T1", []), t("T2", ["T1"]), t("T3", ["T1"]), t("T4", ["T2", "T3"])]


# ============================================================================ the happy path, headless
def test_parallel_tickets_land_as_one_commit_each_and_apply_brings_them_home(tmp_path, capsys):
    project = make_repo(tmp_path / "proj")
    head_before = git(project, "rev-parse", "HEAD")
    code, out = run_cli(["run", "--epic", "Add a notes feature", "--project", str(project),
                         "--provider", "mock", "--auto"], capsys)
    assert code == 0, out
    folder = only_track(project)
    branch = f"mma/{folder.name}"
    assert f"4 commit(s) on {branch}" in out and f"mma-desk apply {folder.name}" in out
    assert "QA: 4 of 4 run(s) passed" in out

    # one commit per ticket, each after the tickets it depends on (T2 and T3 ran in parallel)
    order = ticket_commits(project, head_before, branch)
    assert sorted(order) == ["T1", "T2", "T3", "T4"] and order[0] == "T1" and order[-1] == "T4"
    assert len(git(project, "rev-list", f"{head_before}..{branch}").split()) == 4
    timeline = out[out.index("Timeline of"):]
    assert "in parallel with T3" in timeline
    files = branch_files(project, branch)
    assert {"mma_mock/T1.md", "mma_mock/T2.md", "mma_mock/T3.md", "mma_mock/T4.md", "mma_mock/shared.md"} <= files
    shared = git(project, "show", f"{branch}:mma_mock/shared.md")
    for tid in ("T1", "T2", "T3", "T4"):                 # parallel edits of one file merged, none lost
        assert f"{tid} done by" in shared
    assert not any(p.startswith("conductor/") for p in files)    # the track's own files stay out

    # the user's branch and working tree are untouched until apply; no worktree is left
    assert git(project, "rev-parse", "HEAD") == head_before
    assert git(project, "status", "--porcelain", "--untracked-files=no") == ""
    assert not (project / "mma_mock").exists()
    assert len(worktrees(project)) == 1
    assert git(project, "branch", "--list", "mma-ticket/*") == ""

    # plan.md records each task's commit, Conductor style, and still imports
    state = json.loads((folder / "state.json").read_text())
    shas = {t["id"]: t["commit"] for t in state["tickets"]}
    plan = (folder / "plan.md").read_text()
    for tid, sha in shas.items():
        assert f"Task {tid}:" in plan and f"[{sha[:7]}]" in plan
        assert git(project, "log", "-1", "--format=%(trailers:key=MMA-Ticket,valueonly)", sha).strip() == tid
    source = conductor_io.read_track_source(folder / "plan.md")
    assert [(t.id, t.status) for t in source.track.tickets] == [(tid, "completed") for tid in ("T1", "T2", "T3", "T4")]
    assert state["git"]["branch"] == branch and state["git"]["base"] == head_before

    # apply: a fast-forward of the user's branch; the files are there; the track branch is gone
    code, out = run_cli(["apply", folder.name, "--project", str(project)], capsys)
    assert code == 0 and "fast-forwarded into main" in out, out
    assert (project / "mma_mock" / "T4.md").is_file()
    assert git(project, "rev-parse", "HEAD") == shas["T4"]
    assert git(project, "branch", "--list", "mma/*") == "" and len(worktrees(project)) == 1


def test_run_with_apply_flag_applies_a_completed_track(tmp_path, capsys):
    project = make_repo(tmp_path / "proj")
    code, out = run_cli(["run", "--epic", "Add a flag", "--project", str(project), "--provider", "mock",
                         "--auto", "--apply"], capsys)
    assert code == 0 and "applied: mma/" in out, out
    assert (project / "mma_mock" / "shared.md").is_file()


def test_uncommitted_changes_are_named_left_alone_and_not_in_the_track(tmp_path, capsys):
    project = make_repo(tmp_path / "proj")
    (project / "README.md").write_text("# demo\nmy unsaved edit\n")
    (project / "scratch.txt").write_text("draft\n")
    code, out = run_cli(["run", "--epic", "Add a flag", "--project", str(project), "--provider", "mock",
                         "--auto"], capsys)
    assert code == 0, out
    assert "2 uncommitted change(s)" in out and "README.md" in out and "scratch.txt" in out
    branch = f"mma/{only_track(project).name}"
    assert git(project, "show", f"{branch}:README.md") == "# demo"
    assert "scratch.txt" not in branch_files(project, branch)
    assert (project / "README.md").read_text() == "# demo\nmy unsaved edit\n"
    assert (project / "scratch.txt").read_text() == "draft\n"


def test_apply_that_conflicts_changes_nothing_and_discard_removes_the_branch(tmp_path, capsys):
    project = make_repo(tmp_path / "proj")
    assert run_cli(["run", "--epic", "Add a flag", "--project", str(project), "--provider", "mock", "--auto"],
                   capsys)[0] == 0
    track_id = only_track(project).name
    (project / "mma_mock").mkdir()                      # the user commits a clashing file meanwhile
    (project / "mma_mock" / "shared.md").write_text("mine\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "my own shared.md")
    mine = git(project, "rev-parse", "HEAD")
    code, out = run_cli(["apply", track_id, "--project", str(project)], capsys)
    assert code == 1 and "conflicts in mma_mock/shared.md" in out and "nothing was changed" in out
    assert git(project, "rev-parse", "HEAD") == mine
    assert git(project, "status", "--porcelain", "--untracked-files=no") == ""
    assert (project / "mma_mock" / "shared.md").read_text() == "mine\n"
    code, out = run_cli(["discard", track_id, "--project", str(project)], capsys)
    assert code == 0 and f"mma/{track_id}" in out
    assert git(project, "branch", "--list", "mma/*") == ""
    code, out = run_cli(["apply", track_id, "--project", str(project)], capsys)
    assert code == 1 and "no track branch" in out


# ============================================================================ conflicts
def test_parallel_edits_of_the_same_line_rerun_the_second_ticket_on_top_of_the_first(tmp_path):
    project = make_repo(tmp_path / "proj")
    base = git(project, "rev-parse", "HEAD")
    engine, _pipeline, requests = run_track(project, diamond(T2="[conflict]", T3="[conflict]"))
    assert engine.final_status == "completed", [(t.id, t.status, t.blocked_reason) for t in engine.dag.tickets.values()]
    order = ticket_commits(project, base, "mma/trk")
    assert sorted(order) == ["T1", "T2", "T3", "T4"]
    # exactly one of the two parallel tickets ran twice, and its second prompt described the conflict
    reruns = [tid for tid in ("T2", "T3") if len(requests.by_ticket[tid]) == 2]
    assert len(reruns) == 1, requests.by_ticket
    second = requests.by_ticket[reruns[0]][1]
    assert "MERGE CONFLICT" in second and "mma_mock/shared.md" in second
    shared = git(project, "show", "mma/trk:mma_mock/shared.md")
    assert "T2 done by" in shared and "T3 done by" in shared     # nothing lost
    assert len(worktrees(project)) == 1


def test_a_ticket_that_conflicts_again_is_blocked_naming_the_file_and_keeps_its_branch(tmp_path):
    """Three parallel tickets rewrite one line.  The first lands; the other two conflict and are
    re-run from the same new head; their spawns are held so that one re-run lands before the other
    starts merging: the last conflicts a second time and is blocked."""
    project = make_repo(tmp_path / "proj")
    tickets = [Ticket(tid, f"Edit the shared line {tid} [conflict]") for tid in ("A", "B", "C")]
    first: set[str] = set()
    reruns: list[str] = []                               # re-runs in the order they were let go

    def answer(request, pending, engine):
        tid = request.ticket_id
        if tid not in first:
            first.add(tid)
            return True
        waiting = [r for r in pending if r.ticket_id in first and r.ticket_id not in reruns]
        if not reruns and len(waiting) == 2:            # both re-runs prepared on the same head
            reruns.append(tid)
            return True
        if reruns and tid != reruns[0] and engine.dag.tickets[reruns[0]].status == "completed":
            reruns.append(tid)
            return True                                  # the second once the first has landed
        return None
    engine, _pipeline, requests = run_track(project, tickets, answer_spawn=answer, max_workers=3)
    statuses = {t.id: t.status for t in engine.dag.tickets.values()}
    assert sorted(statuses.values()) == ["blocked", "completed", "completed"], statuses
    blocked = next(t for t in engine.dag.tickets.values() if t.status == "blocked")
    assert "merge conflict in mma_mock/shared.md again" in blocked.blocked_reason
    kept = f"mma-ticket/trk/{blocked.id}"
    assert kept in blocked.blocked_reason
    assert git(project, "branch", "--list", kept).strip() == kept          # its work is kept for the user
    assert f"{blocked.id} done by" in git(project, "show", f"{kept}:mma_mock/shared.md")
    assert len(requests.by_ticket[blocked.id]) == 2                          # re-run once, not more
    assert len(worktrees(project)) == 1


# ============================================================================ the QA gate
def test_qa_failure_after_a_merge_blocks_that_ticket_and_its_retry_gets_the_diagnosis(tmp_path):
    project = make_repo(tmp_path / "proj")
    base = git(project, "rev-parse", "HEAD")
    engine, pipeline, requests = run_track(project, diamond(T2="BREAKS the build"), max_retries=1)
    t2 = engine.dag.tickets["T2"]
    assert t2.status == "blocked" and "QA failed (exit code 1) after merging T2" in t2.blocked_reason
    assert engine.dag.tickets["T3"].status == "completed" and engine.dag.tickets["T4"].status == "todo"
    prompts = requests.by_ticket["T2"]
    assert len(prompts) == 2                                   # the first attempt and one retry
    assert "QA diagnosis: Diagnosis:" in prompts[1] and "QA failed" in prompts[1]
    assert "QA diagnosis" not in prompts[0]
    # the failing merges never reached the track branch; the work is on the ticket branch
    assert ticket_commits(project, base, "mma/trk") == ["T1", "T3"]
    assert "mma_mock/T2.md" not in branch_files(project, "mma/trk")
    assert "BREAKS" in git(project, "show", "mma-ticket/trk/T2:mma_mock/T2.md")
    results = engine.workspace.qa_results
    assert [r.passed for r in results].count(False) == 2 and all(r.tickets for r in results)
    state = json.loads((project / "conductor" / "tracks" / "trk" / "state.json").read_text())
    assert [q["verdict"] for q in state["git"]["qa"]].count("failed (exit code 1)") == 2
    plan = (project / "conductor" / "tracks" / "trk" / "plan.md").read_text()
    assert "- [ ] Task T2:" in plan or "- [~] Task T2:" in plan


def test_level_qa_runs_once_per_level_and_pins_a_failure_on_the_merge_that_caused_it(tmp_path):
    project = make_repo(tmp_path / "proj", run_after="level")
    base = git(project, "rev-parse", "HEAD")
    engine, _pipeline, _requests = run_track(project, diamond(T3="BREAKS it"), max_retries=0)
    assert engine.dag.tickets["T3"].status == "blocked" and "after merging T3" in engine.dag.tickets["T3"].blocked_reason
    assert engine.dag.tickets["T2"].status == "completed"
    assert ticket_commits(project, base, "mma/trk") == ["T1", "T2"]
    runs = engine.workspace.qa_results
    assert runs[0].tickets == ("T1",) and runs[0].passed
    assert set(runs[1].tickets) == {"T2", "T3"} and not runs[1].passed       # one run for the level
    # then replayed one merge at a time, in the order they had landed
    assert dict((r.tickets, r.passed) for r in runs[2:]) == {("T2",): True, ("T3",): False}


def test_no_qa_command_is_said_once_and_nothing_runs(tmp_path, capsys):
    project = make_repo(tmp_path / "proj", qa_command=None)
    code, out = run_cli(["run", "--epic", "Add a flag", "--project", str(project), "--provider", "mock",
                         "--auto"], capsys)
    assert code == 0 and out.count("no [qa] command") == 1 and "QA:" not in out.split("Track ")[-1]


def test_qa_command_that_hangs_is_killed_at_its_time_limit(tmp_path):
    from track_qa import QaConfig, QaRunner
    runner = QaRunner(QaConfig("echo started; sleep 30 & sleep 30", timeout_s=0.5))
    result = runner.run(tmp_path)
    assert result.timed_out and not result.passed and "started" in result.output
    assert result.seconds < 10 and "killed" in result.output


# ============================================================================ not a git repository
def test_headless_outside_git_runs_read_only_and_says_how_to_change_that(tmp_path, capsys):
    project = tmp_path / "plain"
    code, out = run_cli(["run", "--epic", "Add a flag", "--project", str(project), "--provider", "mock",
                         "--auto"], capsys)
    assert code == 0, out
    assert "is not a git repository" in out and "--git-init" in out
    assert not (project / "mma_mock").exists() and not (project / ".git").exists()
    assert "tool write_file" not in out                     # write tools were not even offered


def test_git_init_flag_makes_a_repository_with_a_first_commit_then_works_on_a_branch(tmp_path, capsys):
    project = tmp_path / "plain"
    project.mkdir()
    (project / "notes.txt").write_text("keep me\n")
    (project / "debug.log").write_text("noise\n")
    (project / ".gitignore").write_text("*.log\n")
    code, out = run_cli(["run", "--epic", "Add a flag", "--project", str(project), "--provider", "mock",
                         "--auto", "--git-init"], capsys)
    assert code == 0, out
    assert "Made" in out and "git repository" in out
    first = git(project, "rev-list", "--max-parents=0", "HEAD")
    assert set(git(project, "ls-tree", "-r", "--name-only", first).split()) == {".gitignore", "notes.txt"}
    branch = f"mma/{only_track(project).name}"
    assert "mma_mock/shared.md" in branch_files(project, branch)


def test_init_refuses_a_folder_inside_a_repository(tmp_path):
    project = make_repo(tmp_path / "proj")
    (project / "sub").mkdir()
    with pytest.raises(ValueError, match="already inside a git repository"):
        track_git.init_repository(project / "sub")


# ============================================================================ hostile or odd input
def test_ids_that_are_not_ref_names_still_get_distinct_branches():
    names = {track_git.ref_safe(x) for x in ("a:b", "a_b", "a..b", "x.lock", ".hidden", "1.1")}
    assert len(names) == 6 and "1.1" in names
    for name in names:
        assert subprocess.run(["git", "check-ref-format", f"refs/heads/mma/{name}"]).returncode == 0


def test_a_worker_that_rewrites_its_worktree_git_file_cannot_redirect_the_commit(tmp_path):
    project = make_repo(tmp_path / "proj", qa_command=None)
    decoy = make_repo(tmp_path / "decoy", qa_command=None)
    from track_workspace import LandingKind, TrackWorkspace
    ws = TrackWorkspace.for_project(project, "trk")
    ws.open()
    place = ws.prepare("T1")
    (tmp_path / "decoy" / ".git").exists()
    with open(f"{place.base_dir}/.git", "w") as fh:         # what a hostile write_file could do
        fh.write(f"gitdir: {decoy / '.git'}\n")
    with open(f"{place.base_dir}/new.txt", "w") as fh:
        fh.write("x\n")
    landing = ws.land("T1", "add new.txt", "mock-model")
    ws.close()
    assert landing.kind is LandingKind.COMMITTED
    assert "new.txt" in branch_files(project, "mma/trk")
    assert git(decoy, "branch", "--list", "mma*") == ""
    assert len(worktrees(project)) == 1


def test_a_project_in_a_subfolder_of_the_repository_works_in_that_subfolder(tmp_path, capsys):
    repo = make_repo(tmp_path / "mono", qa_command=None)
    project = repo / "service"
    project.mkdir()
    (project / "main.py").write_text("x = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "service")
    code, out = run_cli(["run", "--epic", "Add a flag", "--project", str(project), "--provider", "mock",
                         "--auto"], capsys)
    assert code == 0, out
    files = branch_files(repo, f"mma/{only_track(project).name}")
    assert "service/mma_mock/T1.md" in files and "mma_mock/T1.md" not in files


# ============================================================================ kill -9, then resume
def test_kill_9_mid_track_then_resume_prunes_worktrees_and_never_redoes_a_commit(tmp_path):
    import os
    import signal
    import sys
    import time

    from tests.test_crash_resume import worker_requests
    repo_root = Path(__file__).resolve().parents[1]
    project = make_repo(tmp_path / "proj")
    base = git(project, "rev-parse", "HEAD")
    env = {**os.environ, "MMA_MOCK_CHUNK_DELAY": "0.03"}
    proc = subprocess.Popen([sys.executable, "cli.py", "run", "--epic", "Add a version flag", "--project",
                             str(project), "--provider", "mock", "--auto", "--max-workers", "1"],
                            cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:                 # the test driver watches the files the run writes
            found = list(project.glob("conductor/tracks/*/state.json"))
            if found:
                tickets = json.loads(found[0].read_text())["tickets"]
                if any(t["status"] == "completed" for t in tickets) and \
                        any(t["status"] == "in_progress" for t in tickets) and len(worktrees(project)) > 1:
                    break
            time.sleep(0.02)
        else:
            raise AssertionError("no ticket completed while another ran within 60 s")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    folder = found[0].parent
    branch = f"mma/{folder.name}"
    state = json.loads(found[0].read_text())
    assert len(worktrees(project)) > 1                       # the kill left worktrees behind
    landed_before = git(project, "log", "--reverse", "--format=%H", f"{base}..{branch}").split()
    done_before = {t["id"] for t in state["tickets"] if t["status"] == "completed"}
    on_branch_before = set(ticket_commits(project, base, branch))
    assert done_before <= on_branch_before
    requests_before = worker_requests(project)

    resumed = subprocess.run([sys.executable, "cli.py", "resume", folder.name, "--project", str(project),
                              "--provider", "mock", "--auto"], cwd=repo_root, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "worktree(s) left by an earlier run" in resumed.stdout
    assert len(worktrees(project)) == 1
    final = json.loads(found[0].read_text())
    assert {t["status"] for t in final["tickets"]} == {"completed"}
    order = ticket_commits(project, base, branch)
    assert sorted(order) == ["T1", "T2", "T3", "T4"]                 # one commit per ticket, none twice
    after = git(project, "log", "--reverse", "--format=%H", f"{base}..{branch}").split()
    assert after[:len(landed_before)] == landed_before               # completed commits not redone
    rerun = {label.split(": ")[1] for label in worker_requests(project)[len(requests_before):]}
    assert rerun == {"T1", "T2", "T3", "T4"} - on_branch_before


def test_abort_during_qa_kills_it_undoes_the_merge_and_resume_reruns_from_the_track_head(tmp_path):
    import asyncio
    import time

    from pipeline import Pipeline
    from run_settings import RunSettings
    project = make_repo(tmp_path / "proj", qa_command="sleep 60")
    base = git(project, "rev-parse", "HEAD")
    settings = RunSettings.for_provider("mock", auto_queue=True, tools_enabled=True)
    pipeline = Pipeline(project, settings)
    track = Track("trk", "Test track", tickets=diamond())

    async def abort_mid_qa():
        loop = asyncio.get_running_loop()
        pipeline.event_queue.bind(loop)
        engine = pipeline.engine_for(track)
        consumer = asyncio.create_task(approve_everything(pipeline.event_queue))
        run = asyncio.create_task(engine.run())
        deadline = time.monotonic() + 30
        while engine.workspace is None or engine.workspace.qa._proc is None:   # the test waits for QA to start
            assert time.monotonic() < deadline, "QA never started"
            await asyncio.sleep(0.02)
        started = time.monotonic()
        engine.abort()
        status = await run
        consumer.cancel()
        return engine, status, time.monotonic() - started
    engine, status, took = asyncio.run(abort_mid_qa())
    assert status == "aborted" and took < 10, (status, took)
    assert engine.dag.tickets["T1"].status == "todo" and not engine.dag.tickets["T1"].commit
    assert engine.workspace.qa_results[-1].cancelled
    assert git(project, "rev-parse", "mma/trk") == base            # nothing unverified reached the branch
    assert len(worktrees(project)) == 1

    (project / "mma_project.toml").write_text('provider = "mock"\n\n[qa]\ncommand = "true"\n')
    resumed = Pipeline(project, settings)

    async def resume():
        resumed.event_queue.bind(asyncio.get_running_loop())
        consumer = asyncio.create_task(approve_everything(resumed.event_queue))
        try:
            return await resumed.resume("trk")
        finally:
            consumer.cancel()
    assert asyncio.run(resume()) == "completed"
    assert sorted(ticket_commits(project, base, "mma/trk")) == ["T1", "T2", "T3", "T4"]
    assert len(worktrees(project)) == 1


# ============================================================================ the workspace itself
def test_what_a_commit_takes_gitignore_and_the_tracks_own_files(tmp_path):
    from track_workspace import LandingKind, TrackWorkspace
    project = make_repo(tmp_path / "proj", qa_command=None)
    (project / "conductor").mkdir()
    (project / "conductor" / "product.md").write_text("# Product\n")     # tracked by the user
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "conductor docs")
    ws = TrackWorkspace.for_project(project, "trk")
    ws.open()
    place = ws.prepare("T1")
    root = tmp_path / "proj" / ".git"
    assert place.base_dir.startswith(str(root)) and not place.read_only
    for rel, text in (("build.log", "ignored\n"), ("conductor/tracks/trk/state.json", "{}\n"),
                      ("conductor/product.md", "# Product\nedited\n"), ("src/new.py", "x = 1\n")):
        path = Path(place.base_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    landing = ws.land("T1", "write some files", "mock-model")
    assert landing.kind is LandingKind.COMMITTED
    files = set(git(project, "show", "--name-only", "--format=", landing.sha).split())
    assert files == {"conductor/product.md", "src/new.py"}
    # a ticket that changes nothing completes without a commit, and its branch goes
    ws.prepare("T2")
    nothing = ws.land("T2", "look around", "mock-model")
    assert nothing.kind is LandingKind.NO_CHANGE and not nothing.sha
    assert git(project, "branch", "--list", "mma-ticket/*") == ""
    ws.close()
    assert len(worktrees(project)) == 1


def test_start_up_prunes_worktrees_of_a_dead_run_and_spares_a_live_one(tmp_path):
    import sys

    from track_workspace import OWNER_FILE, TrackWorkspace, prune_abandoned
    project = make_repo(tmp_path / "proj", qa_command=None)
    live, dead = TrackWorkspace.for_project(project, "live"), TrackWorkspace.for_project(project, "dead")
    live.open()
    dead.open()
    dead.prepare("T1")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_root = dead.repo.worktree_root("dead")
    (dead_root / OWNER_FILE).write_text(gone.stdout)             # as if its process was killed
    assert len(worktrees(project)) == 4
    assert prune_abandoned(project) == 2
    assert len(worktrees(project)) == 2 and not dead_root.exists()
    assert live.repo.worktree_root("live").is_dir()
    live.close()
    assert prune_abandoned(project) == 0 and len(worktrees(project)) == 1


def test_a_ticket_that_changes_nothing_completes_without_a_commit(tmp_path):
    project = make_repo(tmp_path / "proj")
    base = git(project, "rev-parse", "HEAD")
    engine, _pipeline, _requests = run_track(project, diamond(T3="[tool] only looks around"))
    assert engine.final_status == "completed"
    assert engine.dag.tickets["T3"].commit == "" and engine.dag.tickets["T2"].commit
    assert ticket_commits(project, base, "mma/trk") == ["T1", "T2", "T4"]
    plan = (project / "conductor" / "tracks" / "trk" / "plan.md").read_text()
    t3_line = next(line for line in plan.splitlines() if "Task T3:" in line)
    assert t3_line.startswith("- [x]") and not t3_line.rstrip().endswith("]")
