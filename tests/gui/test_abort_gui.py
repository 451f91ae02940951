"""The desktop app: Abort during planning, a failing step leaves it idle, quitting does not wait.

The real window under the ImGui Test Engine; Gemini through its real SDK against the
loopback wire emulator, whose "hang" fault holds a planning call's first byte back.
"""
from __future__ import annotations

import logging
import time

import pytest

from tests.gui.helpers import make_app, run_gui, wait_until
from tests.wire_emulator import WireEmulator

log = logging.getLogger(__name__)


@pytest.fixture
def emulator(mock_env, monkeypatch):
    with WireEmulator() as emu:
        monkeypatch.setenv("GEMINI_API_KEY", "AIzaFAKE-gui-abort-key-0123456789")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        yield emu


def plan(ctx, epic: str) -> None:
    ctx.item_click("//MMA Dashboard/##epic")
    ctx.key_chars(epic)
    ctx.item_click("//MMA Dashboard/Plan Epic")


@pytest.fixture
def hung_planning_app(xvfb_display, emulator, tmp_path):
    """An app on Gemini whose first planning call hangs; `shutdown()` is the test's to call."""
    emulator.inject("hang")
    return make_app(tmp_path, provider="gemini")


def plan_until_hung(ctx, emulator) -> None:
    plan(ctx, "An epic whose planning hangs")
    wait_until(ctx, lambda: emulator.requests, "the Tier 1 request")


def test_abort_during_planning_by_click_stops_the_call_and_says_so(hung_planning_app, emulator):
    app = hung_planning_app
    seen = {}

    def test(ctx):
        plan_until_hung(ctx, emulator)
        assert app.mma.mma_status == "planning" and app.can_abort
        t0 = time.monotonic()
        ctx.item_click("//MMA Dashboard/Abort")
        ctx.item_click("//$FOCUSED/Abort track")      # Abort asks first
        wait_until(ctx, lambda: app.mma.mma_status == "aborted", "planning to stop")
        seen["elapsed"] = time.monotonic() - t0
        assert any("Tier 1 planning aborted" in line for line in app.mma.logs)
        assert not app.mma.pipeline_active and not app.can_abort
        plan(ctx, " again")                           # idle: Plan Epic works again
        wait_until(ctx, lambda: app.mma.tracks, "the second plan")

    try:
        run_gui(app, test)
    finally:
        app.shutdown()
    log.info("abort during planning (GUI) took %.3f s", seen["elapsed"])
    assert seen["elapsed"] < 2.0
    assert emulator.requests[0].disconnected


def test_quitting_during_a_hung_planning_call_does_not_wait_for_it(hung_planning_app, emulator):
    app = hung_planning_app
    seen = {}

    def test(ctx):
        plan_until_hung(ctx, emulator)
        seen["t0"] = time.monotonic()           # the window closes now; App.shutdown runs on exit

    run_gui(app, test)
    elapsed = time.monotonic() - seen["t0"]
    assert app._closed
    log.info("shutdown during a hung planning call took %.3f s", elapsed)
    assert elapsed < 2.0
    assert emulator.requests[0].disconnected


def test_an_exception_escaping_tier_2_is_shown_and_the_app_is_idle_again(xvfb_display, mock_env, monkeypatch,
                                                                        tmp_path):
    import planning
    app = make_app(tmp_path)
    app.set_auto_approve(True)
    real = planning.generate_tickets

    def broken(*args, **kwargs):
        raise UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid continuation byte")
    monkeypatch.setattr(planning, "generate_tickets", broken)

    def test(ctx):
        plan(ctx, "Anything at all")
        wait_until(ctx, lambda: app.mma.tracks, "Tier 1 to propose tracks")
        track = app.mma.tracks[0]
        ctx.item_click(f"//MMA Dashboard/tracks/Accept##{track['id']}")
        wait_until(ctx, lambda: app.mma.errors, "the error to show")
        wait_until(ctx, lambda: not app.mma.pipeline_active, "the dashboard to be idle")
        assert "Tier 2 failed" in app.mma.errors[-1]["message"]
        monkeypatch.setattr(planning, "generate_tickets", real)
        ctx.item_click(f"//MMA Dashboard/tracks/Accept##{track['id']}")        # it can be tried again
        wait_until(ctx, lambda: app.mma.mma_status == "completed", "the track to run")

    try:
        run_gui(app, test)
    finally:
        app.shutdown()
    assert len(app.mma.errors) == 1
