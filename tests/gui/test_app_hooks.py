"""The App's hook surface (gui/hook_actions.py): read-your-writes, screenshots, the comms log in
/api/session, and the context panel's buttons through `App.click`."""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import threading

import pytest
from PIL import Image

from api_hooks import ApiHookClient, HookServer
from gui.hook_actions import COMMS_IN_SNAPSHOT
from tests.gui.helpers import WINDOW, make_app, pump_frames, run_gui, wait_until


@pytest.fixture
def app(mock_env, tmp_path):
    the_app = make_app(tmp_path)
    yield the_app
    the_app.shutdown()


def test_a_waited_action_resolves_only_once_its_snapshot_is_published(app):
    fut = app.submit_action({"action": "set_value", "field": "mma_epic_input", "value": "Mine"})
    app.frame_start()                                   # applied here...
    assert app.mma_epic_input == "Mine" and not fut.done()
    assert app.get_field("mma_epic_input") == ""        # ...but not published yet
    app.frame_end()                                     # published, then resolved
    assert fut.result(0) == {"ok": True, "field": "mma_epic_input", "value": "Mine"}
    assert app.get_field("mma_epic_input") == "Mine"
    # a refusal found while applying is delivered after the publish too
    bad = app.submit_action({"action": "set_value", "field": "auto_approve", "value": "yes"})
    app.frame_start()
    assert not bad.done()
    app.frame_end()
    assert isinstance(bad.exception(0), ValueError)


def test_the_context_part_of_the_snapshot_is_fresh_after_an_action(app):
    (app.project_dir / "a.py").write_text("x = 1\n")
    app.frame_start()
    app.frame_end()                                     # the context part was just published...
    fut = app.submit_action({"action": "click", "item": "btn_add_file", "args": {"path": "a.py"}})
    app.frame_start()
    app.frame_end()                                     # ...yet the next one already has the file
    assert fut.result(0)["ok"] is True
    assert [f["path"] for f in app.get_field("files")] == ["a.py"]


def test_context_panel_buttons_click_through_the_app(app):
    (app.project_dir / "a.py").write_text("def f():\n    return 1\n")
    assert app.click("btn_add_file", {"path": "a.py", "mode": "skeleton"}) == {"item": "btn_add_file"}
    assert [(f.path, f.mode) for f in app.ctx.config.files] == [("a.py", "skeleton")]
    with pytest.raises(ValueError, match="already in the list"):
        app.click("btn_add_file", {"path": "a.py"})
    with pytest.raises(ValueError, match="no such file"):
        app.click("btn_add_file", {"path": "missing.py"})
    assert app.click("btn_remove_file", {"path": "a.py"})["item"] == "btn_remove_file"
    assert app.ctx.config.files == []
    app.click("btn_new_discussion", {"name": "review"})
    assert app.ctx.active_discussion == "review"
    assert app.click("btn_stop") == {"stopped": False}            # nothing streaming: not an error
    with pytest.raises(ValueError, match="message box is empty"):
        app.click("btn_send")


def test_screenshot_action_captures_the_rendered_window(xvfb_display, app, tmp_path, artifacts_dir):
    path = str(tmp_path / "app_hooks_screenshot.png")      # the temp folder: one of the two allowed
    for bad in ("relative.png", str(tmp_path / "x.jpg"), str(tmp_path / "no-such-dir" / "x.png"), 7):
        with pytest.raises(ValueError):
            app.submit_action({"action": "screenshot", "path": bad}).result(0)
    seen = {}

    def test(ctx):
        ctx.item_click("//MMA Dashboard/##epic")
        ctx.key_chars("SCREENSHOT EPIC")
        ctx.yield_(2)
        seen["frame"] = app.frame_count
        fut = app.submit_action({"action": "screenshot", "path": path})
        wait_until(ctx, fut.done, "the screenshot")
        seen["result"] = fut.result(0)
    run_gui(app, test)
    result = seen["result"]
    assert result["ok"] and result["path"] == os.path.realpath(path) and result["frame"] > seen["frame"]
    shutil.copyfile(path, os.path.join(artifacts_dir, "app_hooks_screenshot.png"))   # for people to look at
    with Image.open(path) as img:
        assert img.size == WINDOW == (result["width"], result["height"])
        pixels = img.convert("RGB")
        colors = pixels.getcolors(maxcolors=1 << 16)
        # The banner's yellow text (theme.BANNER_TEXT) is in the top rows: a real frame, right side up.
        top = pixels.crop((0, 0, WINDOW[0], 60)).getcolors(maxcolors=1 << 16)
    assert colors is None or len(colors) > 50, "the screenshot is nearly blank"
    assert any(r > 200 and g > 170 and b < 120 for _n, (r, g, b) in top), "no banner text at the top"


def test_screenshot_writes_only_under_the_project_or_the_temp_folder(app, tmp_path):
    """Whoever holds the hook token still cannot make the app write a PNG elsewhere: a folder
    outside both (the file system root), or a symlink in the temp folder that leads out."""
    (tmp_path / "way_out").symlink_to("/")
    for outside in ("/mma_desk_shot.png", str(tmp_path / "way_out" / "mma_desk_shot.png")):
        fut = app.submit_action({"action": "screenshot", "path": outside})
        with pytest.raises(ValueError, match="outside the allowed folders"):
            fut.result(0)
    assert not os.path.exists("/mma_desk_shot.png")
    inside = app.submit_action({"action": "screenshot", "path": str(app.project_dir / "shot.png")})
    app.frame_start()                      # accepted and queued for the next frame's capture
    assert app.hooks.pending and not inside.done()
    app.hooks.close()
    assert isinstance(inside.exception(0), concurrent.futures.CancelledError)


def test_comms_log_is_in_the_session_snapshot(app):
    total = COMMS_IN_SNAPSHOT + 50
    for i in range(total):
        app.comms_log.sink({"ts": 1000.0 + i, "direction": "IN" if i % 2 else "OUT",
                            "kind": "response" if i % 2 else "request", "provider": "mock", "model": "m",
                            "label": f"Tier 3 (Worker): T{i}", "payload": {
                                "text": "secret-free", "usage": {"input_tokens": i, "output_tokens": 2 * i}}})
    server = HookServer(app, port=0)
    server.start()
    try:
        app.frame_start()
        app.frame_end()
        session = ApiHookClient(server.url).get_session()
    finally:
        server.stop()
    assert session["comms_count"] == total
    log = session["comms_log"]
    assert len(log) == COMMS_IN_SNAPSHOT and log[-1]["label"] == f"Tier 3 (Worker): T{total - 1}"
    last = log[-1]
    assert set(last) == {"seq", "ts", "direction", "kind", "provider", "model", "label", "usage"}
    assert last["usage"] == {"input_tokens": total - 1, "output_tokens": 2 * (total - 1)}
    assert last["direction"] == "IN" and last["ts"] == 1000.0 + total - 1


def test_hook_actions_from_many_threads_all_land(app):
    """Submitted from 8 threads at once, each action is applied once and read back."""
    futures: list[concurrent.futures.Future] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        fut = app.submit_action({"action": "set_value", "field": "ai_input", "value": f"v{i}"})
        with lock:
            futures.append(fut)
    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pump_frames(app, lambda: all(f.done() for f in futures), "the actions")
    assert sorted(f.result(0)["value"] for f in futures) == sorted(f"v{i}" for i in range(8))
    assert app.get_field("ai_input") == app.ctx.ai_input
