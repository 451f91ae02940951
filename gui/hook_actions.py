"""The App's side of the hook API: what can be set and pressed, and the published snapshot.

`HookSurface` (owned by `gui_2.App` as `app.hooks`) is the only place where the
hook server's thread and the GUI thread meet:

  server thread                      GUI thread (one frame)
  submit(action) -> Future  ----->   apply_queued()        frame start: run each action
                                     ...widgets draw...
  snapshot() / performance() <----   publish()             frame end: swap in the new snapshot,
                                                           THEN resolve the frame's futures
                                     capture_screenshots() before swap: read pixels, write PNGs

Because a future resolves only after the snapshot that contains its change is
published, a caller that waited for its action reads its own write on the very
next GET (`resolves_after_publish = True` tells `api_hooks.HookServer` so).
"""
from __future__ import annotations

import concurrent.futures
import functools
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gui import screenshot

if TYPE_CHECKING:
    from gui_2 import App

log = logging.getLogger(__name__)

TIER_FIELDS = ("tier1_model", "tier2_model", "tier3_models", "tier4_model")
SETTABLE_FIELDS = ("mma_epic_input", "ai_input", "current_provider", "current_model", "auto_approve",
                   "auto_queue", *TIER_FIELDS)
CONTEXT_ITEMS = ("btn_add_file", "btn_remove_file", "btn_stop", "btn_new_discussion")
CLICKABLE_ITEMS = ("btn_mma_plan_epic", "btn_mma_accept_track", "btn_mma_reject_track", "btn_mma_pause",
                   "btn_mma_resume", "btn_mma_abort", "btn_mma_resume_track", "btn_mma_apply_models",
                   "btn_mma_run_ticket", "btn_mma_step_mode", "btn_save_project", "btn_dismiss_error",
                   "btn_send", "btn_quit", *CONTEXT_ITEMS)
ACTIONS = ("set_value", "click", "approve", "screenshot")
CTX_SNAPSHOT_INTERVAL_S = 0.1      # the context panels' part: rebuilt this often, and after any action
PERF_INTERVAL_S = 0.1
COMMS_IN_SNAPSHOT = 200            # newest comms-log entries in the snapshot (`comms_log`)


class HookSurface:
    """The App's hook-API plumbing (see the module docstring for who calls what, on which thread)."""
    resolves_after_publish = True

    def __init__(self, app: App):
        self.app = app
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._resolve_after_publish: list[tuple[concurrent.futures.Future, dict | None, BaseException | None]] = []
        self._screenshots: list[tuple[Any, concurrent.futures.Future]] = []
        self._lock = threading.Lock()
        self._snapshot: dict = {}
        self._perf: dict = {}
        self._mma_version = -1
        self._mma_part: dict = {}
        self._ctx_part: dict = {}
        self._ctx_at = 0.0
        self._perf_at = 0.0

    # ================================================================ any thread
    def submit(self, action: Any) -> concurrent.futures.Future:
        """Queue an action for the GUI thread.  A malformed one fails at once (ValueError)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        try:
            self._validate(action)
        except ValueError as exc:
            fut.set_exception(exc)
            return fut
        self._queue.put((dict(action), fut))
        return fut

    def snapshot(self) -> dict:
        """The state published at the end of the last frame.  The top level is a fresh dict;
        nested values are shared with the published copy: treat them as read-only."""
        with self._lock:
            return dict(self._snapshot)

    def performance(self) -> dict:
        with self._lock:
            return dict(self._perf)

    @property
    def pending(self) -> bool:
        return not self._queue.empty() or bool(self._screenshots)

    def _validate(self, action: Any) -> None:
        if not isinstance(action, dict):
            raise ValueError(f"an action must be an object, got {type(action).__name__}")
        kind = action.get("action")
        if kind not in ACTIONS:
            raise ValueError(f"unknown action {kind!r}; known: {', '.join(ACTIONS)}")
        if kind == "set_value" and action.get("field") not in SETTABLE_FIELDS:
            raise ValueError(f"unknown or read-only field {action.get('field')!r}; "
                             f"settable: {', '.join(SETTABLE_FIELDS)}")
        if kind == "click":
            if action.get("item") not in CLICKABLE_ITEMS:
                raise ValueError(f"unknown item {action.get('item')!r}; clickable: {', '.join(CLICKABLE_ITEMS)}")
            if "args" in action and not isinstance(action["args"], dict):
                raise ValueError("click 'args' must be an object")
        if kind == "approve" and not isinstance(action.get("request_id"), str):
            raise ValueError("approve needs a string 'request_id'")
        if kind == "screenshot":
            screenshot.check_path(action.get("path"), self.screenshot_folders())

    def screenshot_folders(self) -> tuple[str, ...]:
        """Where the `screenshot` action may write: the project and the system temp folder."""
        return (str(self.app.project_dir), tempfile.gettempdir())

    # ================================================================ GUI thread: frame start
    def apply_queued(self) -> int:
        """Apply every queued action; their futures resolve in `publish()` at frame end."""
        n = 0
        while True:
            try:
                action, fut = self._queue.get_nowait()
            except queue.Empty:
                return n
            n += 1
            if not fut.set_running_or_notify_cancel():
                continue
            if action["action"] == "screenshot":
                try:          # checked again: the project folder may have changed since submit
                    target = screenshot.check_path(action["path"], self.screenshot_folders())
                except ValueError as exc:
                    fut.set_exception(exc)
                    continue
                self._screenshots.append((target, fut))
                continue
            result: dict | None = None
            error: BaseException | None = None
            try:
                result = self._apply(action)
            except (ValueError, KeyError, LookupError) as exc:
                log.info("hook action %s failed: %s", action.get("action"), exc)
                error = exc
            except Exception as exc:     # reported to the caller, and in the log with a traceback
                log.exception("hook action %r crashed", action)
                error = exc
            self._resolve_after_publish.append((fut, result, error))

    def _apply(self, action: dict) -> dict:
        kind = action["action"]
        if kind == "set_value":
            return self.set_field(action["field"], action.get("value"))
        if kind == "click":
            return self.click(action["item"], action.get("args"))
        edits = {k: action[k] for k in ("prompt", "context_md", "args") if k in action}
        return self.app.approve(action["request_id"], bool(action.get("approved", True)), **edits)

    def set_field(self, name: str, value: Any) -> dict:
        """Set one whitelisted field.  ValueError for unknown fields or bad values."""
        app = self.app
        if name not in SETTABLE_FIELDS:
            raise ValueError(f"unknown or read-only field {name!r}; settable: {', '.join(SETTABLE_FIELDS)}")
        if name in ("auto_approve", "auto_queue"):
            if not isinstance(value, bool):
                raise ValueError(f"{name} needs true or false, got {type(value).__name__}")
            (app.set_auto_approve if name == "auto_approve" else app.set_auto_queue)(value)
            return {"field": name, "value": value}
        if name == "tier3_models" and isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if not isinstance(value, str):
            raise ValueError(f"{name} needs a string, got {type(value).__name__}")
        if name == "mma_epic_input":
            app.mma_epic_input = value
        elif name == "current_provider":
            app.set_provider(value)
        elif name in ("ai_input", "current_model"):
            app.ctx.set_value(name, value)
        else:
            setattr(app, name, value)
            app.apply_tier_models()
        return {"field": name, "value": value}

    def click(self, item: str, args: dict | None = None) -> dict:
        """Press a named button: the same App methods the widgets call."""
        app, args = self.app, dict(args or {})
        ticket_id: Any = args.get("ticket_id")     # checked by queue_ticket / set_step_mode

        def dismiss_errors() -> dict:
            app.mma.dismiss_errors()
            return {"dismissed": True}

        def quit_app() -> dict:
            app.request_quit()
            return {"quitting": True}
        handlers: dict[str, Callable[[], Any]] = {
            "btn_mma_plan_epic": app.plan_epic,
            "btn_mma_accept_track": lambda: app.accept_track(args.get("track_id")),
            "btn_mma_reject_track": lambda: app.reject_track(args.get("track_id")),
            "btn_mma_pause": app.pause,
            "btn_mma_resume": app.resume,
            "btn_mma_abort": app.abort,
            "btn_mma_resume_track": lambda: app.resume_track(args.get("track_id")),
            "btn_mma_apply_models": app.apply_tier_models,
            "btn_mma_run_ticket": lambda: app.queue_ticket(ticket_id),
            "btn_mma_step_mode": lambda: app.set_step_mode(ticket_id, bool(args.get("enabled", True))),
            "btn_save_project": app.save_project,
            "btn_dismiss_error": dismiss_errors,
            "btn_send": lambda: self._context_click("btn_send", {}),
            "btn_quit": quit_app,
            **{name: functools.partial(self._context_click, name, args) for name in CONTEXT_ITEMS},
        }
        if item not in handlers:
            raise ValueError(f"unknown item {item!r}; clickable: {', '.join(CLICKABLE_ITEMS)}")
        result = handlers[item]()
        return result if isinstance(result, dict) else {"result": result}

    def _context_click(self, item: str, args: dict) -> dict:
        """A context-panel button (`ContextState.click`); a refusal becomes a ValueError."""
        out = self.app.ctx.click(item, **args)
        if item == "btn_stop":
            return {"stopped": bool(out.get("ok"))}     # nothing streaming is not an error
        if not out.get("ok"):
            raise ValueError(out.get("error") or f"{item} did nothing")
        return {"item": item}

    # ================================================================ GUI thread: frame end
    def publish(self) -> None:
        """Swap in this frame's snapshot, then resolve the futures of the actions it includes."""
        app = self.app
        now = time.monotonic()
        if app.mma.version != self._mma_version:
            self._mma_part = app.mma.snapshot()
            self._mma_version = app.mma.version
        if self._resolve_after_publish or now - self._ctx_at >= CTX_SNAPSHOT_INTERVAL_S:
            part = dict(app.ctx.snapshot())
            part["context_errors"] = part.pop("errors")
            self._ctx_part, self._ctx_at = part, now
        snap = {**self._ctx_part, **self._mma_part, **self.field_values(), **app.comms_log.summary(COMMS_IN_SNAPSHOT)}
        snap.update({
            "provider": app.provider, "model": app.current_model, "epic": app.mma_epic_input,
            "frame_count": app.stats.frame_count, "fps": round(app.stats.fps(), 2),
            "project_dir": str(app.project_dir), "is_mock": app.is_mock,
            "active_track_id": app.active_track_id, "engine_paused": app.engine_paused,
            "saved_tracks": list(app.saved_tracks),     # its dicts are replaced, never changed
            "hook_url": app.hook_url,
            "mcp_servers": app.mcp.snapshot(),
        })
        perf = self._perf
        if now - self._perf_at >= PERF_INTERVAL_S or not perf:
            perf, self._perf_at = app.compute_performance(), now
        else:
            perf = {**perf, "frame_count": app.stats.frame_count}
        with self._lock:
            self._snapshot, self._perf = snap, perf
        done, self._resolve_after_publish = self._resolve_after_publish, []
        for fut, result, error in done:
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result({"ok": True, **(result or {})})

    def field_values(self) -> dict[str, Any]:
        app = self.app
        return {"mma_epic_input": app.mma_epic_input, "ai_input": app.ctx.ai_input,
                "current_provider": app.ctx.current_provider, "current_model": app.ctx.current_model,
                "auto_approve": app.mma.auto_approve, "auto_queue": app.auto_queue,
                "tier1_model": app.tier1_model, "tier2_model": app.tier2_model,
                "tier3_models": app.tier3_models, "tier4_model": app.tier4_model}

    # ================================================================ GUI thread: before swap
    def capture_screenshots(self) -> int:
        """Answer pending screenshot actions from the frame just rendered (GL context current)."""
        if not self._screenshots:
            return 0
        from imgui_bundle import imgui
        io = imgui.get_io()
        width = int(io.display_size.x * io.display_framebuffer_scale.x)
        height = int(io.display_size.y * io.display_framebuffer_scale.y)
        shots, self._screenshots = self._screenshots, []
        for path, fut in shots:
            try:
                info = screenshot.capture(path, width, height)
            except (screenshot.ScreenshotError, OSError, ValueError) as exc:
                log.error("screenshot to %s failed: %s", path, exc)
                fut.set_exception(ValueError(str(exc)))
            else:
                fut.set_result({"ok": True, "frame": self.app.stats.frame_count, **info})
        return len(shots)

    def close(self) -> None:
        """Cancel everything not answered yet (the app is closing)."""
        running = [f for f, _r, _e in self._resolve_after_publish] + [f for _p, f in self._screenshots]
        self._resolve_after_publish, self._screenshots = [], []
        for fut in running:          # already running: cancel() would not take
            fut.set_exception(concurrent.futures.CancelledError("the app closed"))
        while True:
            try:
                self._queue.get_nowait()[1].cancel()
            except queue.Empty:
                return
