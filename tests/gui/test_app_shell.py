"""The app shell: banner, error bar, main()/--max-frames, the hook interface, the frame drain."""
from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import threading
import time

import pytest

import events
from gui.layout import MOCK_BANNER
from tests.gui.helpers import make_app, run_gui, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_mock_banner_shows_when_no_key_is_set(xvfb_display, mock_env, tmp_path, artifacts_dir):
    app = make_app(tmp_path, provider=None)                       # no --provider, no key: the offline mock
    try:
        assert app.provider == "mock" and app.is_mock

        def test(ctx):
            from imgui_bundle.immapp import testing
            ctx.yield_(3)
            testing.capture(ctx, os.path.join(artifacts_dir, "app_shell_mock_banner.png"))
        run_gui(app, test)
        top = app.views["top_bar"]
        assert top["banner"] == MOCK_BANNER and top["frame"] >= 2
        assert "GEMINI_API_KEY" in MOCK_BANNER and top["error"] == ""
        assert app.get_state_snapshot()["is_mock"] is True
    finally:
        app.shutdown()


def test_engine_error_shows_in_the_error_bar(xvfb_display, mock_env, tmp_path, artifacts_dir):
    """Gemini without a key: Tier 1 fails on the engine thread; the bar shows it with its hint."""
    app = make_app(tmp_path, provider="gemini")
    seen = {}
    try:
        def test(ctx):
            from imgui_bundle.immapp import testing
            ctx.item_click("//MMA Dashboard/##epic")
            ctx.key_chars("Anything at all")
            ctx.item_click("//MMA Dashboard/Plan Epic")
            wait_until(ctx, lambda: app.views.get("top_bar", {}).get("error"), "the error bar")
            ctx.yield_(2)
            seen.update(app.views["top_bar"])
            testing.capture(ctx, os.path.join(artifacts_dir, "app_shell_error_bar.png"))
            ctx.item_click("//**/Dismiss##error")
            ctx.yield_(2)
            seen["after_dismiss"] = dict(app.views["top_bar"])
        run_gui(app, test)
        assert seen["banner"] == ""                                   # a real provider: no mock banner
        assert seen["error"].startswith("Tier 1 failed:") and "Gemini API key" in seen["error"]
        assert "GEMINI_API_KEY" in seen["hint"]
        assert seen["after_dismiss"]["error"] == ""
        assert app.mma.mma_status == "error" and app.mma.errors[-1]["source"] == "engine"
        assert len(app.mma.errors) == 1                               # reported once, not twice
    finally:
        app.shutdown()


def test_main_runs_max_frames_and_exits_zero(xvfb_display, mock_env, tmp_path):
    import gui_2
    assert gui_2.main(["--project", str(tmp_path / "p"), "--provider", "mock", "--max-frames", "30",
                       "--window-size", "640x480", "--no-ini"]) == 0
    # and as a script, the way `python gui_2.py` is started
    proc = subprocess.run([sys.executable, os.path.join(REPO, "gui_2.py"), "--project", str(tmp_path / "q"),
                           "--max-frames", "20", "--window-size", "640x480", "--no-ini"],
                          cwd=REPO, env={**os.environ, "DISPLAY": xvfb_display}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "http://127.0.0.1" not in proc.stdout + proc.stderr      # no hooks unless asked
    with pytest.raises(SystemExit):
        gui_2.main(["--window-size", "huge"])


def test_hook_api_drives_a_full_run(xvfb_display, mock_env, tmp_path):
    """--enable-test-hooks + --hook-port 0 + MMA_HOOK_TOKEN: the announced URL carries the chosen
    token and serves the App's hook interface."""
    from api_hooks import ApiHookClient
    from tests.visual_sim_mma_v2 import AppProcess
    token = "sim-token-0123456789abcdef"
    env = {**os.environ, "DISPLAY": xvfb_display, "MMA_HOOK_TOKEN": token}
    argv = [sys.executable, os.path.join(REPO, "gui_2.py"), "--project", str(tmp_path / "p"), "--enable-test-hooks",
            "--provider", "mock", "--hook-port", "0", "--window-size", "640x480", "--no-ini"]
    app = AppProcess(argv, env, str(tmp_path), "full_run").start()
    try:
        url = app.wait_url(60)
        assert url.endswith(f"/?token={token}"), url
        c = ApiHookClient(url, timeout=10)
        assert c.wait_for_server(30)
        c.set_value("mma_epic_input", "Add a --quiet flag")
        c.set_value("auto_approve", True)
        assert c.get_value("mma_epic_input") == "Add a --quiet flag"
        c.click("btn_mma_plan_epic")
        c.wait_for(lambda: c.get_state().get("tracks"), 30, message="tracks")
        c.click("btn_mma_accept_track")
        c.wait_for(lambda: c.get_mma_status()["mma_status"] == "completed", 60, message="the run to complete")
        status = c.get_mma_status()
        assert any(k.startswith("Tier 3 (Worker): ") and v for k, v in status["mma_streams"].items())
        assert all(status["mma_tier_usage"][t]["output"] > 0 for t in ("Tier 1", "Tier 2", "Tier 3"))
        perf = c.get_performance()
        assert perf["frame_count"] > 0 and "frame_time_ms_p99" in perf and "events_per_s" in perf
        c.click("btn_quit")
        assert app.wait_exit(30) == 0
    finally:
        app.stop()


def test_hook_actions_apply_on_the_gui_thread(xvfb_display, mock_env, tmp_path):
    app = make_app(tmp_path, provider=None)
    seen = {}
    try:
        # bad actions fail at once, without a frame
        for action, exc in (({"action": "nope"}, ValueError), ("not a dict", ValueError),
                            ({"action": "set_value", "field": "frame_count", "value": 1}, ValueError),
                            ({"action": "click", "item": "btn_unknown"}, ValueError)):
            with pytest.raises(exc):
                app.submit_action(action).result(0)
        with pytest.raises(ValueError):
            app.get_field("no_such_field")

        def test(ctx):
            gui_thread = threading.get_ident()
            f1 = app.submit_action({"action": "set_value", "field": "mma_epic_input", "value": "Hook epic"})
            f2 = app.submit_action({"action": "set_value", "field": "tier3_models", "value": "a, b"})
            f3 = app.submit_action({"action": "approve", "request_id": "spawn-X-1", "approved": True})
            f4 = app.submit_action({"action": "set_value", "field": "auto_approve", "value": "yes"})
            f5 = app.submit_action({"action": "click", "item": "btn_mma_pause"})
            f6 = app.submit_action({"action": "set_value", "field": "current_provider", "value": "anthropic"})
            assert not f1.done()                                  # queued for the next frame
            ctx.yield_(2)
            seen["results"] = [f.exception(0) or f.result(0) for f in (f1, f2, f3, f4, f5, f6)]
            seen["banner"] = app.views["top_bar"]["banner"]
            probe = app.engine_thread.submit(_read_pipeline(app))     # the engine loop's view
            wait_until(ctx, probe.done, "the engine loop")
            seen["pipeline"] = probe.result(0)
            seen["same_thread"] = threading.get_ident() == gui_thread
            seen["field"] = app.get_field("mma_epic_input")
        run_gui(app, test)
        r1, r2, r3, r4, r5, r6 = seen["results"]
        assert r6["ok"] and app.provider == "anthropic" and app.current_provider == "anthropic"
        assert app.tier3_models == "a, b" and seen["banner"] == ""   # customised models are kept
        assert seen["pipeline"] == ("anthropic", app.tier1_model)
        assert r1 == {"ok": True, "field": "mma_epic_input", "value": "Hook epic"}
        assert r2["ok"] and app.tier_models["Tier 3"] == ["a", "b"]
        assert isinstance(r3, KeyError)                           # unknown request id
        assert isinstance(r4, ValueError)                         # auto_approve needs a bool
        assert isinstance(r5, ValueError) and "no track is running" in str(r5)
        assert app.mma_epic_input == "Hook epic" and seen["field"] == "Hook epic"
        snap = app.get_state_snapshot()
        for key in ("mma_status", "active_tier", "active_track", "tickets", "tracks", "mma_streams",
                    "mma_tier_usage", "pending_approvals", "errors", "provider", "model", "epic",
                    "frame_count", "fps", "project_dir"):
            assert key in snap, key
        assert snap["epic"] == "Hook epic" and snap["frame_count"] > 0
        assert "discussion" in snap and "context_errors" in snap     # the context panels' state
    finally:
        app.shutdown()


async def _read_pipeline(app):
    return app.pipeline.provider, app.pipeline.settings.models.model_for("Tier 1")


def test_event_flood_is_drained_within_a_frame_budget(mock_env, tmp_path):
    """50k chunks from a worker thread: each drain stays near its budget; order is kept."""
    app = make_app(tmp_path, provider=None)
    try:
        n = 50_000

        def worker() -> None:
            for i in range(n):
                app.event_queue.put_threadsafe(events.MMA_STREAM, {"stream_id": "Tier 3 (Worker): T1",
                                                                   "text": f"{i},"})
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        deadline = time.monotonic() + 20
        while app.event_queue.qsize() and time.monotonic() < deadline:   # the pump forwards to the GUI
            time.sleep(0.01)
        assert app.event_queue.qsize() == 0
        drains, slowest = 0, 0.0
        while app.gui_queue_depth or app.mma.mma_streams.length("Tier 3 (Worker): T1") < len(
                "".join(f"{i}," for i in range(n))):
            start = time.perf_counter()
            applied = app.process_pending_gui_tasks(budget_ms=4.0)
            slowest = max(slowest, time.perf_counter() - start)
            drains += 1
            assert applied > 0 and drains < 10_000
            assert app.is_busy()                                   # frames keep coming while flooded
        assert drains > 1                                          # not all in one frame
        assert slowest < 0.05, f"one drain took {slowest * 1000:.1f} ms"
        assert app.mma.mma_streams["Tier 3 (Worker): T1"] == "".join(f"{i}," for i in range(n))
        assert app.stats.events_applied_total == n
    finally:
        app.shutdown()


def test_shutdown_cancels_open_approvals(mock_env, tmp_path):
    app = make_app(tmp_path, provider=None)
    fut: concurrent.futures.Future = concurrent.futures.Future()
    app.event_queue.put_threadsafe(events.MMA_SPAWN_APPROVAL, {"request_id": "spawn-T1-1", "ticket_id": "T1",
                                                                "kind": "spawn", "prompt": "p", "future": fut})
    deadline = time.monotonic() + 10
    while not app.mma.pending_approvals and time.monotonic() < deadline:
        app.process_pending_gui_tasks()
        time.sleep(0.01)
    assert "spawn-T1-1" in app.mma.pending_approvals
    app.shutdown()
    app.shutdown()                                                 # idempotent
    assert fut.cancelled()
    assert not app.engine_thread._thread.is_alive()


async def _pipeline_dir(app):
    return app.pipeline.project_dir


def test_pipeline_follows_a_project_opened_in_the_project_panel(mock_env, tmp_path):
    app = make_app(tmp_path, provider=None)
    try:
        other = tmp_path / "other"
        other.mkdir()
        app.mma.mma_status = "running"                    # as if a track were running
        assert app.ctx.open_project(other)
        app.frame_start()
        assert app.project_dir == (tmp_path / "project").resolve()   # deferred while running
        assert "stays on" in app.mma.latest_error["message"]
        app.mma.mma_status = "completed"
        app.frame_start()
        assert app.project_dir == other.resolve()
        assert app.engine_thread.submit(_pipeline_dir(app)).result(5) == other.resolve()
        app.frame_end()                                   # the snapshot is published at frame end
        assert app.get_state_snapshot()["project_dir"] == str(other.resolve())
    finally:
        app.shutdown()
