"""Helpers shared by the GUI tests: run the real App window under the Test Engine, wait for state."""
from __future__ import annotations

import time

WINDOW = (800, 600)        # notes/platform.md: keep test windows small (llvmpipe cost scales with pixels)


def make_app(tmp_path, provider: str | None = "mock", **kwargs):
    import gui_2
    return gui_2.App(tmp_path / "project", provider=provider, **kwargs)


def run_gui(app, test_fn, window: tuple[int, int] = WINDOW) -> None:
    """The App's own runner params (docking, callbacks) driven by `test_fn(ctx)`."""
    from imgui_bundle.immapp import testing
    rp, addons = app.build_runner_params(window, ini_disable=True)
    testing.run(test_function=test_fn, runner_params=rp, add_ons_params=addons)


def wait_until(ctx, predicate, what: str, timeout: float = 30.0) -> None:
    """Let frames run (the GUI keeps rendering) until `predicate()` holds, or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        ctx.yield_()
    assert predicate(), f"timed out after {timeout}s waiting for {what}"


def pump_frames(app, predicate, what: str, timeout: float = 30.0) -> None:
    """No window: run the App's frame callbacks by hand until `predicate()` holds, or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        app.frame_start()
        app.frame_end()
        time.sleep(0.005)


def answer(ctx, app, label: str) -> None:
    """Click Approve/Reject in the Approvals window as a person would: after the window's
    misfire guard (buttons are disabled for a moment after each answer) has passed."""
    view = app.views["approvals"]
    wait_until(ctx, lambda: time.monotonic() >= view.guard_until, "the approvals guard to pass", 5)
    ctx.item_click(f"//Approvals/{label}")
