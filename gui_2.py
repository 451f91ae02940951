"""MMA Desk, the desktop app: `App` (state + actions, no window needed) and `main()`.

Threading (see docs/guide_gui.md, "Threading and the frame drain"):

    GUI thread (this module)          engine thread (EngineThread loop)       worker threads
    each frame:                        _process_event_queue():                 run_worker_lifecycle
      process_pending_gui_tasks()  <--   name, payload = await q.get()   <--   q.put_threadsafe(...)
        -> MMAState.apply()              _pending_gui_tasks.put(...)
      hooks.apply_queued()  (hook API actions)
      render panels
      hooks.publish()       (snapshot, then the actions' futures)
    user actions --> engine_thread.submit(coro) (a Future, checked each frame)
                 --> ConductorEngine.pause/resume/abort/... (thread-safe)
                 --> approval future.set_result({...}) (thread-safe)

Nothing on the GUI thread blocks on the engine, and nothing off the GUI thread
touches GUI state: the only ways across are the AsyncEventQueue, the
`queue.SimpleQueue` of pending GUI tasks, futures, and `loop.call_soon_threadsafe`.

Where the rest lives: `gui/commands.py` (what the buttons do, a mixin of App),
`gui/hook_actions.py` (hook API fields, clicks, the published snapshot),
`gui/layout.py` (runner params, docking layout, menus and bars; it mounts each
`gui/panel_*.py` window as `draw(state, actions)`, the App satisfying the
panels' `actions` Protocols),
`gui/frame_stats.py` (frame timing), `gui/context_state.py` (the context panels).
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import queue
import reprlib
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ai_client
import events
import project as project_mod
import prompt_cache
from gui.changes import ChangesCommands, ChangesState
from gui.commands import RUN_LABELS, PipelineCommands
from gui.comms_log import CommsLog
from gui.context_state import ContextState, session_log_dir
from gui.frame_stats import FrameStats
from gui.hook_actions import HookSurface
from gui.layout import APP_TITLE, DEFAULT_WINDOW_SIZE, WIN_APPROVALS, build_runner_params
from gui.mcp_servers import McpServers, chat_tool_approver
from gui.mma_state import MMAState
from pipeline import EngineThread, Pipeline, was_reported
from providers.credentials import install_log_redaction
from run_settings import RunSettings

if TYPE_CHECKING:
    from api_hooks import HookServer

log = logging.getLogger("gui_2")

DEFAULT_HOOK_PORT = 8999
FRAME_BUDGET_MS = 4.0
SHUTDOWN_GRACE_S = 3.0                 # an aborted track gets this long to stop and save its state
PIPELINE_LABELS = ("Plan epic", *RUN_LABELS)   # App._submit labels of the pipeline's steps
HOOK_URL_PREFIX = "MMA_HOOKS"          # `main` prints "MMA_HOOKS http://127.0.0.1:<port>/?token=<t>" to stdout


class App(PipelineCommands, ChangesCommands):
    """All of MMA Desk's state and actions.  Construct on the GUI thread.

    Everything a button does is a method here or in `PipelineCommands` (the
    panels only call them), so tests and the hook API reach the same code
    without a window.
    """

    def __init__(self, project_dir: str | os.PathLike | None = None, provider: str | None = None, *,
                 require_spawn_approval: bool = True, auto_queue: bool = True, tools_enabled: bool = True):
        self.project_dir = Path(project_dir or os.getcwd()).expanduser().resolve()
        self.project_dir.mkdir(parents=True, exist_ok=True)
        # Session logs (JSON Lines, redacted) go where the headless CLI puts them.
        ai_client.configure(session_log_dir=session_log_dir(self.project_dir))
        self.mma = MMAState()
        self.stats = FrameStats()
        self.max_frames: int | None = None
        self.hook_server: HookServer | None = None
        self.hooks = HookSurface(self)
        self.idling_enabled = True
        self.views: dict[str, Any] = {}         # what the window chrome showed this frame ("top_bar"), GUI thread
        self._closed = False
        self._quit_requested = False
        self.quit_prompt = False                # File > Quit could not save: the dialog is open
        self._runner_params = None
        self._focus_approvals = False

        # -- the context panels' state owns the one ProjectConfig and the chat ---------------
        # Background builds keep frames coming while a large glob is measured; autosave keeps
        # what the user curates across restarts however the app is closed (gui/autosave.py).
        self.ctx = ContextState(self.project_dir, provider, background_builds=True, autosave=True)
        self.mma_epic_input = self.ctx.config.epic
        self._epic_loads = self.ctx.project_loads     # the load the epic box belongs to
        self._epic_synced = self.mma_epic_input         # the box's text last synced with a project
        self.comms_log = CommsLog()
        self.comms_log.install()
        cfg = self.project
        provider = self.ctx.current_provider
        self.run_settings = RunSettings.for_provider(
            provider, cfg.tier_models() if cfg.path.exists() and cfg.provider == provider else None,
            max_workers=cfg.budgets.max_workers, auto_queue=auto_queue,
            require_spawn_approval=require_spawn_approval, tools_enabled=tools_enabled,
            approval_timeout=cfg.budgets.approval_timeout_s)
        self._load_tier_inputs()

        # -- engine thread, event queue, pipeline -----------------------------------------
        self.engine_thread = EngineThread()
        self.event_queue = events.AsyncEventQueue(loop=self.engine_thread.loop)
        self.pipeline = Pipeline(self.project_dir, self.run_settings, event_queue=self.event_queue)
        prompt_cache.sweep_in_background(self.project_dir)   # caches a dead run left behind
        self._active_track_id: str | None = None
        self._pending_gui_tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._futures: list[tuple[str, concurrent.futures.Future, bool]] = []
        self._step_mode_local: dict[str, bool] = {}
        self._project_switch_noted: Path | None = None
        self.saved_tracks: list[dict] = []      # the dashboard's Saved tracks (conductor_io.list_tracks)
        self.changes = ChangesState()           # the Changes window (gui/changes.py)
        self.workspace_offer: dict | None = None
        self._workspace_proceed: set[str] = set()
        self.prune_abandoned_worktrees()
        self._seen_status = self.mma.mma_status
        self._chat_usage_seen = 0
        self.refresh_saved_tracks()
        self.ctx.on_provider_changed = self._follow_provider
        # MCP servers as tools, and the chat's tool approvals in the Approvals window
        self.mcp = McpServers(self.ctx)
        self.ctx.tool_approver = chat_tool_approver(self.event_queue, lambda: self.run_settings.approval_timeout)
        self.mcp.poll()
        self._pump_future = self.engine_thread.submit(self._process_event_queue())
        self._pump_future.add_done_callback(self._on_pump_done)
        self.hooks.publish()
        log.info("MMA Desk on %s, provider %s", self.project_dir, self.provider)

    @property
    def project(self) -> project_mod.ProjectConfig:
        """The one ProjectConfig (owned by the context state; a new object after Open/Reload)."""
        return self.ctx.config

    @property
    def current_provider(self) -> str:
        return self.ctx.current_provider

    @property
    def current_model(self) -> str:
        return self.ctx.current_model

    @property
    def is_mock(self) -> bool:
        return self.provider == "mock"

    @property
    def frame_count(self) -> int:
        return self.stats.frame_count

    @property
    def hook_url(self) -> str | None:
        """The hook API's address while its server listens, else None (without the token: this
        is shown in the Diagnostics window and the snapshot, and may end up in a screenshot)."""
        server = self.hook_server
        return server.base_url if server is not None and server.port else None

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
            self._pending_gui_tasks.put((events.MMA_ERROR, events.ErrorEvent(
                f"the event pump stopped: {exc}", "restart MMA Desk")))

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
        self.stats.note_events(applied)
        if len(self.mma.pending_approvals) > approvals_before:
            self._focus_approvals = True
        return applied

    @property
    def gui_queue_depth(self) -> int:
        return self._pending_gui_tasks.qsize()

    def _submit(self, label: str, coro, reported_by_pipeline: bool = False) -> concurrent.futures.Future:
        fut = self.engine_thread.submit(coro)
        self._futures.append((label, fut, reported_by_pipeline))
        return fut

    def check_futures(self) -> None:
        """Surface the exception of any finished engine coroutine as an error (GUI thread)."""
        keep = []
        run_ended = False
        for label, fut, reported in self._futures:
            if not fut.done():
                keep.append((label, fut, reported))
                continue
            run_ended = run_ended or label in RUN_LABELS
            if fut.cancelled():
                log.info("%s was cancelled", label)
                continue
            exc = fut.exception()
            if exc is None:
                log.info("%s finished: %s", label, reprlib.repr(fut.result()))
                continue
            if label in PIPELINE_LABELS and self.mma.pipeline_active:
                # whatever failed, the dashboard must not stay "planning"/"starting"/"running"
                self.mma.mma_status, self.mma.active_tier = "error", None
                self.mma.version += 1
            if label == "Accept track" and self._active_track_id not in self.pipeline.engines:
                self.mma.accepted_track_ids.discard(self._active_track_id or "")   # Tier 2 failed: accept again
            if reported and was_reported(exc):
                log.info("%s failed (already reported by the pipeline): %s", label, exc)
                continue
            log.error("%s failed: %r", label, exc, exc_info=exc)
            hint = getattr(exc, "hint", "") or "see the log for details"
            self.mma.add_error(f"{label} failed: {type(exc).__name__}: {exc}", hint)
        self._futures = keep
        if run_ended:                   # the track's final state.json is written: show its progress
            self.refresh_saved_tracks()

    @property
    def futures_in_flight(self) -> int:
        return sum(1 for _l, f, _r in self._futures if not f.done())

    # ==================================================================== hook interface
    def submit_action(self, action: dict) -> concurrent.futures.Future:
        """Queue a hook action; it is applied at the next frame start and its future resolves
        once that frame's snapshot is published (see gui/hook_actions.py)."""
        return self.hooks.submit(action)

    @property
    def resolves_after_publish(self) -> bool:
        return self.hooks.resolves_after_publish

    def get_state_snapshot(self) -> dict:
        return self.hooks.snapshot()

    def get_field(self, name: str) -> Any:
        snap = self.hooks.snapshot()
        if name not in snap:
            raise ValueError(f"unknown field {name!r}; known: {', '.join(sorted(snap))}")
        return snap[name]

    def get_performance(self) -> dict:
        return self.hooks.performance()

    def set_field(self, name: str, value: Any) -> dict:
        return self.hooks.set_field(name, value)

    def click(self, item: str, args: dict | None = None) -> dict:
        return self.hooks.click(item, args)

    # ==================================================================== per frame
    def is_busy(self) -> bool:
        """Anything in flight that should keep frames coming (idling off)."""
        return (self.mma.busy or self.ctx.busy or self.mcp.busy or self.ctx.building or self.futures_in_flight > 0
                or not self._pending_gui_tasks.empty() or self.hooks.pending)

    def workers_busy(self) -> int:
        return sum(len(e.running) for e in list(self.pipeline.engines.values()))

    def frame_start(self) -> None:
        """Before the frame's widgets: drain engine events and hook actions (GUI thread)."""
        self.process_pending_gui_tasks()
        self._follow_run_status()
        self.hooks.apply_queued()
        self.check_futures()
        self.changes.poll()
        self.mma.prune_resolved()
        self.sync_epic()
        self.ctx.poll()
        self.mcp.poll()
        if self.ctx.chat_usage_version != self._chat_usage_seen:
            self._chat_usage_seen = self.ctx.chat_usage_version
            self.mma.set_chat_usage(self.ctx.chat_usage.snapshot()["Chat"])
        self.sync_project_dir()
        self.comms_log.drain()
        self.idling_enabled = not self.is_busy()
        rp = self._runner_params
        if rp is not None:
            rp.fps_idling.enable_idling = self.idling_enabled
            if self._focus_approvals:
                rp.docking_params.focus_dockable_window(WIN_APPROVALS)
            if self._quit_requested:
                rp.app_shall_exit = True
        self._focus_approvals = False

    def _follow_run_status(self) -> None:
        """A track started running: its state.json exists now, list it under Saved tracks.
        (The end of a run is noticed in check_futures, once the final state is on disk.)"""
        status = self.mma.mma_status
        if status != self._seen_status:
            self._seen_status = status
            if status == "running":
                self.refresh_saved_tracks()

    def frame_end(self) -> None:
        """After the frame's widgets: statistics, the published snapshot, --max-frames."""
        self.stats.tick()
        self.hooks.publish()
        if self.max_frames is not None and self.stats.frame_count >= self.max_frames:
            self.request_quit()

    def before_swap(self) -> None:
        """The frame is rendered, not yet shown: answer screenshot requests from it."""
        self.hooks.capture_screenshots()

    def compute_performance(self) -> dict:
        engine_depth, gui_depth = self.event_queue.qsize(), self._pending_gui_tasks.qsize()
        return {**self.stats.report(), "event_queue_depth": engine_depth + gui_depth,
                "engine_queue_depth": engine_depth, "gui_queue_depth": gui_depth,
                "workers_busy": self.workers_busy(), "pending_approvals": len(self.mma.pending_approvals),
                "idling_enabled": self.idling_enabled}

    # ==================================================================== window
    def build_runner_params(self, window_size: tuple[int, int] | None = DEFAULT_WINDOW_SIZE, *,
                            ini_disable: bool = False, max_frames: int | None = None,
                            title: str = APP_TITLE):
        """RunnerParams + AddOnsParams for `immapp.run` (or `immapp.testing.run`)."""
        self.max_frames = max_frames
        rp, addons = build_runner_params(self, window_size, ini_disable=ini_disable, title=title)
        self._runner_params = rp
        return rp, addons

    def run(self, window_size: tuple[int, int] | None = DEFAULT_WINDOW_SIZE, *, ini_disable: bool = False,
            max_frames: int | None = None) -> None:
        from imgui_bundle import immapp
        rp, addons = self.build_runner_params(window_size, ini_disable=ini_disable, max_frames=max_frames)
        immapp.run(rp, addons)

    def shutdown(self) -> None:
        """Stop everything this app started (idempotent).  Called before the window closes."""
        if self._closed:
            return
        self._closed = True
        self.ctx.cancel_markdown_waiters()
        for approval in list(self.mma.pending_approvals.values()):
            if approval.future is not None:
                approval.future.cancel()
        self.pipeline.stop()               # a planning call too: quitting never waits for one
        # An aborted engine stops its workers between stream chunks and saves the track's final
        # state (tickets back to todo, resumable); give it a moment before cancelling the rest.
        running = [fut for _label, fut, _r in self._futures if not fut.done()]
        if running:
            _done, late = concurrent.futures.wait(running, timeout=SHUTDOWN_GRACE_S)
            for fut in late:
                log.warning("an engine task did not stop within %.0f s; cancelling it", SHUTDOWN_GRACE_S)
                fut.cancel()
        if self.hook_server is not None:
            self.hook_server.stop()
        self.hooks.close()
        try:
            self.engine_thread.submit(_cancel_other_tasks()).result(timeout=SHUTDOWN_GRACE_S)
        except concurrent.futures.TimeoutError:
            log.warning("engine loop tasks did not finish cancelling within %.0f s", SHUTDOWN_GRACE_S)
        self.engine_thread.stop()
        log.info("engine thread stopped")
        self.comms_log.uninstall()
        self.sync_epic()
        recovered = self.ctx.flush_on_exit()       # hot exit: nothing the user curated is lost
        if recovered is not None:
            log.warning("unsaved project written to %s (the project file could not be saved)", recovered)
        self.ctx.close()
        self.changes.close()
        self.mcp.close()
        log.info("MMA Desk closed")


async def _cancel_other_tasks() -> None:
    """On the engine loop: cancel every other task (the event pump, ...) and let each finish."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


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
                   help="serve the loopback hook API for scripts and tests; every request needs the token "
                        "in the printed MMA_HOOKS URL (MMA_HOOK_TOKEN chooses it)")
    p.add_argument("--hook-port", type=int, default=DEFAULT_HOOK_PORT,
                   help=f"hook API port (default {DEFAULT_HOOK_PORT}; 0 picks a free one)")
    p.add_argument("--window-size", type=_window_size, default=None, metavar="WxH",
                   help="initial window size, e.g. 1280x800 (default: as last time, else "
                        f"{DEFAULT_WINDOW_SIZE[0]}x{DEFAULT_WINDOW_SIZE[1]})")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="exit after N frames (smoke tests)")
    p.add_argument("--no-ini", action="store_true", help="do not read or write the window layout file")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _quit_on_signals(app: App) -> dict:
    """SIGTERM / SIGINT ask the app to close the window at the next frame (the normal quit
    path: engines aborted, hook server and engine thread stopped, exit status 0).  Returns the
    previous handlers.  Python runs the handler on the main thread between the frame's
    Python callbacks, so it only sets a flag; a second signal while closing changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        log.info("main() off the main thread: no SIGTERM/SIGINT handlers")
        return {}

    def handler(signum: int, _frame) -> None:
        log.info("%s received: closing MMA Desk", signal.Signals(signum).name)
        app.request_quit()
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    # Only the explicit flag opens the control port: an environment variable is inherited by
    # every child process, so it could open one nobody asked for (docs/guide_tools.md).
    if os.environ.get("MMA_TEST_HOOKS") and not args.enable_test_hooks:
        log.warning("MMA_TEST_HOOKS no longer opens the hook API; start with --enable-test-hooks")
    token = None
    if args.enable_test_hooks:
        from api_hooks import choose_token
        try:
            token = choose_token()
        except ValueError as exc:
            _parser().error(str(exc))
    app = App(args.project, provider=args.provider)
    previous = _quit_on_signals(app)
    try:
        if token is not None:
            from api_hooks import HookServer
            server = HookServer(app, port=args.hook_port, token=token)
            app.hook_server = server
            server.start()
            print(f"{HOOK_URL_PREFIX} {server.url}", flush=True)  # noqa: T201  (scripts read the URL from stdout)
        window_size = args.window_size if args.window_size is not None or not args.no_ini else DEFAULT_WINDOW_SIZE
        app.run(window_size, ini_disable=args.no_ini, max_frames=args.max_frames)
    finally:
        app.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
