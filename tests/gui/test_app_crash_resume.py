"""kill -9 the REAL app in the middle of a track, restart it, press Resume: nothing completed runs again.

The app runs as a subprocess with the hook API (`AppProcess`), the mock provider streaming
slowly (`MMA_MOCK_CHUNK_DELAY`), one worker at a time (`budgets.max_workers = 1` in the project
file) and auto-approve on.  Provider calls are counted from the session logs the app writes to
`<project>/.mma_desk/logs/session-<stamp>-<pid>-<id>.jsonl` (one `"kind": "request"` entry per
call, `"label": "Tier 3 (Worker): T2"` for a worker), split by the pid of each app process.
"""
from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import conductor_io
import project as project_mod
from api_hooks import ApiHookClient, HookError
from tests.visual_sim_mma_v2 import AppProcess

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0
WORKER = "Tier 3 (Worker): "


def _start_app(project: Path, display: str, log_dir: Path, name: str) -> AppProcess:
    env = {**os.environ, "DISPLAY": display, "MMA_MOCK_CHUNK_DELAY": "0.02"}
    argv = [sys.executable, str(REPO / "gui_2.py"), "--project", str(project), "--provider", "mock",
            "--enable-test-hooks", "--hook-port", "0", "--window-size", "640x480", "--no-ini"]
    return AppProcess(argv, env, str(log_dir), name).start()


def _client(app: AppProcess) -> ApiHookClient:
    client = ApiHookClient(app.wait_url(60), timeout=10)
    assert client.wait_for_server(30), app.tail()
    return client


def _wait(client: ApiHookClient, app: AppProcess, predicate, what: str, timeout: float = WAIT_S):
    def alive_and():
        code = app.proc.poll()
        assert code is None, f"the app exited with {code} while waiting for {what}\n{app.tail()}"
        return predicate()
    try:
        return client.wait_for(alive_and, timeout, interval=0.05, message=what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nstate: {_digest(client)}\n{app.tail()}") from None


def _digest(client: ApiHookClient) -> str:
    try:
        s = client.get_state()
    except HookError as exc:
        return f"(no state: {exc})"
    return (f"mma_status={s.get('mma_status')!r} tickets={[(t['id'], t['status']) for t in s.get('tickets') or []]} "
            f"saved_tracks={s.get('saved_tracks')} errors={s.get('errors')}")


def _worker_requests(project: Path, pid: int) -> list[str]:
    """Ticket ids of the Tier 3 requests the app process `pid` logged, in order.

    A process killed with SIGKILL may have left a half-written last line (a long entry is
    written in more than one write()); only that one line is skipped, only for a killed process.
    """
    ids = []
    for path in sorted((project / ".mma_desk" / "logs").glob(f"session-*-{pid}-*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                assert i == len(lines) - 1, f"{path}: line {i + 1} is not JSON: {line[:200]!r}"
                continue
            if entry.get("kind") == "request" and str(entry.get("label", "")).startswith(WORKER):
                ids.append(entry["label"][len(WORKER):])
    return ids


def _check_state_files(project: Path, track_id: str) -> dict:
    """Every file the app keeps for the project parses; returns state.json."""
    folder = project / "conductor" / "tracks" / track_id
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    assert isinstance(state["track"], dict) and isinstance(state["tickets"], list) and state["tier_usage"]
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert meta["track_id"] == track_id
    plan = conductor_io.parse_plan((folder / "plan.md").read_text(encoding="utf-8"))
    assert [t.id for t in conductor_io.plan_to_tickets(plan)] == [t["id"] for t in state["tickets"]]
    registry = conductor_io.parse_tracks_md((project / "conductor" / "tracks.md").read_text(encoding="utf-8"))
    assert track_id in [e.id for e in registry]
    assert project_mod.load_project(project).budgets.max_workers == 1
    return state


def test_kill_9_the_app_mid_track_then_resume_from_the_saved_tracks(xvfb_display, mock_env, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "mma_project.toml").write_text("[budgets]\nmax_workers = 1\n", encoding="utf-8")

    # -- first run: plan, accept, kill -9 while a worker streams -------------------------------
    first = _start_app(project, xvfb_display, tmp_path, "first")
    try:
        c = _client(first)
        c.set_value("auto_approve", True)
        c.set_value("mma_epic_input", "Add a version flag to the CLI")
        c.click("btn_mma_plan_epic")
        _wait(c, first, lambda: c.get_state().get("tracks"), "Tier 1 to propose a track")
        track_id = c.click("btn_mma_accept_track")["track_id"]

        def mid_track():
            s = c.get_state()
            tickets = s.get("tickets") or []
            running = [t["id"] for t in tickets if t["status"] == "in_progress"]
            done = [t["id"] for t in tickets if t["status"] == "completed"]
            # the in-flight worker has really called the provider: its stream has text
            return done and running and all(s["mma_streams"].get(WORKER + r) for r in running)
        _wait(c, first, mid_track, "one ticket completed and a worker streaming the next")
        os.kill(first.proc.pid, signal.SIGKILL)
        code = first.wait_exit(15)
    finally:
        first.stop()
    assert code == -signal.SIGKILL

    state = _check_state_files(project, track_id)
    all_ids = [t["id"] for t in state["tickets"]]
    done_before = {t["id"] for t in state["tickets"] if t["status"] == "completed"}
    in_flight = {t["id"] for t in state["tickets"] if t["status"] == "in_progress"}
    assert len(all_ids) == 4 and done_before and in_flight, state["tickets"]
    before = _worker_requests(project, first.proc.pid)
    assert in_flight <= set(before), f"the in-flight ticket never called the provider: {before}"
    assert done_before <= set(before)

    # -- restart on the same project: the track is listed; Resume runs what is left ------------
    second = _start_app(project, xvfb_display, tmp_path, "second")
    try:
        c = _client(second)
        saved = {t["id"]: t for t in c.get_value("saved_tracks")}
        assert track_id in saved, saved
        row = saved[track_id]
        assert row["resumable"] and row["has_state"] and row["status"] == "in_progress", row
        assert (row["tickets_done"], row["tickets_total"]) == (len(done_before), 4), row
        c.set_value("auto_approve", True)
        answer = c.click("btn_mma_resume_track")           # default: the newest unfinished track
        assert answer["track_id"] == track_id and answer["tickets_done"] == len(done_before), answer
        _wait(c, second, lambda: c.get_value("mma_status") == "completed", "the resumed track to complete")
        _wait(c, second, lambda: next(t for t in c.get_value("saved_tracks") if t["id"] == track_id)
              ["status"] == "completed", "Saved tracks to show the track completed")
        row = next(t for t in c.get_value("saved_tracks") if t["id"] == track_id)
        assert (row["tickets_done"], row["tickets_total"], row["resumable"]) == (4, 4, False), row
        assert c.get_value("errors") == [], c.get_value("errors")
        code = second.stop()
    finally:
        second.stop()
    assert code == 0, second.tail()

    after = _worker_requests(project, second.proc.pid)
    assert set(after) == set(all_ids) - done_before, f"before the kill {before}, after the restart {after}"
    assert not done_before & set(after), "a completed ticket ran again"
    assert in_flight <= set(after), "the in-flight ticket was not re-run"
    final = _check_state_files(project, track_id)
    assert [t["status"] for t in final["tickets"]] == ["completed"] * 4
    assert final["track"]["status"] == "completed"
    assert final["tier_usage"]["Tier 3"]["input"] >= state["tier_usage"]["Tier 3"]["input"]
    leftovers = [p for p in project.rglob(".*.tmp")]
    assert not leftovers, leftovers


# ==================================================================== the Saved tracks section
TRACK_ID = "saved_resume_track_20260101"


def _save_half_done_track(project: Path, track_id: str = TRACK_ID, title: str = "Half-done track") -> None:
    from models import Ticket, Track
    track = Track(track_id, title, "saved by a session that ended mid-track", status="in_progress",
                  tickets=[Ticket("T1", "Survey the code the flag touches", status="completed"),
                           Ticket("T2", "Implement the version flag", depends_on=["T1"])])
    conductor_io.save_track(project, track)


def test_resume_button_runs_only_the_unfinished_ticket(xvfb_display, mock_env, tmp_path, artifacts_dir):
    from tests.gui.helpers import make_app, run_gui, wait_until
    project = tmp_path / "project"
    _save_half_done_track(project)
    app = make_app(tmp_path)
    seen: dict = {}
    shot = os.path.join(artifacts_dir, "mma_saved_tracks.png")

    def test(ctx):
        from imgui_bundle.immapp import testing
        row = next(t for t in app.saved_tracks if t["id"] == TRACK_ID)
        seen["row_before"] = dict(row)
        ctx.item_click("//MMA Dashboard/Auto-approve")
        assert app.mma.auto_approve
        ctx.mouse_move("//MMA Dashboard/###saved_header")   # no tooltip over the section
        ctx.yield_(3)
        testing.capture(ctx, shot, window="MMA Dashboard")
        ctx.item_click(f"//MMA Dashboard/saved_tracks/Resume##{TRACK_ID}")
        wait_until(ctx, lambda: app.mma.mma_status == "completed" and not app.futures_in_flight,
                   "the resumed track to complete")
        ctx.scroll_to_item_y("//MMA Dashboard/Refresh##saved")   # the ticket table is on top now
        ctx.mouse_move("//MMA Dashboard/###saved_header")
        ctx.yield_(3)
        testing.capture(ctx, os.path.join(artifacts_dir, "mma_saved_tracks_resumed.png"), window="MMA Dashboard")
        seen["done"] = True

    try:
        run_gui(app, test)
    finally:
        app.shutdown()
    assert seen.get("done")
    assert (seen["row_before"]["tickets_done"], seen["row_before"]["tickets_total"],
            seen["row_before"]["resumable"]) == (1, 2, True)
    workers = [sid for sid in app.mma.mma_streams if sid.startswith("Tier 3")]
    assert workers == ["Tier 3 (Worker): T2"], workers
    assert app.mma.mma_streams["Tier 3 (Worker): T2"].strip()
    requests = [r.entry.get("label") for r in app.comms_log.rows if r.kind == "request"]
    assert [lbl for lbl in requests if str(lbl).startswith("Tier 3")] == ["Tier 3 (Worker): T2"], requests
    assert app.mma.active_track["status"] == "completed"
    assert [t["status"] for t in app.mma.active_tickets] == ["completed", "completed"]
    row = next(t for t in app.saved_tracks if t["id"] == TRACK_ID)
    assert (row["status"], row["tickets_done"], row["resumable"]) == ("completed", 2, False), row
    track, _usage = conductor_io.load_track_state(project, TRACK_ID)
    assert track.status == "completed" and [t.status for t in track.tickets] == ["completed", "completed"]
    assert app.mma.errors == [], app.mma.errors
    assert os.path.getsize(shot) > 5000


def test_resume_track_refusals_and_the_default_track(mock_env, monkeypatch, tmp_path):
    """Clear refusals (running, unknown, completed, no state); no track id = the newest unfinished."""
    import pytest

    from models import Track
    from tests.gui.helpers import make_app, pump_frames
    monkeypatch.setenv("MMA_MOCK_CHUNK_DELAY", "0.05")      # slow enough to still be running
    project = tmp_path / "project"
    _save_half_done_track(project, "older_track_20260101", "Older")
    _save_half_done_track(project, TRACK_ID, "Newer")
    conductor_io.save_track(project, Track("finished_track_20260101", "Finished", status="completed"))
    (project / "conductor" / "tracks" / "plan_only_20260101").mkdir()
    (project / "conductor" / "tracks" / "plan_only_20260101" / "plan.md").write_text(
        "# Plan only\n\n## Phase 1\n\n- [ ] Task 1.1: do it\n", encoding="utf-8")
    app = make_app(tmp_path)
    try:
        rows = {t["id"]: t for t in app.saved_tracks}
        assert rows["finished_track_20260101"]["resumable"] is False
        assert rows["plan_only_20260101"]["has_state"] is False and not rows["plan_only_20260101"]["resumable"]
        assert app.get_state_snapshot()["saved_tracks"] == app.saved_tracks
        with pytest.raises(ValueError, match="no saved track 'nope'"):
            app.click("btn_mma_resume_track", {"track_id": "nope"})
        with pytest.raises(ValueError, match="already completed"):
            app.click("btn_mma_resume_track", {"track_id": "finished_track_20260101"})
        with pytest.raises(ValueError, match=re.escape("no state.json")):
            app.click("btn_mma_resume_track", {"track_id": "plan_only_20260101"})
        # the newest unfinished one: both were saved in the same second, so make the older older
        state_path = project / "conductor" / "tracks" / "older_track_20260101" / "state.json"
        state = json.loads(state_path.read_text(encoding="utf-8"))
        state["track"]["updated_at"] = "2020-01-01T00:00:00+00:00"
        state_path.write_text(json.dumps(state), encoding="utf-8")
        app.refresh_saved_tracks()
        app.set_auto_approve(True)
        assert app.click("btn_mma_resume_track")["track_id"] == TRACK_ID
        with pytest.raises(ValueError, match="cannot resume a track while the pipeline is running"):
            app.click("btn_mma_resume_track", {"track_id": "older_track_20260101"})
        pump_frames(app, lambda: app.mma.ticket("T2") and app.mma.ticket("T2")["status"] == "in_progress",
                    "T2 to start")
        with pytest.raises(ValueError, match="while the pipeline is running"):
            app.resume_track("older_track_20260101")
        pump_frames(app, lambda: app.mma.mma_status == "completed" and not app.futures_in_flight,
                    "the resumed track to complete", timeout=60)
        app.frame_start()
        app.frame_end()
        rows = {t["id"]: t for t in app.get_state_snapshot()["saved_tracks"]}
        assert rows[TRACK_ID]["status"] == "completed" and rows[TRACK_ID]["tickets_done"] == 2
        assert rows["older_track_20260101"]["resumable"]
        # a state.json damaged after it was listed: the error bar names the file; not "running"
        state_path.write_text('{"track": {"id": "older_track_20260101"', encoding="utf-8")
        app.click("btn_mma_resume_track", {"track_id": "older_track_20260101"})
        pump_frames(app, lambda: app.mma.mma_status == "error" and not app.futures_in_flight,
                    "the failed resume to show up")
        app.frame_start()
        assert "Resume track failed" in app.mma.latest_error["message"]
        assert str(state_path) in app.mma.latest_error["message"], app.mma.latest_error
    finally:
        app.shutdown()
