"""The MMA dashboard: a full mock run driven only by clicks, plus MMAState unit tests.

GUI tests run the real `gui_2.App` window (hello_imgui docking, 800x600, no ini
file) under the session Xvfb and drive it with the Dear ImGui Test Engine:
every user action is a click or typed text on a real widget; the test reads
`app.mma` (the state the window shows) to decide what to click next and to
assert.  The mock provider answers instantly (MMA_MOCK_CHUNK_DELAY=0).
"""
from __future__ import annotations

import concurrent.futures
import logging
import os

import pytest

import events
from gui import mma_display
from gui.mma_state import MMAState, StreamStore
from tests.gui.helpers import answer, make_app, run_gui, wait_until

WAIT_S = 30.0


def pending(app, kind: str, ticket_id: str | None = None):
    for a in app.mma.pending_approvals.values():
        if a.kind == kind and (ticket_id is None or a.ticket_id == ticket_id):
            return a
    return None


def ticket(app, ticket_id: str) -> dict:
    t = app.mma.ticket(ticket_id)
    assert t is not None, f"no ticket {ticket_id}: {[x.get('id') for x in app.mma.active_tickets]}"
    return t


def focus(ctx, window: str) -> None:
    from imgui_bundle import hello_imgui
    hello_imgui.get_runner_params().docking_params.focus_dockable_window(window)
    ctx.yield_(3)


def type_epic_and_plan(ctx, app, epic: str) -> dict:
    ctx.item_click("//MMA Dashboard/##epic")
    ctx.key_chars(epic)
    ctx.item_click("//MMA Dashboard/Plan Epic")
    wait_until(ctx, lambda: app.mma.tracks, "Tier 1 to propose tracks")
    return app.mma.tracks[0]


# ============================================================================ the full run
def test_full_mock_run_driven_by_clicks(app, artifacts_dir):
    marker = "EDITED-BY-TEST"
    seen = {}

    def test(ctx):
        from imgui_bundle import imgui
        from imgui_bundle.immapp import testing
        track = type_epic_and_plan(ctx, app, "Add a --verbose flag to the CLI")
        assert app.mma_epic_input == "Add a --verbose flag to the CLI"
        assert app.mma.mma_status == "tracks_ready"
        ctx.item_click(f"//MMA Dashboard/tracks/Accept##{track['id']}")

        # T1 asks to spawn: edit its prompt in the Approvals window, then approve
        wait_until(ctx, lambda: pending(app, "spawn", "T1"), "the spawn approval for T1")
        t1 = pending(app, "spawn", "T1")
        assert t1.prompt.startswith("<TICKET>\nTicket T1:")
        ctx.item_click(f"//Approvals/##prompt-{t1.request_id}")
        ctx.key_press(imgui.Key.home | imgui.Key.mod_ctrl)        # start of the text
        ctx.key_press(imgui.Key.down_arrow)                       # line 2: "Ticket T1: ..."
        ctx.key_chars(marker + " ")
        assert t1.prompt.startswith(f"<TICKET>\n{marker} Ticket T1:"), t1.prompt
        answer(ctx, app, f"Approve##{t1.request_id}")

        # T2 and T3 become ready together: reject T2, approve T3
        wait_until(ctx, lambda: pending(app, "spawn", "T2") and pending(app, "spawn", "T3"),
                   "spawn approvals for T2 and T3")
        t2, t3 = pending(app, "spawn", "T2"), pending(app, "spawn", "T3")
        assert t2.request_id != t3.request_id
        ctx.yield_(2)
        testing.capture(ctx, os.path.join(artifacts_dir, "mma_approvals.png"))
        answer(ctx, app, f"Reject##{t2.request_id}")
        assert pending(app, "spawn", "T3") is t3                   # the other request is untouched
        answer(ctx, app, f"Approve##{t3.request_id}")

        # T4 depends on the rejected T2: the run ends blocked
        wait_until(ctx, lambda: app.mma.mma_status in ("completed", "blocked", "aborted"), "the run to end")
        wait_until(ctx, lambda: app.mma.mma_streams.status.get("Tier 3 (Worker): T3") == "done",
                   "T3's final response")
        seen["pending_after"] = len(app.mma.pending_approvals)
        ctx.yield_(4)
        testing.capture(ctx, os.path.join(artifacts_dir, "mma_main_layout.png"))
        testing.capture(ctx, os.path.join(artifacts_dir, "mma_dashboard.png"), window="MMA Dashboard")
        focus(ctx, "Ticket DAG")
        ctx.yield_(4)
        testing.capture(ctx, os.path.join(artifacts_dir, "mma_ticket_dag.png"), window="Ticket DAG")
        focus(ctx, "Usage & Cost")
        testing.capture(ctx, os.path.join(artifacts_dir, "mma_usage.png"), window="Usage & Cost")
        focus(ctx, "Diagnostics")
        testing.capture(ctx, os.path.join(artifacts_dir, "mma_diagnostics.png"), window="Diagnostics")
        ctx.item_click("//Tier Streams/##streams/Tier 3 (Worker): T1")                 # the worker's stream tab
        ctx.yield_(2)
        seen["stream_tab_clicked"] = True

    run_gui(app, test)
    assert seen.get("stream_tab_clicked")
    mma = app.mma
    assert mma.mma_status == "blocked"
    assert seen["pending_after"] == 0

    # tickets: T1/T3 completed, T2 rejected at spawn, T4 never started
    assert ticket(app, "T1")["status"] == "completed"
    assert ticket(app, "T3")["status"] == "completed"
    assert ticket(app, "T2")["status"] == "blocked"
    assert ticket(app, "T2")["blocked_reason"] == "spawn rejected by the user"
    assert ticket(app, "T4")["status"] == "todo"

    # streams: every tier that ran has non-empty text; the worker saw the edited prompt
    streams = mma.mma_streams
    for sid in ("Tier 1", "Tier 2 (Tech Lead)", "Tier 3 (Worker): T1", "Tier 3 (Worker): T3"):
        assert sid in streams and streams[sid].strip(), f"stream {sid!r} missing or empty"
    assert f"Task: {marker} Ticket T1:" in streams["Tier 3 (Worker): T1"]
    assert marker not in streams["Tier 3 (Worker): T3"]
    assert streams["Tier 3 (Worker): T2"] == "[spawn rejected by the user]"
    assert streams.status["Tier 3 (Worker): T2"] == "rejected"

    # the comms log shows the edited prompt went out in T1's request
    requests = [r.entry for r in app.comms_log.rows if r.kind == "request"]
    t1_requests = [e for e in requests if e.get("label") == "Tier 3 (Worker): T1"]
    assert t1_requests, [e.get("label") for e in requests]
    assert marker in str(t1_requests[-1]["payload"]["messages"])

    # real token usage for Tiers 1-3
    for tier in ("Tier 1", "Tier 2", "Tier 3"):
        bucket = mma.mma_tier_usage[tier]
        assert bucket["input"] > 0 and bucket["output"] > 0, (tier, bucket)
    assert mma.mma_tier_usage["Tier 3"]["input"] == ticket(app, "T1")["usage"]["input"] + \
        ticket(app, "T3")["usage"]["input"]

    # the hook snapshot publishes the same state
    snap = app.get_state_snapshot()
    assert snap["mma_status"] == "blocked"
    assert set(streams) <= set(snap["mma_streams"])
    assert snap["pending_approvals"] == []
    assert {t["id"]: t["status"] for t in snap["tickets"]}["T2"] == "blocked"
    for name in ("mma_main_layout.png", "mma_dashboard.png", "mma_ticket_dag.png", "mma_approvals.png",
                 "mma_usage.png", "mma_diagnostics.png"):
        assert os.path.getsize(os.path.join(artifacts_dir, name)) > 5000, name


def test_tool_approval_and_auto_approve_by_clicks(xvfb_display, mock_env, tmp_path, artifacts_dir):
    """`[write]` makes T1 call write_file: the Approvals window shows the diff; approving writes it
    (in T1's worktree: the file lands on the track branch, the user's checkout is untouched)."""
    from tests.git_fixtures import git, make_repo
    make_repo(tmp_path / "project")
    app = make_app(tmp_path)
    seen = {}

    def test(ctx):
        from imgui_bundle.immapp import testing
        track = type_epic_and_plan(ctx, app, "Write the release notes [write]")
        ctx.item_click(f"//MMA Dashboard/tracks/Accept##{track['id']}")
        wait_until(ctx, lambda: pending(app, "spawn", "T1"), "the spawn approval for T1")
        answer(ctx, app, f"Approve##{pending(app, 'spawn', 'T1').request_id}")
        wait_until(ctx, lambda: pending(app, "tool", "T1"), "the write_file approval")
        tool = pending(app, "tool", "T1")
        seen["tool"] = tool.payload.get("tool")
        seen["diff"] = (tool.payload.get("description") or {}).get("diff", "")
        ctx.yield_(2)
        testing.capture(ctx, os.path.join(artifacts_dir, "mma_tool_approval.png"))
        answer(ctx, app, f"Approve##{tool.request_id}")
        # everything else is approved by the Auto-approve checkbox
        ctx.item_click("//MMA Dashboard/Auto-approve")
        wait_until(ctx, lambda: app.mma.mma_status in ("completed", "blocked", "aborted"), "the run to end")

    try:
        run_gui(app, test)
    finally:
        app.shutdown()
    assert seen["tool"] == "write_file"
    assert "+# Notes" in seen["diff"]
    assert app.mma.auto_approve is True
    assert app.mma.mma_status == "completed", [(t["id"], t["status"], t["blocked_reason"])
                                               for t in app.mma.active_tickets]
    assert not (app.project_dir / "MMA_NOTES.md").exists()
    notes = git(app.project_dir, "show", f"mma/{app.active_track_id}:MMA_NOTES.md")
    assert notes.startswith("# Notes")
    assert "I used the tool result above." in app.mma.mma_streams["Tier 3 (Worker): T1"]


def test_pause_resume_abort_by_clicks(app):
    seen = {}

    def test(ctx):
        track = type_epic_and_plan(ctx, app, "Tidy the logging setup")
        ctx.item_click(f"//MMA Dashboard/tracks/Accept##{track['id']}")
        wait_until(ctx, lambda: pending(app, "spawn", "T1"), "the spawn approval for T1")
        engine = app.active_engine
        ctx.item_click("//MMA Dashboard/Pause")
        wait_until(ctx, lambda: engine.execution.paused, "the engine to pause")
        seen["paused"] = True
        ctx.item_click("//MMA Dashboard/Resume")
        wait_until(ctx, lambda: not engine.execution.paused, "the engine to resume")
        ctx.item_click("//MMA Dashboard/Abort")
        ctx.yield_(3)
        assert app.mma.mma_status == "running" and engine.status == "running"   # Abort asks first
        ctx.item_click("//$FOCUSED/Cancel")
        ctx.yield_(3)
        assert engine.status == "running"
        ctx.item_click("//MMA Dashboard/Abort")
        ctx.item_click("//$FOCUSED/Abort track")
        wait_until(ctx, lambda: app.mma.mma_status == "aborted", "the run to abort")
        wait_until(ctx, lambda: not app.mma.pending_approvals, "the open approval to close")

    run_gui(app, test)
    assert seen["paused"]
    assert app.mma.mma_status == "aborted"
    history = {h["request_id"]: h["outcome"] for h in app.mma.approval_history}
    assert any(rid.startswith("spawn-T1-") and outcome == "cancelled" for rid, outcome in history.items()), history


def test_manual_queue_and_step_mode_by_clicks(app):
    """Auto-queue off: tickets wait for Run; a step-mode ticket asks before it starts."""
    def test(ctx):
        ctx.item_click("//MMA Dashboard/Auto-queue")              # off for the next track
        assert app.auto_queue is False
        track = type_epic_and_plan(ctx, app, "Add a health check endpoint")
        ctx.item_click(f"//MMA Dashboard/tracks/Accept##{track['id']}")
        wait_until(ctx, lambda: app.mma.mma_status == "running" and len(app.mma.active_tickets) == 4,
                   "the tickets")
        ctx.yield_(5)
        assert ticket(app, "T1")["status"] == "todo" and not app.mma.pending_approvals   # nothing starts
        ctx.item_click("//MMA Dashboard/tickets/##step-T1")
        wait_until(ctx, lambda: app.active_engine.dag.tickets["T1"].step_mode, "step mode on T1")
        ctx.item_click("//MMA Dashboard/tickets/Run##T1")
        wait_until(ctx, lambda: pending(app, "step", "T1"), "the step approval for T1")
        step = pending(app, "step", "T1")
        assert "Survey" in step.payload["description"]
        answer(ctx, app, f"Approve##{step.request_id}")
        wait_until(ctx, lambda: pending(app, "spawn", "T1"), "the spawn approval for T1")
        answer(ctx, app, f"Approve##{pending(app, 'spawn', 'T1').request_id}")
        wait_until(ctx, lambda: ticket(app, "T1")["status"] == "completed", "T1 to complete")
        ctx.yield_(5)
        assert ticket(app, "T2")["status"] == "todo" and not app.mma.pending_approvals
        ctx.item_click("//MMA Dashboard/Abort")
        ctx.item_click("//$FOCUSED/Abort track")
        wait_until(ctx, lambda: app.mma.mma_status == "aborted", "the abort")

    run_gui(app, test)
    assert ticket(app, "T1")["step_mode"] is True
    assert [h["request_id"].split("-")[0] for h in app.mma.approval_history] == ["step", "spawn"]


# ============================================================================ MMAState, no window
def _future_event(kind: str, rid: str, ticket_id: str, **payload) -> tuple[str, dict, concurrent.futures.Future]:
    fut: concurrent.futures.Future = concurrent.futures.Future()
    name = events.MMA_SPAWN_APPROVAL if kind == "spawn" else events.MMA_STEP_APPROVAL
    return name, {"request_id": rid, "ticket_id": ticket_id, "kind": kind, "future": fut, **payload}, fut


def test_stream_chunks_append_in_order_and_response_sets_final_text():
    s = MMAState()
    for chunk in ("Hello ", "wor", "ld"):
        assert s.apply(events.MMA_STREAM, {"stream_id": "Tier 3 (Worker): T1", "text": chunk})
    s.apply(events.MMA_STREAM, {"stream_id": "Tier 1", "text": "plan"})
    assert s.mma_streams["Tier 3 (Worker): T1"] == "Hello world"
    s.apply(events.MMA_STREAM, {"stream_id": "Tier 3 (Worker): T1", "text": "!"})
    assert s.mma_streams["Tier 3 (Worker): T1"] == "Hello world!"
    s.apply(events.RESPONSE, {"stream_id": "Tier 3 (Worker): T1", "text": "FINAL", "status": "done"})
    assert s.mma_streams["Tier 3 (Worker): T1"] == "FINAL"
    assert s.mma_streams["Tier 1"] == "plan"
    assert s.mma_streams.status["Tier 3 (Worker): T1"] == "done"
    # an error keeps what streamed and says so
    s.apply(events.MMA_STREAM, {"stream_id": "Tier 3 (Worker): T2", "text": "partial"})
    s.apply(events.RESPONSE, {"stream_id": "Tier 3 (Worker): T2", "text": "", "status": "error"})
    assert s.mma_streams["Tier 3 (Worker): T2"] == "partial\n\n[error]"
    assert s.mma_streams.ordered_ids() == ["Tier 1", "Tier 3 (Worker): T1", "Tier 3 (Worker): T2"]


def test_stream_cap_keeps_the_tail_and_says_so():
    store = StreamStore(cap_chars=1000)
    for i in range(500):
        store.append("s", f"{i:04d}\n")                          # 2500 chars in total
    text = store["s"]
    assert store.truncated("s")
    assert text.startswith("[... ") and "earlier characters truncated" in text
    assert text.endswith("0499\n")
    assert store.length("s") <= 1000
    assert store.dropped["s"] + store.length("s") == 2500
    gen = store.generation["s"]
    store.append("s", "more")                                    # a plain append keeps the generation
    assert store.generation["s"] == gen and store["s"].endswith("0499\nmore")


def test_approvals_are_keyed_by_request_id():
    s = MMAState()
    n1, p1, f1 = _future_event("spawn", "spawn-T1-1", "T1", prompt="p1", context_md="c1")
    n2, p2, f2 = _future_event("spawn", "spawn-T2-2", "T2", prompt="p2", context_md="c2")
    s.apply(n1, p1)
    s.apply(n2, p2)
    assert list(s.pending_approvals) == ["spawn-T1-1", "spawn-T2-2"]
    assert "future" not in s.pending_approvals["spawn-T1-1"].payload
    s.pending_approvals["spawn-T2-2"].prompt = "edited p2"          # what the window's editor does
    assert s.approve("spawn-T2-2", True) is True
    assert f2.result(0) == {"approved": True, "prompt": "edited p2", "context_md": "c2"}
    assert not f1.done()                                          # the other request is untouched
    assert s.approve("spawn-T1-1", False, prompt="x") is True
    assert f1.result(0) == {"approved": False, "prompt": "x", "context_md": "c1"}
    assert s.pending_approvals == {}
    with pytest.raises(KeyError):
        s.approve("spawn-T1-1")
    n3, p3, f3 = _future_event("tool", "tool-T3-3", "T3", tool="write_file", args={"path": "a.md"})
    s.apply(n3, p3)
    with pytest.raises(ValueError, match="unknown approval edit"):
        s.approve("tool-T3-3", True, bogus=1)
    s.pending_approvals["tool-T3-3"].args_text = "{not json"
    with pytest.raises(ValueError, match="not valid JSON"):
        s.approve("tool-T3-3", True)
    assert "tool-T3-3" in s.pending_approvals                     # a bad edit answers nothing
    assert s.approve("tool-T3-3", True, args={"path": "b.md"})
    assert f3.result(0) == {"approved": True, "args": {"path": "b.md"}}


def test_approval_closed_elsewhere_and_cancelled_futures():
    s = MMAState()
    n, p, f = _future_event("step", "step-T1-1", "T1", description="d")
    s.apply(n, p)
    s.apply(events.MMA_APPROVAL_CLOSED, {"request_id": "step-T1-1", "outcome": "timeout"})
    assert s.pending_approvals == {}
    assert "timed out" in s.latest_error["message"]
    n, p, f = _future_event("step", "step-T2-2", "T2", description="d")
    s.apply(n, p)
    f.cancel()                                                    # e.g. the engine aborted
    assert s.prune_resolved() == 1 and s.pending_approvals == {}
    n, p, f = _future_event("step", "step-T3-3", "T3", description="d")
    s.apply(n, p)
    f.cancel()
    assert s.approve("step-T3-3") is False                        # too late: no exception, removed
    assert s.pending_approvals == {}


def test_auto_approve_answers_as_is():
    s = MMAState()
    s.auto_approve = True
    n, p, f = _future_event("spawn", "spawn-T1-1", "T1", prompt="p", context_md="")
    s.apply(n, p)
    assert f.result(0)["approved"] is True and s.pending_approvals == {}


def test_state_update_tracks_errors_and_unknown_events(caplog):
    s = MMAState()
    s.apply(events.MMA_TRACKS, {"tracks": [{"id": "a", "title": "A"}]})
    s.apply(events.MMA_STATE_UPDATE, {"status": "running", "active_tier": "Tier 3",
                                      "tier_usage": {"Tier 3": {"input": 5, "output": 7, "model": "m"}},
                                      "track": {"id": "a", "title": "A"},
                                      "tickets": [{"id": "T1", "status": "todo", "depends_on": []}],
                                      "critical_path": ["T1"]})
    s.apply(events.MMA_STATE_UPDATE, {"status": "planning", "active_tier": "Tier 1",
                                      "tier_usage": {"Tier 1": {"input": 1, "output": 2, "model": "x"}}})
    assert s.mma_status == "planning" and s.active_tier == "Tier 1"
    assert s.active_track == {"id": "a", "title": "A"} and s.ticket("T1")["status"] == "todo"
    assert s.mma_tier_usage["Tier 3"]["output"] == 7 and s.mma_tier_usage["Tier 1"]["input"] == 1
    assert s.critical_path == ["T1"] and s.track("a")["title"] == "A"
    s.apply(events.MMA_ERROR, {"message": "boom", "hint": "do X"})
    assert s.latest_error["message"] == "boom" and s.latest_error["hint"] == "do X"
    s.dismiss_errors()
    assert s.latest_error is None and len(s.errors) == 1
    s.apply(events.MMA_LOG, {"message": "line"})
    s.apply(events.COMMS, {"kind": "request"})
    assert list(s.logs) == ["line"] and len(s.comms) == 1
    with caplog.at_level(logging.WARNING, logger="gui.mma_state"):
        assert s.apply("mystery_event", {"x": 1}) is False
    assert s.unknown_events["mystery_event"] == 1
    assert any("mystery_event" in r.getMessage() for r in caplog.records)
    assert s.apply(events.MMA_STREAM, "not a dict") is False
    snap = s.snapshot()
    import json
    json.dumps(snap)                                              # JSON-able


def test_every_event_kind_has_a_handler():
    kinds = {c for c in vars(events).values()
             if isinstance(c, type) and issubclass(c, events.Event) and c is not events.Event}
    s = MMAState()
    assert len(kinds) >= 9 and kinds == set(s._handlers), kinds ^ set(s._handlers)


# ============================================================================ panel helpers
def test_dag_layout_levels_and_critical_links():
    tickets = [{"id": "T1", "depends_on": []}, {"id": "T2", "depends_on": ["T1"]},
               {"id": "T3", "depends_on": ["T1"]}, {"id": "T4", "depends_on": ["T2", "T3"]}]
    assert mma_display.dag_levels(tickets) == {"T1": 0, "T2": 1, "T3": 1, "T4": 2}
    pos = mma_display.dag_positions(tickets)
    assert pos["T2"][0] == pos["T3"][0] > pos["T1"][0] and pos["T2"][1] != pos["T3"][1]
    links = mma_display.dag_links(tickets, ["T1", "T2", "T4"])
    assert ("T1", "T2", True) in links and ("T1", "T3", False) in links and ("T2", "T4", True) in links


def test_line_cache_extends_on_append_and_rebuilds_on_replace():
    cache = mma_display.LineCache()
    mma_display.update_line_cache(cache, "ab\ncd", 1, 40)
    assert cache.lines == ["ab", "cd"]
    mma_display.update_line_cache(cache, "ab\ncdef\ngh", 1, 40)
    assert cache.lines == ["ab", "cdef", "gh"]
    mma_display.update_line_cache(cache, "new", 2, 40)
    assert cache.lines == ["new"]
    mma_display.update_line_cache(cache, "word " * 20, 3, 20)
    assert all(len(line) <= 20 for line in cache.lines) and "".join(cache.lines) == "word " * 20


def test_tier_cost_uses_the_price_table():
    from project import ModelPrice
    prices = {"m": ModelPrice(1.0, 10.0)}
    assert mma_display.tier_cost({"model": "m", "input": 1_000_000, "output": 100_000}, prices) == pytest.approx(2.0)
    assert mma_display.tier_cost({"model": "other", "input": 5, "output": 5}, prices) is None


def test_usage_table_totals_costs_and_unpriced_models():
    from project import ModelPrice
    prices = {"m": ModelPrice(1.0, 10.0)}
    usage = {"Tier 1": {"model": "m", "input": 1_000_000, "output": 100_000},
             "Tier 3": {"model": "nobody-prices-me", "input": 7, "output": 3}}
    table = mma_display.usage_table(usage, prices)
    assert [r.tier for r in table.rows] == ["Tier 1", "Tier 2", "Tier 3", "Tier 4"]
    assert table.rows[0].cost == pytest.approx(2.0) and table.rows[2].cost is None
    assert table.rows[1].cost is None and table.rows[1].input == 0          # a tier that did not run
    assert (table.total_input, table.total_output) == (1_000_007, 100_003)
    assert table.total_cost == pytest.approx(2.0)
    assert table.unpriced == ["nobody-prices-me"]                            # Tier 2/4 used no tokens


def test_saved_track_rows_show_the_running_tracks_live_progress():
    mma = MMAState()
    saved = [{"id": "a", "status": "in_progress", "tickets_done": 0, "tickets_total": 2},
             {"id": "b", "status": "completed", "tickets_done": 1, "tickets_total": 1}]
    assert mma_display.saved_track_rows(saved, "a", mma) == saved            # nothing runs: the files' view
    mma.apply("mma_state_update", {"status": "running", "tickets": [{"id": "T1", "status": "completed"},
                                                                    {"id": "T2", "status": "todo"},
                                                                    {"id": "T3", "status": "todo"}]})
    live, other = mma_display.saved_track_rows(saved, "a", mma)
    assert live["live"] and (live["tickets_done"], live["tickets_total"]) == (1, 3)
    assert other == saved[1] and saved[0]["tickets_done"] == 0              # the saved list is not changed


def test_add_price_extends_the_price_table_and_refuses_duplicates(app):
    assert app.add_price(" my-model ", 1.0, 2.0) == {"model": "my-model"}
    assert app.prices["my-model"].cost(1_000_000, 1_000_000) == pytest.approx(3.0)
    assert app.prices is app.project.prices                                  # what Save prices writes
    assert app.ui(app.add_price, "my-model") is None                         # the Add price button's path
    assert "already has a price" in app.mma.latest_error["message"]
    with pytest.raises(ValueError, match="model name"):
        app.add_price("  ")


def test_ticket_duration_from_started_and_finished_at():
    now = 1_000.0
    assert mma_display.ticket_duration({"status": "todo", "started_at": None}, now) == "-"
    assert mma_display.ticket_duration({"status": "completed", "started_at": 990.0, "finished_at": 991.25},
                                       now) == "1.2 s"
    assert mma_display.ticket_duration({"status": "in_progress", "started_at": 997.0, "finished_at": None},
                                       now) == "3.0 s ..."
    assert mma_display.ticket_duration({"status": "completed", "started_at": 0.0, "finished_at": 125.0},
                                       now) == "2 m 05 s"
    assert mma_display.ticket_duration({"status": "blocked", "started_at": 990.0, "finished_at": None},
                                       now) == "-"
    assert "started" in mma_display.ticket_times({"started_at": 990.0, "finished_at": None})


def test_starting_status_counts_as_an_active_pipeline():
    """Between accepting a track and its engine's run() the status is "starting": no second plan."""
    from gui.mma_state import MMAState
    state = MMAState()
    state.apply("mma_state_update", {"status": "starting", "active_tier": None, "tier_usage": {},
                                     "track": {"id": "t_20260101", "title": "t"}, "tickets": []})
    assert state.pipeline_active and state.busy
    state.apply("mma_state_update", {"status": "completed", "active_tier": None, "tier_usage": {},
                                     "track": {"id": "t_20260101", "title": "t"}, "tickets": []})
    assert not state.pipeline_active
