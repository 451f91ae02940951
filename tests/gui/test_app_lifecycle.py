"""Process-level behaviour of the app: quitting on SIGTERM/SIGINT, session logs, no secret on screen."""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import urllib.parse

import events
import project as project_mod
from api_hooks import ApiHookClient
from conductor_format.state import load_track_state
from gui.context_state import session_log_dir
from tests.gui.helpers import make_app, pump_frames, run_gui, wait_until
from tests.visual_sim_mma_v2 import AppProcess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _start_app(tmp_path, display: str, name: str, env_extra: dict | None = None) -> AppProcess:
    env = {**os.environ, "DISPLAY": display, **(env_extra or {})}
    argv = [sys.executable, os.path.join(REPO, "gui_2.py"), "--project", str(tmp_path / "project"),
            "--provider", "mock", "--enable-test-hooks", "--hook-port", "0", "--window-size", "640x480",
            "--no-ini"]
    return AppProcess(argv, env, str(tmp_path), name).start()


def _port_closed(url: str) -> bool:
    port = urllib.parse.urlsplit(url).port
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


# ==================================================================================== signals
def test_sigterm_mid_run_closes_cleanly_and_exits_zero(xvfb_display, mock_env, tmp_path):
    """Workers are streaming when SIGTERM arrives: the app aborts the track, saves its state,
    stops the engine thread and the hook server, and exits 0; the project files stay valid."""
    app = _start_app(tmp_path, xvfb_display, "sigterm", {"MMA_MOCK_CHUNK_DELAY": "0.05"})
    try:
        url = app.wait_url(60)
        c = ApiHookClient(url, timeout=10)
        assert c.wait_for_server(30)
        c.set_value("tier1_model", "sig-tier1-model")
        c.click("btn_save_project")
        c.set_value("auto_approve", True)
        c.set_value("mma_epic_input", "Add a --quiet flag to the CLI")
        c.click("btn_mma_plan_epic")
        c.wait_for(lambda: c.get_state().get("tracks"), 30, message="tracks")
        c.click("btn_mma_accept_track")
        c.wait_for(lambda: c.get_performance()["workers_busy"] >= 1, 30, message="a worker streaming")
        track_id = c.get_value("active_track_id")
        app.proc.send_signal(signal.SIGTERM)
        code = app.wait_exit(30)
    finally:
        app.stop()
    log = app.log_text()
    assert code == 0, f"exit code {code}\n{app.tail()}"
    for line in ("SIGTERM received: closing MMA Desk", "hook API on port", "engine thread stopped",
                 "MMA Desk closed"):
        assert line in log, f"{line!r} missing from the app's log:\n{app.tail()}"
    assert "Traceback" not in log, app.tail()
    assert _port_closed(url)
    cfg = project_mod.load_project(tmp_path / "project")          # raises on a damaged file
    assert cfg.models["Tier 1"] == "sig-tier1-model"
    track, _usage = load_track_state(tmp_path / "project", track_id)
    statuses = {t.id: t.status for t in track.tickets}
    assert statuses and "in_progress" not in statuses.values(), \
        f"an aborted run must leave no ticket in progress (resumable): {statuses}"


def test_sigint_closes_an_idle_app_and_exits_zero(xvfb_display, mock_env, tmp_path):
    app = _start_app(tmp_path, xvfb_display, "sigint")
    try:
        url = app.wait_url(60)
        assert ApiHookClient(url).wait_for_server(30)
        app.proc.send_signal(signal.SIGINT)
        code = app.wait_exit(30)
    finally:
        app.stop()
    assert code == 0, app.tail()
    assert "SIGINT received" in app.log_text() and "KeyboardInterrupt" not in app.log_text()
    assert _port_closed(url)


# ==================================================================================== session logs
def _jsonl(folder) -> list[dict]:
    entries = []
    for path in sorted(folder.glob("*.jsonl")):
        entries += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return entries


def test_chat_and_tiers_write_session_logs_into_the_project(mock_env, tmp_path):
    app = make_app(tmp_path)
    try:
        logs = session_log_dir(app.project_dir)
        assert logs == app.project_dir / ".mma_desk" / "logs"
        app.set_field("ai_input", "LOGME hello")
        app.click("btn_send")
        pump_frames(app, lambda: not app.ctx.busy, "the chat reply")
        chat = [e for e in _jsonl(logs) if e["label"] == "chat"]
        assert {e["direction"] for e in chat} == {"OUT", "IN"}
        assert any("LOGME hello" in json.dumps(e["payload"]) for e in chat)
        # another project opened in the Project panel: the chat and the tiers log there now
        other = tmp_path / "other"
        other.mkdir()
        assert app.ctx.open_project(other)
        app.mma_epic_input = "Add a notes feature"
        pump_frames(app, lambda: app.project_dir == other.resolve(), "the pipeline to follow")
        app.plan_epic()
        app.set_field("ai_input", "LOGME again")
        app.click("btn_send")
        pump_frames(app, lambda: app.mma.tracks and not app.ctx.busy, "tracks and the chat reply")
        moved = _jsonl(session_log_dir(other))
        assert any(e["label"] == "chat" and "LOGME again" in json.dumps(e["payload"]) for e in moved)
        assert any(e["label"] == "Tier 1" and e["direction"] == "IN" for e in moved)
        assert not any("LOGME again" in json.dumps(e["payload"]) for e in _jsonl(logs))
    finally:
        app.shutdown()


# ==================================================================================== secrets
PLANTED = "AIzaFAKE-gui-planted-123456789"


def test_a_planted_key_never_reaches_the_screen_the_snapshot_or_the_logs(
        xvfb_display, mock_env, monkeypatch, tmp_path, artifacts_dir):
    """Gemini with a key in the env, pointed at a dead loopback port: both the chat and Tier 1
    fail; no error shown, no snapshot field, no comms entry and no session log holds the key."""
    with socket.socket() as s:                     # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("GEMINI_API_KEY", PLANTED)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"http://127.0.0.1:{dead}")
    app = make_app(tmp_path, provider="gemini")
    shown: list[str] = []
    try:
        def test(ctx):
            from imgui_bundle.immapp import testing
            app.set_field("ai_input", "Hello there")
            app.click("btn_send")
            ctx.item_click("//MMA Dashboard/##epic")
            ctx.key_chars("Anything at all")
            ctx.item_click("//MMA Dashboard/Plan Epic")

            def failed() -> bool:
                top = app.views.get("top_bar", {})
                shown.extend([top.get("error", ""), top.get("hint", "")])
                return bool(top.get("error")) and not app.ctx.busy and app.mma.mma_status == "error"
            wait_until(ctx, failed, "both calls to fail", timeout=60)
            ctx.yield_(3)
            testing.capture(ctx, os.path.join(artifacts_dir, "app_secrets_error_bar.png"))
        run_gui(app, test)
        errors = [e["message"] + " " + e["hint"] for e in app.mma.errors]
        errors += [e.text() for e in app.ctx.errors]
        assert any("Tier 1" in e for e in errors) and any(e.startswith("gemini") for e in errors), errors
        snapshot = json.dumps(app.get_state_snapshot())
        comms = json.dumps([r.entry for r in app.comms_log.rows])
        logs = json.dumps(_jsonl(session_log_dir(app.project_dir)))
        for where, text in (("shown", "\n".join(shown)), ("errors", "\n".join(errors)),
                            ("snapshot", snapshot), ("comms log", comms), ("session logs", logs)):
            assert PLANTED not in text and PLANTED[4:] not in text, f"the planted key is in the {where}"
        assert app.comms_log.rows, "the failing calls were not logged at all"
    finally:
        app.shutdown()


def test_raw_exception_texts_are_redacted_before_they_are_shown(mock_env, monkeypatch, tmp_path):
    """Paths that show an exception's own text: an engine error event, a crashed engine
    coroutine, a chat provider raising something unexpected, a hook action that fails."""
    monkeypatch.setenv("GEMINI_API_KEY", PLANTED)
    app = make_app(tmp_path)
    try:
        app.event_queue.put_threadsafe(events.MMA_ERROR, {"message": f"401 for key {PLANTED}",
                                                          "hint": f"check key={PLANTED}"})

        async def crash() -> None:
            raise RuntimeError(f"sent x-goog-api-key: {PLANTED}")
        app._submit("Crashing step", crash())

        def send(*_args, **_kwargs):
            raise RuntimeError(f"provider echoed {PLANTED}")
        monkeypatch.setattr(app.ctx.session, "send", send)
        app.set_field("ai_input", "hi")
        app.click("btn_send")
        pump_frames(app, lambda: len(app.mma.errors) >= 2 and not app.ctx.busy and app.ctx.errors,
                    "the three errors")
        shown = [e["message"] + e["hint"] for e in app.mma.errors] + [e.text() for e in app.ctx.errors]
        assert any("Crashing step failed: RuntimeError" in s for s in shown), shown
        assert any("provider echoed" in s for s in shown), shown
        assert all(PLANTED not in s for s in shown), shown
        assert sum("[REDACTED]" in s for s in shown) >= 3, shown
        assert PLANTED not in json.dumps(app.get_state_snapshot())
    finally:
        app.shutdown()
