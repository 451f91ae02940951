"""A day's work without surprises (issue 15): each fix proved by clicks on the real window.

Every test runs the real `gui_2.App` under the session Xvfb and drives it with the Dear
ImGui Test Engine (real clicks, real keys).  What a person would look at is saved as a
screenshot in test-artifacts/ (day_one_*.png).
"""
from __future__ import annotations

import os
import signal
import time

import pytest

import project as project_mod
from api_hooks import ApiHookClient
from gui import panel_approvals
from tests.gui.helpers import answer, make_app, run_gui, wait_until
from tests.gui.test_app_lifecycle import _start_app
from tests.gui.test_context_panels import _png, _type_into
from tests.gui.test_mma_gui import pending, ticket, type_epic_and_plan

WAIT_S = 30.0
# Frames measured while the build runs: ~50 ms each on an idle box, 100-150 ms with the two
# cores shared by other jobs (load 7), a rare 400-530 ms stall under that load.  Bounds with
# a generous margin, not a benchmark; a synchronous build spent all of its 5-15 s in one frame.
FRAME_BOUND_S = 1.0
MEDIAN_FRAME_BOUND_S = 0.25


# ================================================================== autosave across a restart
def test_curated_context_survives_quit_and_restart_without_pressing_save(xvfb_display, mock_env, tmp_path):
    """Files, screenshots, a discussion and the epic come back after File > Quit; nobody
    pressed Save.  Then the same after SIGTERM a moment after the last edit (hot exit)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text("def main():\n    return 1\n")
    (project / "shot.png").write_bytes(_png())
    first = make_app(tmp_path)
    seen = {}

    def test(ctx):
        from imgui_bundle import hello_imgui
        _type_into(ctx, "//Project/##new_file_path", "app.py")
        ctx.item_click("//Project/Add file")
        _type_into(ctx, "//Project/##screenshot_path", "shot.png")
        ctx.item_click("//Project/Add screenshot")
        hello_imgui.get_runner_params().docking_params.focus_dockable_window("Discussion")
        ctx.yield_(3)
        _type_into(ctx, "//Discussion/##ai_input", "Keep this question")
        wait_until(ctx, lambda: not first.ctx.context_stale, "the context to be measured")
        ctx.item_click("//Discussion/Send")
        wait_until(ctx, lambda: len(first.ctx.entries) == 2 and not first.ctx.busy, "the mock reply")
        _type_into(ctx, "//MMA Dashboard/##epic", "Add an export button")
        seen["unsaved_title"] = first.views.get("title", "")
        seen["quit_clicking"] = True
        ctx.set_ref("##MainMenuBar")
        ctx.menu_click("File/Quit")                       # the window closes within this click

    with pytest.raises(RuntimeError, match="exited before the test finished"):
        run_gui(first, test)
    first.shutdown()
    assert seen.get("quit_clicking") and first._quit_requested
    assert not (project / ".mma_desk" / "unsaved").exists()        # saved in place, no recovery file
    cfg = project_mod.load_project(project)
    assert [(f.path, f.mode) for f in cfg.files] == [("app.py", "full")]
    assert cfg.screenshots == ["shot.png"]
    assert [e.role for e in cfg.discussion()] == ["user", "assistant"]
    assert cfg.discussion()[0].content == "Keep this question"
    assert cfg.epic == "Add an export button"

    second = make_app(tmp_path)                          # the restart
    try:
        assert second.mma_epic_input == "Add an export button"
        assert [f.path for f in second.ctx.config.files] == ["app.py"]
        assert second.ctx.unsaved is False
    finally:
        second.shutdown()

    # SIGTERM right after an edit (well inside the autosave debounce): still saved.
    proc = _start_app(tmp_path, xvfb_display, "hot-exit")
    try:
        c = ApiHookClient(proc.wait_url(60), timeout=10)
        assert c.wait_for_server(30)
        c.set_value("mma_epic_input", "Epic typed just before the kill")
        c.click("btn_new_discussion", name="ideas")
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit(30) == 0, proc.tail()
    finally:
        proc.stop()
    cfg = project_mod.load_project(project)
    assert cfg.epic == "Epic typed just before the kill"
    assert "ideas" in cfg.discussions and cfg.active_discussion == "ideas"
    assert [f.path for f in cfg.files] == ["app.py"]


def test_quit_asks_when_the_project_file_cannot_take_the_changes(app, tmp_path):
    """A project file broken on disk (a half-done hand edit) is never overwritten silently:
    File > Quit asks; Cancel keeps the app open; Save anyway saves (keeping a copy) and quits."""
    path = app.project.path
    seen = {}

    def test(ctx):
        from imgui_bundle import hello_imgui
        path.write_text("this is = not [valid toml\n")           # someone's editor, mid-edit
        _type_into(ctx, "//MMA Dashboard/##epic", "Rescue me")
        wait_until(ctx, lambda: app.ctx.autosave.error, "the autosave to fail")
        assert path.read_text() == "this is = not [valid toml\n"   # not overwritten
        ctx.set_ref("##MainMenuBar")
        ctx.menu_click("File/Quit")
        ctx.yield_(3)
        assert app.quit_prompt and not hello_imgui.get_runner_params().app_shall_exit
        ctx.item_click("//$FOCUSED/Cancel")
        ctx.yield_(3)
        seen["still_open"] = not hello_imgui.get_runner_params().app_shall_exit
        ctx.set_ref("##MainMenuBar")
        ctx.menu_click("File/Quit")
        ctx.yield_(2)
        seen["saving_anyway"] = True
        ctx.item_click("//$FOCUSED/Save anyway")          # saves, then the window closes

    with pytest.raises(RuntimeError, match="exited before the test finished"):
        run_gui(app, test)
    assert seen["still_open"] and seen["saving_anyway"]
    assert project_mod.load_project(app.project_dir).epic == "Rescue me"
    assert list(app.project_dir.glob("mma_project.toml.broken-*")), "the broken file must be kept"


# ================================================================== Send and the token budget
def test_send_is_refused_over_the_model_window(app, artifacts_dir):
    """A context of ~1.3 M tokens against mock-model's 1 M window: Send does not go out, the
    dialog says why and offers no plain send; nothing reaches the provider or the discussion."""
    project = app.project_dir
    (project / "big").mkdir()
    for i in range(6):                                   # 6 x 900 KB of text = ~1.35 M tokens
        (project / "big" / f"blob{i}.txt").write_text(("lorem ipsum dolor sit amet " * 33 + "\n") * 1000)
    app.project.budgets.max_context_tokens = 50_000_000  # the project budget is no limit here
    seen = {}

    def test(ctx):
        from imgui_bundle import hello_imgui
        from imgui_bundle.immapp import testing
        _type_into(ctx, "//Project/##new_file_path", "big/*.txt")
        ctx.item_click("//Project/Add file")
        wait_until(ctx, lambda: not app.ctx.context_stale, "the context to be measured", 60)
        assert app.ctx.bundle.total_tokens > 1_000_000
        hello_imgui.get_runner_params().docking_params.focus_dockable_window("Discussion")
        ctx.yield_(3)
        _type_into(ctx, "//Discussion/##ai_input", "Summarise all of it")
        ctx.item_click("//Discussion/Send")
        wait_until(ctx, lambda: app.ctx.pending_send is not None and not app.ctx.pending_send.offer_pending,
                   "the send check and its trim plan", 60)
        check = app.ctx.pending_send
        seen["verdict"], seen["text"] = check.verdict, check.describe()
        ctx.yield_(3)
        testing.capture(ctx, os.path.join(artifacts_dir, "day_one_send_refused.png"))
        seen["send_anyway"] = ctx.item_exists("//$FOCUSED/Send anyway")
        ctx.item_click("//$FOCUSED/Cancel")
        ctx.yield_(2)

    run_gui(app, test)
    assert seen["verdict"] == "refuse"
    assert "over mock-model's context window of 1,000,000" in seen["text"] and "not sent" in seen["text"]
    assert seen["send_anyway"] is False
    assert not [r for r in app.comms_log.rows if r.kind == "request"], "nothing may go out"
    assert app.ctx.entries == [] and app.ctx.ai_input == "Summarise all of it"
    assert app.ctx.pending_send is None
    assert any("not sent" in e.message for e in app.ctx.errors)


def test_ctrl_enter_sends(app):
    def test(ctx):
        from imgui_bundle import hello_imgui, imgui
        hello_imgui.get_runner_params().docking_params.focus_dockable_window("Discussion")
        ctx.yield_(3)
        wait_until(ctx, lambda: not app.ctx.context_stale, "the context to be measured")
        _type_into(ctx, "//Discussion/##ai_input", "first line")
        ctx.key_press(imgui.Key.enter)                    # Enter: a new line, no send
        ctx.key_chars("second line")
        ctx.yield_(2)
        assert app.ctx.ai_input == "first line\nsecond line" and not app.ctx.entries
        ctx.key_press(imgui.Key.mod_ctrl | imgui.Key.enter)
        wait_until(ctx, lambda: len(app.ctx.entries) == 2 and not app.ctx.busy, "the reply")

    run_gui(app, test)
    assert [e.role for e in app.ctx.entries] == ["user", "assistant"]
    assert app.ctx.entries[0].content == "first line\nsecond line"
    assert app.ctx.ai_input == ""


# ================================================================== approvals cannot misfire
def test_a_double_click_on_approve_answers_exactly_one_request(app):
    seen = {}

    def test(ctx):
        track = type_epic_and_plan(ctx, app, "Add a --verbose flag to the CLI")
        ctx.item_click(f"//MMA Dashboard/tracks/Accept##{track['id']}")
        wait_until(ctx, lambda: pending(app, "spawn", "T1"), "the spawn approval for T1")
        answer(ctx, app, f"Approve##{pending(app, 'spawn', 'T1').request_id}")
        wait_until(ctx, lambda: pending(app, "spawn", "T2") and pending(app, "spawn", "T3"),
                   "spawn approvals for T2 and T3")
        first, second = list(app.mma.pending_approvals.values())[:2]
        view = app.views["approvals"]
        answered_before = view.answered
        wait_until(ctx, lambda: time.monotonic() >= view.guard_until, "the guard", 5)
        ctx.item_double_click(f"//Approvals/Approve##{first.request_id}")   # the list shifts up under it
        ctx.yield_(3)
        seen["answered"] = view.answered - answered_before
        seen["second_pending"] = second.request_id in app.mma.pending_approvals
        seen["first_pending"] = first.request_id in app.mma.pending_approvals
        ctx.item_click("//MMA Dashboard/Auto-approve")    # let the rest run

    run_gui(app, test)
    assert seen == {"answered": 1, "second_pending": True, "first_pending": False}


def test_approvals_show_the_time_left_before_they_time_out():
    assert panel_approvals.time_left(1000.0, 300.0, 1028.0) == "4:32 left"
    assert panel_approvals.time_left(1000.0, 300.0, 1301.0) == "timing out"


# ================================================================== the ticket table at 1280x800
def _run_to_tickets(ctx, app, epic: str) -> None:
    ctx.item_click("//MMA Dashboard/Auto-queue")          # off: Run buttons appear
    track = type_epic_and_plan(ctx, app, epic)
    ctx.item_click(f"//MMA Dashboard/tracks/Accept##{track['id']}")
    wait_until(ctx, lambda: app.mma.mma_status == "running" and len(app.mma.active_tickets) == 4, "the tickets")
    ctx.yield_(4)


@pytest.mark.parametrize("size", [(1280, 800), (1024, 700)], ids=["1280x800", "1024x700"])
def test_the_ticket_table_shows_every_description_and_run_button(app, artifacts_dir, size):
    seen = {}

    def test(ctx):
        from imgui_bundle.immapp import testing
        _run_to_tickets(ctx, app, "Add a health check endpoint")
        view = app.views["dashboard"]
        seen["dashboard_width"] = view.window_width
        seen["descriptions"] = dict(view.descriptions)
        window = ctx.window_info("//MMA Dashboard").window
        right = window.pos.x + window.size.x
        seen["run_buttons"] = {}
        for t in app.mma.active_tickets:
            info = ctx.item_info(f"//MMA Dashboard/tickets/Run##{t['id']}")
            seen["run_buttons"][t["id"]] = (info.id_ != 0, info.rect_full.max.x <= right + 1)
        testing.capture(ctx, os.path.join(artifacts_dir, f"day_one_main_{size[0]}x{size[1]}.png"))
        ctx.item_click("//MMA Dashboard/Abort")
        ctx.item_click("//$FOCUSED/Abort track")
        wait_until(ctx, lambda: app.mma.mma_status == "aborted", "the abort")

    run_gui(app, test, window=size)
    assert seen["dashboard_width"] >= 360, seen["dashboard_width"]
    tickets = {t["id"]: " ".join(t["description"].split()) for t in app.mma.active_tickets}
    assert set(seen["descriptions"]) == set(tickets)
    for tid, drawn in seen["descriptions"].items():
        assert drawn["text"] == tickets[tid]
        assert drawn["x1"] <= drawn["window_x1"], (tid, drawn)          # inside the window, no h-scroll
        assert drawn["width"] >= 150, (tid, drawn)                       # room to read it
        shown = drawn["shown"].removesuffix("...")
        assert len(shown) >= min(20, len(tickets[tid])) and tickets[tid].startswith(shown), (tid, drawn)
    if size == (1280, 800):
        assert all(d["shown"] == tickets[t] for t, d in seen["descriptions"].items()), seen["descriptions"]
    assert all(found and visible for found, visible in seen["run_buttons"].values()), seen["run_buttons"]


# ================================================================== pause after completion
def test_pause_does_not_stay_on_after_the_track_completes(app):
    seen = {}

    def test(ctx):
        from imgui_bundle import imgui
        track = type_epic_and_plan(ctx, app, "Tidy the logging setup")
        ctx.item_click(f"//MMA Dashboard/tracks/Accept##{track['id']}")
        for tid in ("T1", "T2", "T3"):
            wait_until(ctx, lambda t=tid: pending(app, "spawn", t), f"the spawn approval for {tid}")
            answer(ctx, app, f"Approve##{pending(app, 'spawn', tid).request_id}")
        wait_until(ctx, lambda: pending(app, "spawn", "T4"), "the spawn approval for T4")
        engine = app.active_engine
        ctx.item_click("//MMA Dashboard/Pause")           # paused while the last ticket waits
        wait_until(ctx, lambda: engine.execution.paused, "the engine to pause")
        assert app.engine_paused
        answer(ctx, app, f"Approve##{pending(app, 'spawn', 'T4').request_id}")
        wait_until(ctx, lambda: app.mma.mma_status == "completed", "the track to complete")
        ctx.yield_(3)
        seen["engine_paused_flag"] = engine.execution.paused
        seen["shown_paused"] = app.engine_paused
        pause = ctx.item_info("//MMA Dashboard/Pause")
        seen["pause_drawn"] = pause.id_ != 0
        seen["pause_disabled"] = bool(pause.item_flags & imgui.ItemFlags_.disabled)
        seen["resume_drawn"] = ctx.item_info("//MMA Dashboard/Resume").id_ != 0 \
            if ctx.item_exists("//MMA Dashboard/Resume") else False

    run_gui(app, test)
    assert seen["engine_paused_flag"] is True            # the engine's flag was left set...
    assert seen["shown_paused"] is False                 # ...but a finished track is not "paused"
    assert seen["pause_drawn"] and seen["pause_disabled"] and not seen["resume_drawn"]
    assert all(t["status"] == "completed" for t in app.mma.active_tickets)


# ================================================================== Tier 4 stream ends
def test_the_tier4_stream_ends_and_renders_as_markdown(app):
    seen = {}

    def test(ctx):
        ctx.item_click("//MMA Dashboard/Auto-approve")
        track = type_epic_and_plan(ctx, app, "Refactor the parser [hard]")
        ctx.item_click(f"//MMA Dashboard/tracks/Accept##{track['id']}")
        wait_until(ctx, lambda: app.mma.mma_status in ("completed", "blocked"), "the run to end", 60)
        sids = [s for s in app.mma.mma_streams if s.startswith("Tier 4 (QA)")]
        seen["sids"] = sids
        seen["status"] = {s: app.mma.mma_streams.status.get(s) for s in sids}
        for sid in sids:
            ctx.item_click(f"//Tier Streams/##streams/{sid}")
            ctx.yield_(3)
            seen.setdefault("markdown_ok", []).append(app.views["streams"].markdown.get(sid, True))

    run_gui(app, test)
    assert seen["sids"], "the [hard] ticket must have been diagnosed"
    assert all(s.startswith("Tier 4 (QA): T") for s in seen["sids"])
    assert set(seen["status"].values()) == {"done"}, seen["status"]
    hard = next(t for t in app.mma.active_tickets if "[hard]" in t["description"])
    assert ticket(app, hard["id"])["diagnosis"]
    assert app.mma.mma_streams[f"Tier 4 (QA): {hard['id']}"].strip()
    assert all(seen["markdown_ok"])


# ================================================================== Comms: Clear asks first
def test_comms_clear_asks_first_and_is_not_the_filter_reset(app):
    seen = {}

    def test(ctx):
        from imgui_bundle import hello_imgui, imgui
        rp = hello_imgui.get_runner_params()
        rp.docking_params.focus_dockable_window("Discussion")
        ctx.yield_(3)
        wait_until(ctx, lambda: not app.ctx.context_stale, "the context to be measured")
        _type_into(ctx, "//Discussion/##ai_input", "hello")
        ctx.item_click("//Discussion/Send")
        wait_until(ctx, lambda: len(app.comms_log.rows) >= 2 and not app.ctx.busy, "the comms rows")
        rp.docking_params.focus_dockable_window("Comms")
        ctx.yield_(3)
        rows = len(app.comms_log.rows)
        _type_into(ctx, "//Comms/##comms_filter", "no-such-word")
        ctx.yield_(2)
        assert app.comms_log.visible() == [] and len(app.comms_log.rows) == rows
        ctx.item_click("//Comms/Show all##comms")         # the warning's way back
        ctx.yield_(2)
        assert app.comms_log.filter_text == "" and len(app.comms_log.visible()) == rows
        ctx.item_click("//Comms/Clear log##comms")
        ctx.yield_(2)
        seen["after_first_click"] = len(app.comms_log.rows)
        ctx.item_click("//$FOCUSED/Cancel")
        ctx.yield_(2)
        seen["after_cancel"] = len(app.comms_log.rows)
        ctx.item_click("//Comms/Clear log##comms")
        ctx.yield_(2)
        ctx.key_press(imgui.Key.escape)                   # Escape closes it like Cancel
        ctx.yield_(2)
        seen["after_escape"] = len(app.comms_log.rows)
        seen["open_after_escape"] = imgui.is_popup_open("Clear the comms log?", imgui.PopupFlags_.any_popup_id)
        ctx.item_click("//Comms/Clear log##comms")
        ctx.yield_(2)
        ctx.item_click("//$FOCUSED/Clear log")
        ctx.yield_(2)
        seen["rows"] = rows
        seen["after_confirm"] = len(app.comms_log.rows)

    run_gui(app, test)
    assert seen["after_first_click"] == seen["rows"] == seen["after_cancel"] == seen["after_escape"] > 0
    assert seen["open_after_escape"] is False
    assert seen["after_confirm"] == 0


def test_ctrl_q_quits_and_nothing_is_lost(app):
    def test(ctx):
        from imgui_bundle import imgui
        _type_into(ctx, "//MMA Dashboard/##epic", "Typed right before Ctrl+Q")
        ctx.key_press(imgui.Key.mod_ctrl | imgui.Key.q)   # the window closes within this press

    with pytest.raises(RuntimeError, match="exited before the test finished"):
        run_gui(app, test)
    app.shutdown()
    assert app._quit_requested
    assert project_mod.load_project(app.project_dir).epic == "Typed right before Ctrl+Q"


# ================================================================== large globs keep frames coming
def test_a_large_glob_is_measured_without_blocking_frames(app, artifacts_dir):
    """3,000 Python files behind `**/*`: the build runs on the builder thread; every frame
    while it runs stays short (the old synchronous build took the whole build time in one frame)."""
    project = app.project_dir
    body = "".join(f"def f{i}(x):\n    '''doc'''\n    return x * {i}\n\n" for i in range(30))
    for d in range(30):
        folder = project / "pkg" / f"m{d}"
        folder.mkdir(parents=True)
        for i in range(100):
            (folder / f"mod{i}.py").write_text(body)
    (project / "conductor").mkdir()
    (project / "conductor" / "tracks.md").write_text("# tracks\n")
    seen = {"frames": []}

    def test(ctx):
        from imgui_bundle import hello_imgui
        from imgui_bundle.immapp import testing
        _type_into(ctx, "//Project/##new_file_path", "**/*")
        ctx.item_click("//Project/Add file")
        start = time.perf_counter()
        last = start
        progress_seen = False
        while time.perf_counter() - start < 120:
            ctx.yield_()
            now = time.perf_counter()
            if app.ctx.building:
                seen["frames"].append(now - last)
                progress_seen = progress_seen or bool(app.ctx.build_progress and app.ctx.build_progress[1])
            last = now
            if not app.ctx.context_stale:
                break
        seen["build_s"] = time.perf_counter() - start
        seen["progress_seen"] = progress_seen
        hello_imgui.get_runner_params().docking_params.focus_dockable_window("Budget")
        ctx.yield_(3)
        testing.capture(ctx, os.path.join(artifacts_dir, "day_one_large_glob.png"))

    run_gui(app, test)
    frames = seen["frames"]
    assert len(frames) >= 5, f"the build finished in {seen['build_s']:.2f}s, too fast to observe"
    ms = sorted(round(f * 1000) for f in frames)
    # Frames stay at their usual time (~50 ms here, more on a loaded box); the bound is generous
    # for a shared 2-core CI machine, and far below the build itself, which a synchronous build
    # spent in one frame.
    assert max(frames) < FRAME_BOUND_S, f"slowest frame {max(frames) * 1000:.0f} ms while building; all (ms): {ms}"
    assert ms[len(ms) // 2] < MEDIAN_FRAME_BOUND_S * 1000, ms
    assert seen["build_s"] > 4 * max(frames), (seen["build_s"], ms)
    assert seen["progress_seen"]
    row = app.ctx.file_rows[0]
    assert row.n_files == 3000                          # conductor/ is not part of `**/*`
    assert not any(m.startswith("conductor/") for m in row.matches)


# ================================================================== file picker and preview
def test_the_file_picker_adds_files_and_folders_and_previews_each_mode(app, artifacts_dir):
    project = app.project_dir
    (project / "src" / "pkg").mkdir(parents=True)
    (project / "src" / "app.py").write_text('"""App."""\n\n\ndef main():\n    """Run."""\n    return 1 + 1\n')
    (project / "src" / "pkg" / "util.py").write_text("def helper(x):\n    return x * 2\n")
    (project / "README.md").write_text("# Demo\n")
    seen = {}

    def test(ctx):
        from imgui_bundle.immapp import testing
        ctx.item_click("//Project/Browse##files")
        ctx.yield_(2)
        ctx.set_ref(ctx.window_info("//Project/##picker").window)
        ctx.item_click("##pick:README.md")                 # a file: checked = in the context
        ctx.item_click("##pick_dir:src")                   # a folder: its glob
        wait_until(ctx, lambda: not app.ctx.context_stale, "the context to be measured")
        seen["files"] = [(f.path, f.mode) for f in app.ctx.config.files]
        ctx.item_open("src##dir:src")
        ctx.yield_(2)
        info = ctx.item_info("src##dir:src/##pick:src|app.py")
        seen["app_py_disabled"] = bool(info.item_flags & __import__("imgui_bundle").imgui.ItemFlags_.disabled)
        ctx.item_click("src##dir:src/app.py##name:src|app.py")   # preview
        ctx.set_ref("//Project")
        tokens = {}
        for mode in ("full", "skeleton", "outline"):
            app.ctx.inputs.preview_mode = mode
            wait_until(ctx, lambda m=mode: app.ctx.previews.get(("src/app.py", m)), f"the {mode} preview")
            tokens[mode] = app.ctx.previews[("src/app.py", mode)].tokens
        seen["tokens"] = tokens
        app.ctx.inputs.preview_mode = "skeleton"
        ctx.yield_(3)
        testing.capture(ctx, os.path.join(artifacts_dir, "day_one_file_picker.png"))
        _type_into(ctx, "//Project/##picker_filter", "util")
        ctx.yield_(2)
        seen["filtered"] = app.ctx.file_tree.matches("util")

    run_gui(app, test)
    assert seen["files"] == [("README.md", "full"), ("src/**/*", "full")]
    assert seen["app_py_disabled"] is True                  # brought in by the glob
    assert seen["tokens"]["full"] > seen["tokens"]["skeleton"] > 0 and seen["tokens"]["outline"] > 0
    assert seen["filtered"] == ["src/pkg/util.py"]


# ================================================================== old state is cleared (no window)
def test_errors_expire_or_leave_with_the_next_run():
    from gui import mma_state
    mma = mma_state.MMAState()
    e = mma.add_error("the epic is empty: describe what you want built", source="gui")
    assert mma.latest_error is e
    e["ts"] -= mma_state.GUI_ERROR_TTL_S + 1                  # the user moved on
    assert mma.latest_error is None
    engine_error = mma.add_error("Tier 1 failed: timeout", source="engine")
    engine_error["ts"] -= 3600                                # engine errors do not expire...
    assert mma.latest_error is engine_error
    mma.new_run("plan")                                       # ...but a new run clears the bar
    assert mma.latest_error is None and len(mma.errors) == 2  # still in the history


def test_streams_are_grouped_per_track_and_a_project_switch_resets_the_view():
    from gui.mma_state import MMAState
    mma = MMAState()
    mma.apply("mma_stream", {"stream_id": "Tier 1", "text": "plan"})
    mma.start_track("t_one", "Track one")
    mma.apply("mma_stream", {"stream_id": "Tier 3 (Worker): T1", "text": "first track's T1"})
    mma.apply("response", {"stream_id": "Tier 3 (Worker): T1", "text": "first done", "status": "done"})
    mma.start_track("t_two", "Track two")
    assert "Tier 3 (Worker): T1" not in mma.mma_streams and "Tier 1" in mma.mma_streams
    mma.apply("mma_stream", {"stream_id": "Tier 3 (Worker): T1", "text": "second track's T1"})
    assert mma.mma_streams["Tier 3 (Worker): T1"] == "second track's T1"       # not mixed
    [old] = mma.stream_groups
    assert old.label == "Track one" and old.texts == {"Tier 3 (Worker): T1": "first done"}
    assert old.status == {"Tier 3 (Worker): T1": "done"}
    mma.add_error("old project's error", source="engine")
    mma.reset_view()
    assert (mma.mma_streams.to_dict(), mma.stream_groups, mma.active_track, mma.active_tickets,
            mma.latest_error, mma.mma_status) == ({}, [], None, [], None, "idle")


def test_the_time_column_shows_running_and_waiting_apart():
    from gui.mma_display import ticket_run_and_wait
    t = {"status": "completed", "started_at": 100.0, "finished_at": 125.0}
    assert ticket_run_and_wait(t, [(100.2, 124.7)], 200.0) == ("0.5 s", "24.5 s")
    assert ticket_run_and_wait(t, None, 200.0) == ("25.0 s", "")
    live = {"status": "in_progress", "started_at": 100.0, "finished_at": None}
    assert ticket_run_and_wait(live, [(100.0, None)], 103.0) == ("0.0 s ...", "3.0 s")
    assert ticket_run_and_wait({"status": "todo"}, None, 1.0) == ("-", "")


def test_unknown_model_names_are_flagged_against_the_catalog():
    from gui.panel_mma_dashboard import unknown_models
    assert unknown_models("gemini-2.5-flash, gemini-2.5-flahs", "gemini") == ["gemini-2.5-flahs"]
    assert unknown_models("claude-sonnet-4-5", "gemini") == ["claude-sonnet-4-5"]   # other provider
    assert unknown_models("mock-model", "mock") == []


def test_the_app_font_has_cjk_and_emoji_glyphs(app, artifacts_dir):
    seen = {}

    def test(ctx):
        from imgui_bundle import imgui
        from imgui_bundle.immapp import testing
        font = imgui.get_font()
        seen["glyphs"] = {ch: font.is_glyph_in_font(ord(ch)) for ch in "A你こ한🚀"}
        app.mma_epic_input = "Unicode: 你好, こんにちは, 안녕하세요 🚀✨"
        ctx.yield_(4)
        testing.capture(ctx, os.path.join(artifacts_dir, "day_one_cjk_emoji.png"), window="MMA Dashboard")

    run_gui(app, test)
    assert all(seen["glyphs"].values()), seen["glyphs"]


def test_a_resumed_track_says_which_context_it_runs_with(app, tmp_path):
    """Resume uses the context saved with the track (conductor/tracks/<id>/context.md)."""
    from pipeline import track_context_path
    seen = {}

    def test(ctx):
        (app.project_dir / "notes.md").write_text("# Planned context\n")
        _type_into(ctx, "//Project/##new_file_path", "notes.md")
        ctx.item_click("//Project/Add file")
        wait_until(ctx, lambda: not app.ctx.context_stale, "the context")
        track = type_epic_and_plan(ctx, app, "Add a --quiet flag")
        ctx.item_click(f"//MMA Dashboard/tracks/Accept##{track['id']}")
        wait_until(ctx, lambda: pending(app, "spawn", "T1"), "the spawn approval for T1")
        answer(ctx, app, f"Approve##{pending(app, 'spawn', 'T1').request_id}")
        wait_until(ctx, lambda: (app.mma.ticket("T1") or {}).get("status") == "completed", "T1", 60)
        ctx.item_click("//MMA Dashboard/Abort")
        ctx.item_click("//$FOCUSED/Abort track")
        wait_until(ctx, lambda: app.mma.mma_status == "aborted", "the abort")
        wait_until(ctx, lambda: not app.futures_in_flight, "the run to end")
        seen["track"] = track["id"]
        ctx.item_click("//Project/files_table/x##file_0")   # the context changes after planning
        wait_until(ctx, lambda: not app.ctx.context_stale, "the context")
        app.refresh_saved_tracks()
        ctx.item_click("//MMA Dashboard/Auto-approve")
        ctx.yield_(2)
        ctx.item_click(f"//MMA Dashboard/saved_tracks/Resume##{track['id']}")
        ctx.yield_(2)
        seen["notice"] = app.mma.notice
        wait_until(ctx, lambda: app.mma.mma_status in ("completed", "blocked"), "the resumed run", 60)

    run_gui(app, test)
    saved = track_context_path(app.project_dir, seen["track"])
    assert "# Planned context" in saved.read_text()
    assert seen["notice"].startswith("Resumed with the context the track was planned with")
    assert "# Planned context" in app.pipeline.md_content           # what the resumed workers got...
    assert "# Planned context" not in app.ctx.bundle.markdown        # ...not the changed current context


def test_opening_another_project_shows_its_epic_and_saves_the_old_one(mock_env, tmp_path):
    from tests.gui.helpers import pump_frames
    other = tmp_path / "other"
    other.mkdir()
    (other / "mma_project.toml").write_text('epic = "The other epic"\n')
    app = make_app(tmp_path)
    try:
        app.mma_epic_input = "This project's epic"
        app.frame_start()
        app.frame_end()
        assert app.ctx.open_project(other)                  # saves this project first
        pump_frames(app, lambda: app.project_dir == other.resolve(), "the switch")
        app.frame_start()
        app.frame_end()
        assert app.mma_epic_input == "The other epic"
        assert project_mod.load_project(tmp_path / "project").epic == "This project's epic"
        assert project_mod.load_project(other).epic == "The other epic"
    finally:
        app.shutdown()


def test_a_saved_layout_that_squeezes_the_dashboard_is_put_back(mock_env, xvfb_display, tmp_path, artifacts_dir):
    """A layout saved on a large screen (left panel 900 px, dashboard 300 px) opened at 1024x700
    squeezed the dashboard to a sliver; the app restores the default split instead."""
    from imgui_bundle import hello_imgui
    from imgui_bundle.immapp import testing
    ini = tmp_path / "mma_desk.ini"
    seen: dict = {}

    def run(size, label: str) -> None:
        app = make_app(tmp_path)
        try:
            def test(ctx):
                ctx.yield_(30)
                seen[label] = {"dashboard": app.views["dashboard"].window_width,
                               "reset": app.views.get("layout_reset_for")}
                testing.capture(ctx, os.path.join(artifacts_dir, f"day_one_layout_{label}.png"))
            rp, addons = app.build_runner_params(size, ini_disable=False)
            rp.ini_folder_type = hello_imgui.IniFolderType.absolute_path
            rp.ini_filename = str(ini)
            testing.run(test_function=test, runner_params=rp, add_ons_params=addons)
        finally:
            app.shutdown()

    run((1280, 800), "first")
    text = ini.read_text()
    left = next(line for line in text.splitlines() if "DockNode" in line and "ID=0x00000001" in line)
    squeezed = text.replace(left, left.replace(left.split("SizeRef=")[1].split()[0], "2000,700"))
    assert squeezed != text
    ini.write_text(squeezed)
    run((1024, 700), "squeezed")
    assert seen["first"]["reset"] is None and seen["first"]["dashboard"] > 600
    assert seen["squeezed"]["reset"] == (1024, 700)
    assert seen["squeezed"]["dashboard"] >= 360, seen
