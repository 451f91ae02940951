"""MMA Desk, the desktop app: `App` (state + actions, no window needed) and `main()`.

Threading (see docs/guide_gui.md and ../shared/design.md):

    GUI thread (this module)          engine thread (EngineThread loop)       worker threads
    each frame:                        _process_event_queue():                 run_worker_lifecycle
      process_pending_gui_tasks()  <--   name, payload = await q.get()   <--   q.put_threadsafe(...)
        -> MMAState.apply()              _pending_gui_tasks.put(...)
      apply queued hook actions
      render panels
    user actions --> engine_thread.submit(coro) (a Future, checked each frame)
                 --> ConductorEngine.pause/resume/abort/... (thread-safe)
                 --> approval future.set_result({...}) (thread-safe)

Nothing on the GUI thread blocks on the engine, and nothing off the GUI thread
touches GUI state: the only ways across are the AsyncEventQueue, the
`queue.SimpleQueue` of pending GUI tasks, futures, and `loop.call_soon_threadsafe`.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import importlib
import logging
import os
import queue
import reprlib
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import events
import multi_agent_conductor as mac
import project as project_mod
from gui.mma_state import MMAState
from pipeline import EngineThread, Pipeline
from providers.base import ProviderError

log = logging.getLogger("gui_2")

APP_TITLE = "MMA Desk"
DEFAULT_WINDOW_SIZE = (1280, 800)
DEFAULT_HOOK_PORT = 8999
MOCK_BANNER = "Offline mock provider — set GEMINI_API_KEY or ANTHROPIC_API_KEY for real models"
FRAME_BUDGET_MS = 4.0
FPS_MAX = 60
FRAME_HISTORY = 600
CTX_SNAPSHOT_INTERVAL_S = 0.1

# Dockable windows (labels are what the View menu and the Test Engine see).
WIN_MMA = "MMA Dashboard"
WIN_DAG = "Ticket DAG"
WIN_STREAMS = "Tier Streams"
WIN_USAGE = "Usage & Cost"
WIN_APPROVALS = "Approvals"
WIN_DIAGNOSTICS = "Diagnostics"

# The context panels (gui/panel_project.py & co.): (window label, module, dock space, what
# their `draw(...)` takes: the ContextState `app.ctx` or the CommsLog `app.comms_log`).
CONTEXT_PANELS = (
    ("Project", "gui.panel_project", "LeftSpace", "ctx"),
    ("Discussion", "gui.panel_discussion", "LeftSpace", "ctx"),
    ("Budget", "gui.panel_budget", "LeftSpace", "ctx"),
    ("Comms", "gui.panel_comms", "BottomSpace", "comms_log"),
)

TIER_FIELDS = {"tier1_model": "Tier 1", "tier2_model": "Tier 2", "tier3_models": "Tier 3",
               "tier4_model": "Tier 4"}
SETTABLE_FIELDS = ("mma_epic_input", "ai_input", "current_provider", "current_model", "auto_approve",
                   "auto_queue", *TIER_FIELDS)
CLICKABLE_ITEMS = ("btn_mma_plan_epic", "btn_mma_accept_track", "btn_mma_reject_track", "btn_mma_pause",
                   "btn_mma_resume", "btn_mma_abort", "btn_mma_apply_models", "btn_mma_run_ticket",
                   "btn_mma_step_mode", "btn_save_project", "btn_dismiss_error", "btn_send", "btn_quit")
ACTIONS = ("set_value", "click", "approve")


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


class App:
    """All of MMA Desk's state and actions.  Construct on the GUI thread.

    Everything a button does is a method here (the panels only call them), so
    tests and the hook API reach the same code without a window.
    """

    def __init__(self, project_dir: str | os.PathLike | None = None, provider: str | None = None, *,
                 require_spawn_approval: bool = True, auto_queue: bool = True, tools_enabled: bool = True,
                 with_context: bool = True):
        self.project_dir = Path(project_dir or os.getcwd()).expanduser().resolve()
        self.project_dir.mkdir(parents=True, exist_ok=True)
        self.mma = MMAState()
        self.mma_epic_input = ""
        self._own_ai_input = ""
        self.frame_count = 0
        self.max_frames: int | None = None
        self.hook_server = None
        self._closed = False
        self._runner_params = None

        # -- context panels' state (owned by the context-panel engineer's module) --------
        self.ctx = None
        self.comms_log = None
        self._own_project = None
        if with_context:
            self._make_context_state(provider)
        if self.ctx is None:
            cfg, err = project_mod.load_project_or_last_good(self.project_dir)
            self._own_project = cfg
            if err:
                self.mma.add_error(str(err), "fix the project file; the last good settings are in use")
            self._own_provider = self._pick_provider(provider, cfg)
            import ai_client
            self._own_model = ai_client.DEFAULT_MODELS.get(self._own_provider, "")
        cfg = self.project
        self.provider = self.current_provider

        # -- per-tier models (the project's, else the provider's defaults) -----------------
        models = (cfg.models if cfg.path.exists() else project_mod.default_tier_models(
            self.provider if self.provider in project_mod.PROVIDERS else "mock"))
        self.tier_models: dict[str, Any] = {k: (list(v) if isinstance(v, list) else v) for k, v in models.items()}
        self._load_tier_inputs()

        # -- engine thread, event queue, pipeline -----------------------------------------
        self.engine_thread = EngineThread()
        self.event_queue = events.AsyncEventQueue(loop=self.engine_thread.loop)
        self.pipeline = Pipeline(
            self.project_dir, provider=self.provider, tier_models=self.tier_models,
            event_queue=self.event_queue, max_workers=cfg.budgets.max_workers,
            require_spawn_approval=require_spawn_approval, auto_queue=auto_queue,
            tools_enabled=tools_enabled, approval_timeout=cfg.budgets.approval_timeout_s)
        self.auto_queue = auto_queue
        self._active_track_id: str | None = None
        self._pending_gui_tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._actions: queue.SimpleQueue = queue.SimpleQueue()
        self._futures: list[tuple[str, concurrent.futures.Future, bool]] = []
        self._step_mode_local: dict[str, bool] = {}
        self._project_switch_noted: Path | None = None
        if self.ctx is not None and hasattr(self.ctx, "on_provider_changed"):
            self.ctx.on_provider_changed = self._follow_provider
        self._pump_future = self.engine_thread.submit(self._process_event_queue())
        self._pump_future.add_done_callback(self._on_pump_done)

        # -- frame statistics -----------------------------------------------------------------
        self.frame_times_ms: collections.deque[float] = collections.deque(maxlen=FRAME_HISTORY)
        self._events_window: collections.deque[tuple[float, int]] = collections.deque()
        self.events_applied_total = 0
        self.idling_enabled = True
        self._last_frame_t: float | None = None
        self._focus_approvals = False
        self._snapshot_lock = threading.Lock()
        self._snapshot: dict = {}
        self._perf: dict = {}
        self._mma_snap_version = -1
        self._mma_snap: dict = {}
        self._ctx_snap: dict = {}
        self._ctx_snap_at = 0.0
        self._perf_at = 0.0
        self.node_editor_context = None       # created by panel_mma.render_dag on first use
        self.views: dict[str, Any] = {}         # per-panel view state (scroll, caches), GUI thread
        self._publish()
        log.info("MMA Desk on %s, provider %s", self.project_dir, self.provider)

    # ==================================================================== setup helpers
    def _make_context_state(self, provider: str | None) -> None:
        try:
            from gui import context_state
        except ModuleNotFoundError as exc:
            if exc.name != "gui.context_state":
                raise
            log.info("gui.context_state is not available; context panels are off")
            return
        self.ctx = context_state.ContextState(self.project_dir, provider)
        comms_cls = getattr(context_state, "CommsLog", None)
        if comms_cls is not None:
            self.comms_log = comms_cls()
            self.comms_log.install()

    @staticmethod
    def _pick_provider(explicit: str | None, cfg) -> str:
        import ai_client
        for name in (explicit, os.environ.get("MMA_PROVIDER", "").strip().lower() or None,
                     cfg.provider if cfg.path.exists() else None):
            if name in project_mod.PROVIDERS:
                return name
        fallback = ai_client.default_provider()
        return fallback if fallback in project_mod.PROVIDERS else "mock"

    @property
    def project(self):
        """The one ProjectConfig (owned by the context state when it exists)."""
        return self.ctx.config if self.ctx is not None else self._own_project

    @property
    def current_provider(self) -> str:
        return self.ctx.current_provider if self.ctx is not None else self._own_provider

    @property
    def current_model(self) -> str:
        return self.ctx.current_model if self.ctx is not None else self._own_model

    @property
    def ai_input(self) -> str:
        return self.ctx.ai_input if self.ctx is not None else self._own_ai_input

    @property
    def is_mock(self) -> bool:
        return self.provider == "mock"

    def _load_tier_inputs(self) -> None:
        def one(v: Any) -> str:
            return v[0] if isinstance(v, list) and v else str(v or "")
        self.tier1_model = one(self.tier_models.get("Tier 1"))
        self.tier2_model = one(self.tier_models.get("Tier 2"))
        t3 = self.tier_models.get("Tier 3") or []
        self.tier3_models = ", ".join(t3 if isinstance(t3, list) else [t3])
        self.tier4_model = one(self.tier_models.get("Tier 4"))

    # ==================================================================== the event pump
    async def _process_event_queue(self) -> None:
        """Runs ON THE ENGINE LOOP: forward every engine event to the GUI thread's inbox."""
        while True:
            name, payload = await self.event_queue.get()
            self._pending_gui_tasks.put((name, payload))

    def _on_pump_done(self, fut: concurrent.futures.Future) -> None:
        if fut.cancelled():
            log.info("event pump stopped")
            return
        exc = fut.exception()
        if exc is not None:
            log.error("event pump died: %r", exc)
            self._pending_gui_tasks.put((events.MMA_ERROR, {
                "message": f"the event pump stopped: {exc}", "hint": "restart MMA Desk"}))

    def process_pending_gui_tasks(self, budget_ms: float = FRAME_BUDGET_MS) -> int:
        """Apply queued engine events on the GUI thread, for at most `budget_ms` (at least one)."""
        deadline = time.perf_counter() + budget_ms / 1000.0
        applied = 0
        approvals_before = len(self.mma.pending_approvals)
        while True:
            try:
                name, payload = self._pending_gui_tasks.get_nowait()
            except queue.Empty:
                break
            try:
                self.mma.apply(name, payload)
            except Exception as exc:     # one bad event must not kill the frame; surface it
                log.exception("applying event %r failed", name)
                self.mma.add_error(f"could not apply event {name!r}: {exc}", "see the log for the traceback")
            applied += 1
            if time.perf_counter() >= deadline:
                break
        if applied:
            now = time.monotonic()
            self.events_applied_total += applied
            self._events_window.append((now, applied))
        if len(self.mma.pending_approvals) > approvals_before:
            self._focus_approvals = True
        return applied

    @property
    def gui_queue_depth(self) -> int:
        return self._pending_gui_tasks.qsize()

    # ==================================================================== futures
    def _submit(self, label: str, coro, reported_by_pipeline: bool = False) -> concurrent.futures.Future:
        fut = self.engine_thread.submit(coro)
        self._futures.append((label, fut, reported_by_pipeline))
        return fut

    def check_futures(self) -> None:
        """Surface the exception of any finished engine coroutine as an error (GUI thread)."""
        keep = []
        for label, fut, reported in self._futures:
            if not fut.done():
                keep.append((label, fut, reported))
                continue
            if fut.cancelled():
                log.info("%s was cancelled", label)
                continue
            exc = fut.exception()
            if exc is None:
                log.info("%s finished: %s", label, reprlib.repr(fut.result()))
                continue
            if reported and isinstance(exc, (mac.PlanningError, ProviderError, ValueError)):
                log.info("%s failed (already reported by the pipeline): %s", label, exc)
                continue
            log.error("%s failed: %r", label, exc, exc_info=exc)
            hint = getattr(exc, "hint", "") or "see the log for details"
            self.mma.add_error(f"{label} failed: {type(exc).__name__}: {exc}", hint)
        self._futures = keep

    @property
    def futures_in_flight(self) -> int:
        return sum(1 for _l, f, _r in self._futures if not f.done())

    # ==================================================================== actions (buttons)
    def _require_idle(self, what: str) -> None:
        if self.mma.mma_status in ("planning", "running"):
            raise ValueError(f"cannot {what} while the pipeline is {self.mma.mma_status}; "
                             "wait for it to finish or press Abort")

    def context_markdown(self) -> str:
        """The curated context (files, screenshots, discussion) the tiers receive."""
        if self.ctx is None:
            return ""
        self.ctx.refresh()
        bundle = getattr(self.ctx, "bundle", None)
        return bundle.markdown if bundle is not None else ""

    def plan_epic(self) -> dict:
        """Plan Epic: Tier 1 turns the epic into proposed tracks."""
        epic = self.mma_epic_input.strip()
        if not epic:
            raise ValueError("the epic is empty: describe what you want built")
        self._require_idle("plan an epic")
        self.mma.tracks = []
        self.mma.accepted_track_ids.clear()
        for sid in ("Tier 1",):
            self.mma.mma_streams.pop(sid, None)
        self.mma.mma_status, self.mma.active_tier = "planning", "Tier 1"
        self.mma.version += 1
        md = self.context_markdown()
        self._submit("Plan epic", self.pipeline.plan(epic, md), reported_by_pipeline=True)
        return {"submitted": "plan", "epic": epic}

    def accept_track(self, track_id: str | None = None) -> dict:
        """Accept: Tier 2 turns the track into tickets, then the engine runs them."""
        track = self.mma.track(track_id)
        if track is None:
            raise ValueError(f"no proposed track {track_id!r}" if track_id else
                             "no proposed track: press Plan Epic first")
        self._require_idle("accept a track")
        tid = str(track["id"])
        self.mma.accepted_track_ids.add(tid)
        self.mma.mma_streams.pop(mac.TIER2_STREAM, None)
        self.mma.mma_status, self.mma.active_tier = "planning", "Tier 2"
        self.mma.version += 1
        self._active_track_id = tid
        self._step_mode_local.clear()
        self._submit("Accept track", self._accept_and_run(tid), reported_by_pipeline=True)
        return {"submitted": "accept_track", "track_id": tid}

    async def _accept_and_run(self, track_id: str) -> str:
        """On the engine loop: Tier 2 for the track, then run its ticket DAG."""
        track = next((t for t in self.pipeline.tracks if t.id == track_id), None)
        if track is None:
            raise LookupError(f"track {track_id!r} is not in this session's plan")
        engine = await self.pipeline.accept_track(track)
        return await engine.run(self.pipeline.md_content)

    def reject_track(self, track_id: str | None = None) -> dict:
        track = self.mma.track(track_id)
        if track is None:
            raise ValueError(f"no proposed track {track_id!r}" if track_id else "no proposed track to reject")
        tid = str(track["id"])
        self.mma.tracks = [t for t in self.mma.tracks if t.get("id") != tid]
        self.mma.version += 1

        def forget() -> None:          # on the engine loop: the pipeline's list is the loop's
            self.pipeline.tracks = [t for t in self.pipeline.tracks if t.id != tid]
        self.engine_thread.call(forget)
        return {"rejected": tid}

    @property
    def active_engine(self) -> mac.ConductorEngine | None:
        if self._active_track_id is None:
            return None
        return self.pipeline.engines.get(self._active_track_id)   # a dict read: safe off-loop

    def _engine_or_raise(self) -> mac.ConductorEngine:
        engine = self.active_engine
        if engine is None:
            raise ValueError("no track is running: accept a track first")
        return engine

    def pause(self) -> dict:
        self._engine_or_raise().pause()
        return {"paused": True}

    def resume(self) -> dict:
        self._engine_or_raise().resume()
        return {"paused": False}

    def abort(self) -> dict:
        self._engine_or_raise().abort()
        return {"aborted": True}

    @property
    def engine_running(self) -> bool:
        engine = self.active_engine
        return bool(engine is not None and engine.status == "running")

    @property
    def engine_paused(self) -> bool:
        engine = self.active_engine
        return bool(engine is not None and engine.engine.paused)

    def _check_ticket(self, ticket_id: Any) -> str:
        if not isinstance(ticket_id, str) or self.mma.ticket(ticket_id) is None:
            raise ValueError(f"no ticket {ticket_id!r} in the active track")
        return ticket_id

    def queue_ticket(self, ticket_id: str) -> dict:
        self._engine_or_raise().queue_ticket(self._check_ticket(ticket_id))
        return {"queued": ticket_id}

    def set_step_mode(self, ticket_id: str, enabled: bool) -> dict:
        self._engine_or_raise().set_step_mode(self._check_ticket(ticket_id), bool(enabled))
        self._step_mode_local[ticket_id] = bool(enabled)
        return {"ticket_id": ticket_id, "step_mode": bool(enabled)}

    def step_mode_of(self, ticket: dict) -> bool:
        return self._step_mode_local.get(ticket.get("id"), bool(ticket.get("step_mode")))

    def set_auto_queue(self, enabled: bool) -> None:
        self.auto_queue = bool(enabled)
        self.engine_thread.call(setattr, self.pipeline, "auto_queue", self.auto_queue)

    def approve(self, request_id: str, approved: bool = True, **edits: Any) -> dict:
        delivered = self.mma.approve(request_id, approved, **edits)
        return {"request_id": request_id, "approved": bool(approved), "delivered": delivered}

    def set_auto_approve(self, enabled: bool) -> None:
        self.mma.auto_approve = bool(enabled)
        if enabled:
            n = self.mma.approve_all(True)
            if n:
                log.info("auto-approve on: approved %d pending request(s)", n)

    def tier_models_from_inputs(self) -> dict[str, Any]:
        t3 = [m.strip() for m in self.tier3_models.split(",") if m.strip()]
        models = {"Tier 1": self.tier1_model.strip(), "Tier 2": self.tier2_model.strip(),
                  "Tier 3": t3, "Tier 4": self.tier4_model.strip()}
        empty = [tier for tier, m in models.items() if not m]
        if empty:
            raise ValueError(f"model name missing for {', '.join(empty)}")
        return models

    def apply_tier_models(self) -> dict:
        """Use the tier model inputs for the next track (a running track keeps its models)."""
        models = self.tier_models_from_inputs()
        self.tier_models = models
        self.project.models = {k: (list(v) if isinstance(v, list) else v) for k, v in models.items()}
        pipeline_models = {k: (list(v) if isinstance(v, list) else v) for k, v in models.items()}
        self.engine_thread.call(self.pipeline.tier_models.update, pipeline_models)
        return {"tier_models": models}

    def set_provider(self, provider: str) -> dict:
        """Switch provider for the chat and for the next plan/track (a running track keeps its own)."""
        if provider not in project_mod.PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; choose one of {', '.join(project_mod.PROVIDERS)}")
        if self.ctx is not None:
            self.ctx.set_value("current_provider", provider)   # calls back _follow_provider
        else:
            self.project.switch_provider(provider)
            self._own_provider = provider
            self._follow_provider(provider)
        return {"provider": provider}

    def _follow_provider(self, provider: str) -> None:
        """The provider changed (here or in the Discussion panel): the pipeline follows."""
        self.provider = provider
        self.tier_models = {k: (list(v) if isinstance(v, list) else v) for k, v in self.project.models.items()}
        self._load_tier_inputs()
        models = {k: (list(v) if isinstance(v, list) else v) for k, v in self.tier_models.items()}

        def switch() -> None:          # on the engine loop: the pipeline is the loop's
            self.pipeline.provider = provider
            self.pipeline.tier_models.update(models)
        self.engine_thread.call(switch)
        log.info("provider is now %s (tier models %s)", provider, models)

    def save_project(self) -> dict:
        """File > Save project: tier models, prices, provider and the context panels' state."""
        self.apply_tier_models()
        cfg = self.project
        cfg.provider = self.provider
        if self.ctx is not None:
            if not self.ctx.save():
                err = self.ctx.errors[-1] if self.ctx.errors else None
                raise ValueError(err.text() if err is not None else "saving the project failed")
            path = cfg.path
        else:
            try:
                path = project_mod.save_project(cfg)
            except (project_mod.ProjectFileError, OSError) as exc:
                raise ValueError(f"could not save the project: {exc}") from exc
        log.info("project saved to %s", path)
        return {"saved": str(path)}

    def send_chat(self) -> dict:
        if self.ctx is None:
            raise ValueError("the discussion panel is not available")
        return self.ctx.click("btn_send")

    def request_quit(self) -> None:
        rp = self._runner_params
        if rp is not None:
            rp.app_shall_exit = True

    def ui(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Call an action from a widget: a ValueError/KeyError becomes an error-bar entry."""
        try:
            return fn(*args, **kwargs)
        except (ValueError, KeyError, LookupError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            log.warning("%s: %s", getattr(fn, "__name__", "action"), msg)
            self.mma.add_error(str(msg), source="gui")
            return None

    # ==================================================================== hook interface
    def _field_values(self) -> dict[str, Any]:
        return {"mma_epic_input": self.mma_epic_input, "ai_input": self.ai_input,
                "current_provider": self.current_provider, "current_model": self.current_model,
                "auto_approve": self.mma.auto_approve, "auto_queue": self.auto_queue,
                "tier1_model": self.tier1_model, "tier2_model": self.tier2_model,
                "tier3_models": self.tier3_models, "tier4_model": self.tier4_model}

    def set_field(self, name: str, value: Any) -> dict:
        """Set one whitelisted field (GUI thread).  ValueError for unknown fields or bad values."""
        if name not in SETTABLE_FIELDS:
            raise ValueError(f"unknown or read-only field {name!r}; settable: {', '.join(SETTABLE_FIELDS)}")
        if name in ("auto_approve", "auto_queue"):
            if not isinstance(value, bool):
                raise ValueError(f"{name} needs true or false, got {type(value).__name__}")
            (self.set_auto_approve if name == "auto_approve" else self.set_auto_queue)(value)
            return {"field": name, "value": value}
        if name == "tier3_models" and isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if not isinstance(value, str):
            raise ValueError(f"{name} needs a string, got {type(value).__name__}")
        if name == "mma_epic_input":
            self.mma_epic_input = value
        elif name == "current_provider":
            self.set_provider(value)
        elif name in ("ai_input", "current_model"):
            if self.ctx is not None:
                self.ctx.set_value(name, value)
            elif name == "ai_input":
                self._own_ai_input = value
            else:
                self._own_model = value
        else:
            setattr(self, name, value)
            self.apply_tier_models()
        return {"field": name, "value": value}

    def click(self, item: str, args: dict | None = None) -> dict:
        """Press a named button (same methods as the widgets)."""
        args = dict(args or {})
        handlers: dict[str, Callable[[], Any]] = {
            "btn_mma_plan_epic": self.plan_epic,
            "btn_mma_accept_track": lambda: self.accept_track(args.get("track_id")),
            "btn_mma_reject_track": lambda: self.reject_track(args.get("track_id")),
            "btn_mma_pause": self.pause,
            "btn_mma_resume": self.resume,
            "btn_mma_abort": self.abort,
            "btn_mma_apply_models": self.apply_tier_models,
            "btn_mma_run_ticket": lambda: self.queue_ticket(args.get("ticket_id")),
            "btn_mma_step_mode": lambda: self.set_step_mode(args.get("ticket_id"),
                                                            bool(args.get("enabled", True))),
            "btn_save_project": self.save_project,
            "btn_dismiss_error": lambda: self.mma.dismiss_errors() or {"dismissed": True},
            "btn_send": self.send_chat,
            "btn_quit": lambda: self.request_quit() or {"quitting": True},
        }
        if item not in handlers:
            raise ValueError(f"unknown item {item!r}; clickable: {', '.join(CLICKABLE_ITEMS)}")
        result = handlers[item]()
        return result if isinstance(result, dict) else {"result": result}

    def submit_action(self, action: dict) -> concurrent.futures.Future:
        """Queue an action for the GUI thread; the future resolves after the next frame applies it.

        The future's result is `{"ok": True, ...}`; it raises ValueError for an unknown
        action, field or item (checked at once), KeyError for an unknown request id.
        """
        fut: concurrent.futures.Future = concurrent.futures.Future()
        try:
            self._validate_action(action)
        except ValueError as exc:
            fut.set_exception(exc)
            return fut
        self._actions.put((dict(action), fut))
        return fut

    @staticmethod
    def _validate_action(action: Any) -> None:
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

    def apply_actions(self) -> int:
        """Apply every queued hook action (GUI thread, once per frame)."""
        n = 0
        while True:
            try:
                action, fut = self._actions.get_nowait()
            except queue.Empty:
                return n
            n += 1
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = self._apply_action(action)
            except (ValueError, KeyError, LookupError) as exc:
                log.info("hook action %s failed: %s", action.get("action"), exc)
                fut.set_exception(exc)
            except Exception as exc:     # report it to the caller, and in the log with a traceback
                log.exception("hook action %r crashed", action)
                fut.set_exception(exc)
            else:
                fut.set_result({"ok": True, **result})

    def _apply_action(self, action: dict) -> dict:
        kind = action["action"]
        if kind == "set_value":
            return self.set_field(action["field"], action.get("value"))
        if kind == "click":
            return self.click(action["item"], action.get("args"))
        edits = {k: action[k] for k in ("prompt", "context_md", "args") if k in action}
        return self.approve(action["request_id"], bool(action.get("approved", True)), **edits)

    def get_state_snapshot(self) -> dict:
        """A JSON-able copy of the state published at the end of the last frame (any thread).

        The top level is a fresh dict; nested values are shared with the published copy:
        treat them as read-only."""
        with self._snapshot_lock:
            return dict(self._snapshot)

    def get_field(self, name: str) -> Any:
        snap = self.get_state_snapshot()
        if name not in snap:
            raise ValueError(f"unknown field {name!r}; known: {', '.join(sorted(snap))}")
        return snap[name]

    def get_performance(self) -> dict:
        with self._snapshot_lock:
            return dict(self._perf)

    # ==================================================================== per frame
    def is_busy(self) -> bool:
        """Anything in flight that should keep frames coming (idling off)."""
        return (self.mma.busy or bool(self.ctx is not None and self.ctx.busy)
                or self.futures_in_flight > 0 or not self._pending_gui_tasks.empty()
                or not self._actions.empty())

    def sync_project_dir(self) -> bool:
        """Follow a project opened in the Project panel (after a running track has ended)."""
        new_dir = Path(self.ctx.project_dir)
        if new_dir == self.project_dir:
            self._project_switch_noted = None
            return False
        if self.mma.mma_status in ("planning", "running"):
            if self._project_switch_noted != new_dir:
                self._project_switch_noted = new_dir
                self.mma.add_error(f"the MMA pipeline stays on {self.project_dir} until the running "
                                   f"track ends, then follows {new_dir}", "abort the track to switch now")
            return False
        self.project_dir = new_dir
        cfg = self.project
        self.tier_models = {k: (list(v) if isinstance(v, list) else v) for k, v in cfg.models.items()}
        self._load_tier_inputs()
        models = {k: (list(v) if isinstance(v, list) else v) for k, v in self.tier_models.items()}
        provider = self.current_provider
        self.provider = provider

        def switch() -> None:          # on the engine loop
            self.pipeline.project_dir = new_dir
            self.pipeline.provider = provider
            self.pipeline.tier_models.update(models)
            self.pipeline.tracks = []
        self.engine_thread.call(switch)
        self.mma.tracks = []
        self.mma.accepted_track_ids.clear()
        self.mma.version += 1
        log.info("MMA pipeline now on project %s", new_dir)
        return True

    def workers_busy(self) -> int:
        return sum(len(e.running) for e in list(self.pipeline.engines.values()))

    def frame_start(self) -> None:
        """Before the frame's widgets: drain engine events and hook actions (GUI thread)."""
        self.process_pending_gui_tasks()
        self.apply_actions()
        self.check_futures()
        self.mma.prune_resolved()
        if self.ctx is not None:
            self.ctx.poll()
            self.sync_project_dir()
        if self.comms_log is not None:
            self.comms_log.drain()
        busy = self.is_busy()
        self.idling_enabled = not busy
        rp = self._runner_params
        if rp is not None:
            rp.fps_idling.enable_idling = self.idling_enabled
            if self._focus_approvals:
                rp.docking_params.focus_dockable_window(WIN_APPROVALS)
        self._focus_approvals = False

    def frame_end(self) -> None:
        """After the frame's widgets: statistics, the published snapshot, --max-frames."""
        now = time.perf_counter()
        if self._last_frame_t is not None:
            self.frame_times_ms.append((now - self._last_frame_t) * 1000.0)
        self._last_frame_t = now
        self.frame_count += 1
        self._publish()
        if self.max_frames is not None and self.frame_count >= self.max_frames:
            self.request_quit()

    def fps(self) -> float:
        recent = list(self.frame_times_ms)[-60:]
        return 1000.0 * len(recent) / sum(recent) if recent and sum(recent) > 0 else 0.0

    def events_per_s(self) -> float:
        now = time.monotonic()
        while self._events_window and now - self._events_window[0][0] > 1.0:
            self._events_window.popleft()
        return float(sum(n for _t, n in self._events_window))

    def compute_performance(self) -> dict:
        times = sorted(self.frame_times_ms)
        engine_depth = self.event_queue.qsize()
        gui_depth = self._pending_gui_tasks.qsize()
        return {
            "fps": round(self.fps(), 2),
            "frame_count": self.frame_count,
            "frame_time_ms_last": round(self.frame_times_ms[-1], 3) if self.frame_times_ms else 0.0,
            "frame_time_ms_p50": round(_percentile(times, 0.50), 3),
            "frame_time_ms_p99": round(_percentile(times, 0.99), 3),
            "event_queue_depth": engine_depth + gui_depth,
            "engine_queue_depth": engine_depth,
            "gui_queue_depth": gui_depth,
            "events_applied_total": self.events_applied_total,
            "events_per_s": self.events_per_s(),
            "workers_busy": self.workers_busy(),
            "pending_approvals": len(self.mma.pending_approvals),
            "idling_enabled": self.idling_enabled,
        }

    def _publish(self) -> None:
        now = time.monotonic()
        if self.mma.version != self._mma_snap_version:
            self._mma_snap = self.mma.snapshot()
            self._mma_snap_version = self.mma.version
        if self.ctx is not None and now - self._ctx_snap_at >= CTX_SNAPSHOT_INTERVAL_S:
            self._ctx_snap = dict(self.ctx.snapshot())
            if "errors" in self._ctx_snap:
                self._ctx_snap["context_errors"] = self._ctx_snap.pop("errors")
            self._ctx_snap_at = now
        snap = {**self._ctx_snap, **self._mma_snap, **self._field_values()}
        snap.update({
            "provider": self.provider, "model": self.current_model, "epic": self.mma_epic_input,
            "frame_count": self.frame_count, "fps": round(self.fps(), 2),
            "project_dir": str(self.project_dir), "is_mock": self.is_mock,
            "active_track_id": self._active_track_id, "engine_paused": self.engine_paused,
            "hook_url": self.hook_server.url if self.hook_server is not None and self.hook_server.port else None,
        })
        perf = self._perf
        if now - self._perf_at >= 0.1 or not perf:
            perf = self.compute_performance()
            self._perf_at = now
        else:
            perf = {**perf, "frame_count": self.frame_count}
        with self._snapshot_lock:
            self._snapshot = snap
            self._perf = perf

    # ==================================================================== window
    def build_runner_params(self, window_size: tuple[int, int] = DEFAULT_WINDOW_SIZE, *,
                            ini_disable: bool = False, max_frames: int | None = None,
                            title: str = APP_TITLE):
        """RunnerParams + AddOnsParams for `immapp.run` (or `immapp.testing.run`)."""
        self.max_frames = max_frames
        rp, addons = build_runner_params(self, window_size, ini_disable=ini_disable, title=title)
        self._runner_params = rp
        return rp, addons

    def run(self, window_size: tuple[int, int] = DEFAULT_WINDOW_SIZE, *, ini_disable: bool = False,
            max_frames: int | None = None) -> None:
        from imgui_bundle import immapp
        rp, addons = self.build_runner_params(window_size, ini_disable=ini_disable, max_frames=max_frames)
        immapp.run(rp, addons)

    # ==================================================================== shutdown
    def shutdown(self) -> None:
        """Stop everything this app started (idempotent).  Called before the window closes."""
        if self._closed:
            return
        self._closed = True
        for approval in list(self.mma.pending_approvals.values()):
            if approval.future is not None:
                approval.future.cancel()
        for engine in list(self.pipeline.engines.values()):
            engine.abort()
        for _label, fut, _r in self._futures:
            fut.cancel()
        if self.hook_server is not None:
            self.hook_server.stop()
        self._pump_future.cancel()
        self.engine_thread.stop()
        if self.comms_log is not None:
            self.comms_log.uninstall()
        if self.ctx is not None:
            self.ctx.close()
        log.info("MMA Desk closed")


# ======================================================================== window chrome
def _top_bar(app: App) -> None:
    """Mock-provider banner and the error bar (latest error with its hint)."""
    from imgui_bundle import imgui
    from gui import theme
    err = app.mma.latest_error
    # What this frame showed (tests and the hook API read it; text items have no ImGui id).
    app.views["top_bar"] = {"frame": app.frame_count, "banner": MOCK_BANNER if app.is_mock else "",
                            "error": err["message"] if err else "", "hint": (err or {}).get("hint", "")}
    if app.is_mock:
        imgui.text_colored(theme.BANNER_TEXT, MOCK_BANNER)
    else:
        imgui.text(f"Provider: {app.provider}")
        imgui.same_line()
        imgui.text_disabled(f"project {app.project_dir}")
    if err is None:
        imgui.text_disabled(f"MMA: {app.mma.mma_status}"
                            + (f" · {app.mma.active_tier}" if app.mma.active_tier else "")
                            + f" · approvals pending: {len(app.mma.pending_approvals)}")
        return
    if imgui.small_button("Dismiss##error"):
        app.mma.dismiss_errors()
    imgui.same_line()
    message, hint = err["message"], err.get("hint") or ""
    if hint and hint in message:         # provider messages often carry the hint already
        message = message.replace(hint, "").rstrip(" —-:;(")
    message, hint = "Error: " + message, ("— " + hint) if hint else ""
    avail = imgui.get_content_region_avail().x
    if hint and imgui.calc_text_size(message + "  " + hint).x > avail:   # both must show: split the line
        message = _fit_text(message, avail * 0.55)
        hint = _fit_text(hint, avail * 0.45 - imgui.get_style().item_spacing.x)
    imgui.text_colored(theme.ERROR_TEXT, _fit_text(message, avail))
    if imgui.is_item_hovered():
        imgui.set_tooltip(err["message"] + ("\n\n" + err["hint"] if err.get("hint") else ""))
    if hint:
        imgui.same_line()
        imgui.text_colored(theme.HINT_TEXT, hint)
        if imgui.is_item_hovered():
            imgui.set_tooltip(err["hint"])


def _fit_text(text: str, width: float) -> str:
    """`text`, cut with an ellipsis so it is at most `width` pixels wide."""
    from imgui_bundle import imgui
    if imgui.calc_text_size(text).x <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:                       # longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if imgui.calc_text_size(text[:mid] + "...").x <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "..."


def _menus(app: App) -> None:
    from imgui_bundle import imgui
    if imgui.begin_menu("File"):
        if imgui.menu_item("Save project", "Ctrl+S", False)[0]:
            app.ui(app.save_project)
        imgui.separator()
        if imgui.menu_item("Quit", "", False)[0]:
            app.request_quit()
        imgui.end_menu()


def _status_bar(app: App) -> None:
    from imgui_bundle import imgui
    done = sum(1 for t in app.mma.active_tickets if t.get("status") == "completed")
    imgui.text(f"MMA {app.mma.mma_status} | tickets {done}/{len(app.mma.active_tickets)} | "
               f"workers {app.workers_busy()} | approvals {len(app.mma.pending_approvals)} | "
               f"queue {app.gui_queue_depth + app.event_queue.qsize()} | "
               f"{app.fps():.0f} FPS ({'idling' if app.idling_enabled else 'live'})")


def _shortcuts(app: App) -> None:
    from imgui_bundle import imgui
    if imgui.is_key_chord_pressed(imgui.Key.mod_ctrl | imgui.Key.s):
        app.ui(app.save_project)


def _context_panel_windows(app: App) -> list:
    """The context panels that exist in this tree (skipped when absent or without state)."""
    out = []
    for label, module_name, dock, target in CONTEXT_PANELS:
        state = getattr(app, target)
        if state is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            log.info("%s is not available; no %s window", module_name, label)
            continue
        draw = getattr(module, "draw", None)
        if not callable(draw):
            log.error("%s has no draw(state) function; no %s window", module_name, label)
            continue
        out.append((label, (lambda d=draw, s=state: d(s)), dock))
    return out


def build_runner_params(app: App, window_size: tuple[int, int] = DEFAULT_WINDOW_SIZE, *,
                        ini_disable: bool = False, title: str = APP_TITLE):
    """hello_imgui RunnerParams with the docking layout, chrome and per-frame callbacks."""
    from imgui_bundle import hello_imgui, imgui, immapp
    from gui import panel_approvals, panel_diagnostics, panel_mma, theme

    rp = hello_imgui.RunnerParams()
    rp.app_window_params.window_title = title
    rp.app_window_params.window_geometry.size = tuple(window_size)
    rp.ini_disable = ini_disable
    if not ini_disable:
        rp.ini_folder_type = hello_imgui.IniFolderType.app_user_config_folder
        rp.ini_filename = "mma-desk/mma_desk.ini"
    theme.apply_dark_theme(rp)

    wp = rp.imgui_window_params
    wp.default_imgui_window_type = hello_imgui.DefaultImGuiWindowType.provide_full_screen_dock_space
    wp.enable_viewports = False
    wp.show_menu_bar = True
    wp.show_menu_app = False
    wp.show_menu_view = True
    wp.show_status_bar = True
    wp.show_status_fps = False      # its 'Enable idling' box would fight App.frame_start

    # Idling: off while anything is in flight (App.frame_start toggles it), capped at 60 FPS.
    rp.fps_idling.enable_idling = True
    rp.fps_idling.fps_idle = 9.0
    rp.fps_idling.fps_max = FPS_MAX
    rp.fps_idling.remember_enable_idling = False

    cb = rp.callbacks
    cb.pre_new_frame = app.frame_start
    cb.post_render_dockable_windows = app.frame_end
    cb.show_menus = lambda: _menus(app)
    cb.show_status = lambda: _status_bar(app)
    cb.show_gui = lambda: _shortcuts(app)
    cb.add_edge_toolbar(hello_imgui.EdgeToolbarType.top, lambda: _top_bar(app),
                        hello_imgui.EdgeToolbarOptions(size_em=3.0, window_padding_em=imgui.ImVec2(0.6, 0.35)))

    def before_exit() -> None:
        panel_mma.destroy_node_editor(app)
        app.shutdown()
    cb.before_exit = before_exit

    context_windows = _context_panel_windows(app)
    splits = []

    def split(initial: str, new: str, direction, ratio: float) -> None:
        s = hello_imgui.DockingSplit()
        s.initial_dock, s.new_dock, s.direction, s.ratio = initial, new, direction, ratio
        splits.append(s)
    if any(dock == "LeftSpace" for _l, _f, dock in context_windows):
        split("MainDockSpace", "LeftSpace", imgui.Dir.left, 0.22)
    split("MainDockSpace", "BottomSpace", imgui.Dir.down, 0.34)
    split("MainDockSpace", "RightSpace", imgui.Dir.right, 0.38)
    rp.docking_params.docking_splits = splits

    windows = []

    def window(label: str, fn: Callable[[], None], dock: str, focus: bool = False) -> None:
        w = hello_imgui.DockableWindow()
        w.label, w.dock_space_name, w.gui_function = label, dock, fn
        w.focus_window_at_next_frame = focus
        windows.append(w)
    for label, fn, dock in context_windows:
        window(label, fn, dock, focus=label == "Project")
    window(WIN_DAG, lambda: panel_mma.render_dag(app), "MainDockSpace")
    window(WIN_USAGE, lambda: panel_mma.render_usage(app), "MainDockSpace")
    window(WIN_MMA, lambda: panel_mma.render(app), "MainDockSpace", focus=True)
    window(WIN_DIAGNOSTICS, lambda: panel_diagnostics.render(app), "RightSpace")
    window(WIN_APPROVALS, lambda: panel_approvals.render(app), "RightSpace", focus=True)
    window(WIN_STREAMS, lambda: panel_mma.render_streams(app), "BottomSpace", focus=True)
    rp.docking_params.dockable_windows = windows

    addons = immapp.AddOnsParams(with_implot=True, with_markdown=True)
    return rp, addons


# ======================================================================== command line
def _window_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"window size must look like 1280x800, got {text!r}") from None
    if w < 200 or h < 150:
        raise argparse.ArgumentTypeError(f"window size {text!r} is too small (at least 200x150)")
    return w, h


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mma-desk", description="MMA Desk: curated context and a four-tier "
                                "multi-model agent pipeline in one window.")
    p.add_argument("--project", default=os.getcwd(), help="project folder (default: the current folder)")
    p.add_argument("--provider", choices=project_mod.PROVIDERS, default=None,
                   help="model provider (default: MMA_PROVIDER, the project file, a provider with a key, else mock)")
    p.add_argument("--enable-test-hooks", action="store_true",
                   help="serve the loopback hook API for scripts and tests (also MMA_TEST_HOOKS=1)")
    p.add_argument("--hook-port", type=int, default=DEFAULT_HOOK_PORT,
                   help=f"hook API port (default {DEFAULT_HOOK_PORT}; 0 picks a free one)")
    p.add_argument("--window-size", type=_window_size, default=DEFAULT_WINDOW_SIZE, metavar="WxH",
                   help="initial window size, e.g. 1280x800")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="exit after N frames (smoke tests)")
    p.add_argument("--no-ini", action="store_true", help="do not read or write the window layout file")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hooks = args.enable_test_hooks or os.environ.get("MMA_TEST_HOOKS", "").strip() == "1"
    app = App(args.project, provider=args.provider)
    try:
        if hooks:
            from api_hooks import HookServer
            server = HookServer(app, port=args.hook_port)
            app.hook_server = server
            server.start()
        app.run(args.window_size, ini_disable=args.no_ini, max_frames=args.max_frames)
    finally:
        app.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
