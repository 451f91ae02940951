"""The Changes window after a mock track on a real git repository: the diff shows, Apply merges it.

Also the question asked before a track starts on a checkout with uncommitted changes, and the
git init offer of a folder that is not a repository (App level, no window)."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.git_fixtures import git, make_repo, worktrees
from tests.gui.helpers import make_app, pump_frames, run_gui, wait_until

WAIT_S = 60.0


@pytest.fixture
def git_app(xvfb_display, mock_env, tmp_path):
    make_repo(tmp_path / "project")
    the_app = make_app(tmp_path)
    yield the_app
    the_app.shutdown()


def test_changes_window_shows_the_track_diff_and_apply_merges_it(git_app, artifacts_dir):
    app = git_app
    project = app.project_dir
    head_before = git(project, "rev-parse", "HEAD")
    seen = {}

    def test(ctx):
        from imgui_bundle import hello_imgui
        from imgui_bundle.immapp import testing
        ctx.item_click("//MMA Dashboard/##epic")
        ctx.key_chars("Add a notes feature")
        ctx.item_click("//MMA Dashboard/Auto-approve")           # spawns and file writes
        ctx.item_click("//MMA Dashboard/Plan Epic")
        wait_until(ctx, lambda: app.mma.tracks, "Tier 1 to propose tracks")
        track = app.mma.tracks[0]
        ctx.item_click(f"//MMA Dashboard/tracks/Accept##{track['id']}")
        wait_until(ctx, lambda: app.mma.mma_status in ("completed", "blocked", "aborted", "error"),
                   "the track to finish", WAIT_S)
        seen["status"] = app.mma.mma_status
        seen["notes"] = list(app.mma.logs)
        hello_imgui.get_runner_params().docking_params.focus_dockable_window("Changes")
        wait_until(ctx, lambda: app.changes.shown.get("diff_lines", 0) > 0 and app.changes.shown["commits"] == 4,
                   "the Changes window to show the track's diff", WAIT_S)
        data = app.changes.data
        seen["whole"] = data.diff
        seen["files"] = [f.path for f in data.files]
        seen["tickets"] = [c.ticket_id for c in data.commits]
        t2 = next(c for c in data.commits if c.ticket_id == "T2")
        ctx.item_click(f"//**/T2 {t2.short}##change-{t2.sha}")     # one ticket's commit
        wait_until(ctx, lambda: app.changes.data.selection == t2.sha and not app.changes.busy,
                   "T2's commit to load", WAIT_S)
        ctx.yield_(3)
        seen["t2_files"] = [f.path for f in app.changes.data.files]
        seen["t2_lines"] = app.changes.shown["diff_lines"]
        ctx.item_click("//**/All changes##change")
        wait_until(ctx, lambda: app.changes.data.selection == "all" and not app.changes.busy, "all changes", WAIT_S)
        ctx.yield_(3)
        testing.capture(ctx, os.path.join(artifacts_dir, "mma_changes.png"), window="Changes")
        testing.capture(ctx, os.path.join(artifacts_dir, "mma_changes_main.png"))
        assert git(project, "rev-parse", "HEAD") == head_before          # untouched until Apply
        ctx.item_click("//Changes/Apply##changes")
        wait_until(ctx, lambda: "fast-forwarded" in app.changes.status, "Apply to merge the track", WAIT_S)
        ctx.yield_(3)

    run_gui(app, test)
    assert seen["status"] == "completed"
    assert any("track branch mma/" in n for n in seen["notes"]) and any("QA" in n for n in seen["notes"])
    assert sorted(seen["tickets"]) == ["T1", "T2", "T3", "T4"]
    assert "+# T1" in seen["whole"] and "mma_mock/shared.md" in seen["files"]
    assert set(seen["t2_files"]) == {"mma_mock/T2.md", "mma_mock/shared.md"} and seen["t2_lines"] > 0
    assert (project / "mma_mock" / "T4.md").is_file()
    assert git(project, "rev-parse", "HEAD") != head_before
    assert git(project, "branch", "--list", "mma/*") == "" and len(worktrees(project)) == 1
    assert os.path.getsize(os.path.join(artifacts_dir, "mma_changes.png")) > 5000


def _plan(app, epic: str) -> str:
    app.mma_epic_input = epic
    app.plan_epic()
    pump_frames(app, lambda: app.mma.tracks, "Tier 1 to propose tracks")
    return str(app.mma.tracks[0]["id"])


def test_uncommitted_changes_ask_before_the_track_starts(mock_env, tmp_path):
    project = make_repo(tmp_path / "project")
    (project / "README.md").write_text("# demo\nedited, not committed\n")
    app = make_app(tmp_path, require_spawn_approval=False)
    app.set_auto_approve(True)                                   # the workers' file writes
    try:
        track_id = _plan(app, "Add a flag")
        answer = app.accept_track(track_id)
        assert answer == {"needs_answer": "uncommitted", "track_id": track_id}
        assert app.workspace_offer["files"] == ["README.md"] and app.mma.mma_status == "tracks_ready"
        assert app.click("btn_workspace_stop") == {"stopped": track_id}
        assert app.workspace_offer is None and "not started" in app.changes.status
        assert git(project, "branch", "--list", "mma/*") == ""
        with pytest.raises(ValueError, match="no question"):
            app.workspace_proceed()                              # a second answer to the same question
        app.accept_track(track_id)
        app.click("btn_workspace_proceed")                       # the Proceed from HEAD button
        pump_frames(app, lambda: app.mma.mma_status == "completed", "the track to run", WAIT_S)
        assert git(project, "show", f"mma/{track_id}:README.md") == "# demo"
        assert (project / "README.md").read_text() == "# demo\nedited, not committed\n"
        assert app.get_state_snapshot()["changes"]["track_id"] in ("", track_id)
    finally:
        app.shutdown()


def test_a_folder_outside_git_runs_read_only_and_offers_git_init(mock_env, tmp_path):
    app = make_app(tmp_path, require_spawn_approval=False)
    try:
        assert not app.is_git_project
        track_id = _plan(app, "Add a flag")
        app.accept_track(track_id)
        pump_frames(app, lambda: app.mma.mma_status == "completed", "the read-only track", WAIT_S)
        assert any("not a git repository" in n and "read-only" in n for n in app.mma.logs)
        assert not (app.project_dir / "mma_mock").exists()
        (app.project_dir / "notes.txt").write_text("hello\n")
        result = app.click("btn_workspace_git_init")
        assert result["head"] and app.is_git_project and "now a git repository" in app.changes.status
        committed = git(app.project_dir, "ls-tree", "-r", "--name-only", "HEAD").split()
        assert "notes.txt" in committed and not any(p.startswith(("conductor/", ".mma_desk/")) for p in committed)
        with pytest.raises(ValueError, match="already in a git repository"):
            app.workspace_git_init()
    finally:
        app.shutdown()
        shutil.rmtree(tmp_path / "project", ignore_errors=True)
