"""What the MMA buttons do: `PipelineCommands`, a mixin of `gui_2.App`.

Every method runs on the GUI thread and is what a widget, a keyboard shortcut
and the hook API's `click` all call.  Work for the engine goes to its loop:
coroutines through `App._submit()` (a Future checked each frame), pipeline
fields through `engine_thread.call(...)`, engine controls through the engine's
own thread-safe methods, approvals through their futures.  A refusal is a
`ValueError` (shown in the error bar by `ui()`, answered 400 by the hook API).

What the mixin needs from its host is declared at the top of the class
(attributes `gui_2.App.__init__` sets, and `project` / `_submit`, which App
defines), so mypy checks both the mixin's uses and App's definitions.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import ai_client
import conductor_io
import events
import multi_agent_conductor as mac
import project as project_mod
from gui.context_state import session_log_dir
from pipeline import track_context_path
from providers.catalog import TierModels
from run_settings import RunSettings

if TYPE_CHECKING:
    from imgui_bundle import hello_imgui

    from gui.context_state import ContextState
    from gui.mma_state import MMAState
    from pipeline import EngineThread, Pipeline

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

RUN_LABELS = ("Accept track", "Resume track")     # App._submit labels of coroutines that run a track


class PipelineCommands:
    # ---------------------------------------------------------------- provided by the host (gui_2.App)
    mma: MMAState
    ctx: ContextState
    pipeline: Pipeline
    engine_thread: EngineThread
    event_queue: events.AsyncEventQueue
    project_dir: Path
    run_settings: RunSettings
    mma_epic_input: str
    saved_tracks: list[dict]
    _active_track_id: str | None
    _futures: list[tuple[str, concurrent.futures.Future, bool]]
    _step_mode_local: dict[str, bool]
    _project_switch_noted: Path | None
    _quit_requested: bool
    _runner_params: hello_imgui.RunnerParams | None
    quit_prompt: bool
    _epic_loads: int
    _epic_synced: str

    if TYPE_CHECKING:
        @property
        def project(self) -> project_mod.ProjectConfig: ...

        def _submit(self, label: str, coro: Coroutine[Any, Any, Any],
                    reported_by_pipeline: bool = False) -> concurrent.futures.Future: ...

        def workspace_gate(self, track_id: str) -> dict | None: ...

    # ---------------------------------------------------------------- plan and accept
    def _require_idle(self, what: str) -> None:
        if self.mma.pipeline_active:
            raise ValueError(f"cannot {what} while the pipeline is {self.mma.mma_status}; "
                             "wait for it to finish or press Abort")

    def context_markdown(self) -> str:
        """The curated context (files, screenshots, discussion) the tiers receive (waits for a
        build in flight; the buttons use `ctx.markdown_when_ready()` instead)."""
        self.ctx.refresh()
        return self.ctx.bundle.markdown if self.ctx.bundle is not None else ""

    def plan_epic(self) -> dict:
        """Plan Epic: Tier 1 turns the epic into proposed tracks (with the curated context,
        awaited on the engine loop if it is still being measured)."""
        epic = self.mma_epic_input.strip()
        if not epic:
            raise ValueError("the epic is empty: describe what you want built")
        self._require_idle("plan an epic")
        self.mma.new_run("plan")
        self.mma.tracks = []
        self.mma.accepted_track_ids.clear()
        self.mma.mma_streams.pop("Tier 1", None)
        self.mma.mma_status, self.mma.active_tier = "planning", "Tier 1"
        self.mma.version += 1
        self._submit("Plan epic", self._plan_when_ready(epic, self.ctx.markdown_when_ready()),
                     reported_by_pipeline=True)
        return {"submitted": "plan", "epic": epic}

    async def _plan_when_ready(self, epic: str, markdown: concurrent.futures.Future[str]) -> Any:
        """On the engine loop: wait for the measured context, then Tier 1."""
        return await self.pipeline.plan(epic, await asyncio.wrap_future(markdown))

    def accept_track(self, track_id: str | None = None) -> dict:
        """Accept: Tier 2 turns the track into tickets, then the engine runs them."""
        track = self.mma.track(track_id)
        if track is None:
            raise ValueError(f"no proposed track {track_id!r}" if track_id else
                             "no proposed track: press Plan Epic first")
        self._require_idle("accept a track")
        tid = str(track["id"])
        offer = self.workspace_gate(tid)          # gui/changes.py: uncommitted changes? ask first
        if offer is not None:
            return {"needs_answer": offer["kind"], "track_id": tid}
        self.mma.start_track(tid, str(track.get("title") or tid))
        self.mma.accepted_track_ids.add(tid)
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
            events.emit(self.event_queue, events.StateUpdate("error", None))     # not left "planning"
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

    # ---------------------------------------------------------------- saved tracks (resume)
    def refresh_saved_tracks(self) -> list[dict]:
        """Re-read the project's tracks (`conductor_io.list_tracks`) for the Saved tracks list.

        Called at start, when the project changes, when a track starts running and when a
        run's coroutine ends (its final state.json is written by then) -- not every frame.
        """
        try:
            summaries = conductor_io.list_tracks(self.project_dir)
        except (OSError, ValueError) as exc:
            log.error("listing the saved tracks of %s failed: %s", self.project_dir, exc)
            self.mma.add_error(f"could not list the saved tracks: {exc}",
                               "check conductor/tracks.md and the track folders")
            return self.saved_tracks
        self.saved_tracks = [{
            "id": s.id, "title": s.title, "status": s.status, "tickets_done": s.tickets_done,
            "tickets_total": s.tickets_total, "has_state": s.has_state, "updated_at": s.updated_at,
            "resumable": s.has_state and s.status != "completed"} for s in summaries]
        log.info("saved tracks of %s: %d (%d resumable)", self.project_dir, len(self.saved_tracks),
                 sum(t["resumable"] for t in self.saved_tracks))
        return self.saved_tracks

    def _saved_track(self, track_id: str | None) -> dict:
        """The saved track to resume: `track_id`, or the most recently updated unfinished one."""
        if track_id is not None and not isinstance(track_id, str):
            raise ValueError(f"track_id must be a string, got {type(track_id).__name__}")
        for attempt in range(2):           # a track saved by another process: look once more
            if track_id is None:
                candidates = [t for t in self.saved_tracks if t["resumable"]]
                if candidates:
                    return max(candidates, key=lambda t: t["updated_at"])
            else:
                found = next((t for t in self.saved_tracks if t["id"] == track_id), None)
                if found is not None:
                    return found
            if attempt == 0:
                self.refresh_saved_tracks()
        if track_id is None:
            raise ValueError(f"no unfinished saved track in {self.project_dir / 'conductor'}")
        raise ValueError(f"no saved track {track_id!r} in {self.project_dir / 'conductor'}")

    def _track_run_in_flight(self) -> bool:
        return any(label in RUN_LABELS and not fut.done() for label, fut, _r in self._futures) or \
            any(e.status == "running" for e in list(self.pipeline.engines.values()))

    def resume_track(self, track_id: str | None = None) -> dict:
        """Resume##<id> / hook `btn_mma_resume_track`: run what is left of a saved track.

        `Pipeline.resume` loads `conductor/tracks/<id>/state.json`: completed tickets stay
        completed, tickets that were in progress when the last session ended run again.  It
        runs on the engine loop like an accepted track, so streams, approvals (spawn approval
        still applies), tier usage and the ticket table behave the same.
        """
        self._require_idle("resume a track")
        if self._track_run_in_flight():
            raise ValueError("cannot resume a track while another track is running; "
                             "wait for it to finish or press Abort")
        saved = self._saved_track(track_id)
        tid = saved["id"]
        if not saved["has_state"]:
            raise ValueError(f"track {tid!r} has no state.json to resume from "
                             "(it was imported or planned but never run)")
        if saved["status"] == "completed":
            raise ValueError(f"track {tid!r} is already completed: nothing to resume")
        # The ticket table and the stream tabs are the resumed track's from now on (ticket ids
        # repeat across tracks: the previous track's tabs move to its own group in Tier Streams).
        self.mma.start_track(tid, str(saved["title"] or tid))
        self.mma.accepted_track_ids.add(tid)
        self.mma.active_track = {"id": tid, "title": saved["title"], "status": saved["status"]}
        self.mma.active_tickets, self.mma.critical_path = [], []
        self.mma.mma_status, self.mma.active_tier = "running", "Tier 3"
        self.mma.version += 1
        self._active_track_id = tid
        self._step_mode_local.clear()
        log.info("resuming track %s (%d/%d tickets done)", tid, saved["tickets_done"], saved["tickets_total"])
        stored = track_context_path(self.project_dir, tid)
        if stored.is_file():
            context = "saved"
            size = stored.stat().st_size
            self.mma.notice = (f"Resumed with the context the track was planned with "
                               f"({size:,} bytes, {stored.relative_to(self.project_dir).as_posix()})")
            markdown: concurrent.futures.Future[str] = concurrent.futures.Future()
            markdown.set_result("")             # unused: Pipeline.resume reads the saved one
        else:
            context = "current"
            bundle = self.ctx.bundle
            tokens = bundle.total_tokens if bundle is not None else 0
            self.mma.notice = (f"This track has no saved context: its workers use the current context "
                               f"(~{tokens:,} tokens from the Project panel)")
            markdown = self.ctx.markdown_when_ready()
        self._submit("Resume track", self._resume_and_run(tid, markdown), reported_by_pipeline=True)
        return {"submitted": "resume_track", "track_id": tid, "context": context,
                "tickets_done": saved["tickets_done"], "tickets_total": saved["tickets_total"]}

    async def _resume_and_run(self, track_id: str, markdown: concurrent.futures.Future[str]) -> str:
        """On the engine loop: load the saved track and run its remaining tickets.  A failure
        (a damaged state.json, the track busy in another process) is shown by the pipeline,
        which leaves the dashboard idle."""
        self.pipeline.md_content = await asyncio.wrap_future(markdown)
        return await self.pipeline.resume(track_id)

    # ---------------------------------------------------------------- the running track
    @property
    def active_track_id(self) -> str | None:
        return self._active_track_id

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
        """Abort: a Tier 1/2 call in flight and every running track (their blocked calls are
        cut, their tickets go back to todo).  With nothing running, the active engine's abort."""
        aborted = self.pipeline.abort()
        if aborted["planning"]:
            log.info("planning aborted by the user")
        elif not aborted["tracks"]:
            self._engine_or_raise().abort()
        return {"aborted": True, **aborted}

    @property
    def can_abort(self) -> bool:
        return self.engine_running or self.pipeline.planning

    @property
    def engine_running(self) -> bool:
        engine = self.active_engine
        return bool(engine is not None and engine.status == "running")

    @property
    def engine_paused(self) -> bool:
        """Paused, and still running: a finished track is never shown as paused."""
        engine = self.active_engine
        return bool(engine is not None and engine.status == "running" and engine.execution.paused)

    @property
    def has_active_engine(self) -> bool:
        return self.active_engine is not None

    @property
    def manual_queue(self) -> bool:
        """The active track's engine starts a ready ticket only when its Run button is pressed."""
        engine = self.active_engine
        return bool(engine is not None and not engine.execution.auto_queue)

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
        return self._step_mode_local.get(str(ticket.get("id")), bool(ticket.get("step_mode")))

    def set_auto_queue(self, enabled: bool) -> None:
        self.use_run_settings(self.run_settings.replace(auto_queue=bool(enabled)))

    # ---------------------------------------------------------------- run settings
    def use_run_settings(self, settings: RunSettings, project_dir: Path | None = None) -> None:
        """The settings of the next plan/track (a running track keeps its own).  The GUI
        keeps its copy; the pipeline gets the same frozen value on the engine loop."""
        self.run_settings = settings

        def switch() -> None:          # on the engine loop: the pipeline is the loop's
            self.pipeline.settings = settings
            if project_dir is not None:
                self.pipeline.project_dir = project_dir
                self.pipeline.tracks = []
        self.engine_thread.call(switch)

    @property
    def provider(self) -> str:
        return self.run_settings.provider

    @property
    def auto_queue(self) -> bool:
        return self.run_settings.auto_queue

    @property
    def approval_timeout_s(self) -> float:
        """How long a worker waits for an approval before it gives up."""
        return self.run_settings.approval_timeout

    @property
    def tier_models(self) -> dict[str, Any]:
        """The next run's models in the `[models]` table shape."""
        return self.run_settings.models.to_config()

    # ---------------------------------------------------------------- approvals
    def approve(self, request_id: str, approved: bool = True, **edits: Any) -> dict:
        delivered = self.mma.approve(request_id, approved, **edits)
        return {"request_id": request_id, "approved": bool(approved), "delivered": delivered}

    def set_auto_approve(self, enabled: bool) -> None:
        self.mma.auto_approve = bool(enabled)
        if enabled:
            n = self.mma.approve_all(True)
            if n:
                log.info("auto-approve on: approved %d pending request(s)", n)

    # ---------------------------------------------------------------- models, provider, project
    def _load_tier_inputs(self) -> None:
        models = self.run_settings.models
        self.tier1_model = models.model_for("Tier 1")
        self.tier2_model = models.model_for("Tier 2")
        self.tier3_models = ", ".join(models.models("Tier 3"))
        self.tier4_model = models.model_for("Tier 4")

    def tier_models_from_inputs(self) -> TierModels:
        t3 = [m.strip() for m in self.tier3_models.split(",") if m.strip()]
        models = {"Tier 1": self.tier1_model.strip(), "Tier 2": self.tier2_model.strip(),
                  "Tier 3": t3, "Tier 4": self.tier4_model.strip()}
        empty = [tier for tier, m in models.items() if not m]
        if empty:
            raise ValueError(f"model name missing for {', '.join(empty)}")
        return TierModels(models)

    def apply_tier_models(self) -> dict:
        """Use the tier model inputs for the next track (a running track keeps its models)."""
        models = self.tier_models_from_inputs()
        new = {**self.project.models, **models.to_config()}
        if new != self.project.models:
            self.project.models = new
            self.ctx.note_unsaved()
        self.use_run_settings(self.run_settings.replace(models=models))
        return {"tier_models": models.to_config()}

    @property
    def prices(self) -> dict[str, project_mod.ModelPrice]:
        """The project's price table (USD per 1M tokens); the Usage & Cost window edits it in place."""
        return self.project.prices

    def add_price(self, model: str, input_usd: float = 0.0, output_usd: float = 0.0) -> dict:
        """Add price: a new row in the price table (saved with the project)."""
        model = model.strip()
        if not model:
            raise ValueError("a price needs a model name")
        if model in self.project.prices:
            raise ValueError(f"{model} already has a price; edit it in the table")
        self.project.prices[model] = project_mod.ModelPrice(float(input_usd), float(output_usd))
        return {"model": model}

    def set_provider(self, provider: str) -> dict:
        """Switch provider for the chat and for the next plan/track (a running track keeps its own)."""
        if provider not in project_mod.PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; choose one of {', '.join(project_mod.PROVIDERS)}")
        self.ctx.set_value("current_provider", provider)   # calls back _follow_provider
        return {"provider": provider}

    def _follow_provider(self, provider: str) -> None:
        """The provider changed (here or in the Discussion panel): the pipeline follows."""
        self._adopt_project_settings(provider)
        log.info("provider is now %s (tier models %s)", provider, self.tier_models)

    def _adopt_project_settings(self, provider: str, project_dir: Path | None = None) -> None:
        """Provider and tier models (and the project folder) for the next plan/track."""
        self.use_run_settings(self.run_settings.with_provider(provider, self.project.tier_models()),
                              project_dir)
        self._load_tier_inputs()

    def sync_project_dir(self) -> bool:
        """Follow a project opened in the Project panel (after a running track has ended)."""
        new_dir = Path(self.ctx.project_dir)
        if new_dir == self.project_dir:
            self._project_switch_noted = None
            return False
        if self.mma.pipeline_active:
            if self._project_switch_noted != new_dir:
                self._project_switch_noted = new_dir
                self.mma.add_error(f"the MMA pipeline stays on {self.project_dir} until the running "
                                   f"track ends, then follows {new_dir}", "abort the track to switch now")
            return False
        self.project_dir = new_dir
        ai_client.configure(session_log_dir=session_log_dir(new_dir))
        self._adopt_project_settings(self.ctx.current_provider, new_dir)
        # The dashboard shows the new project from now on: no old track, tickets, streams,
        # approvals or errors (the epic box already shows its epic: sync_epic).
        self.mma.reset_view()
        self._active_track_id = None
        self._step_mode_local.clear()
        log.info("MMA pipeline now on project %s", new_dir)
        self.refresh_saved_tracks()
        return True

    def save_project(self) -> dict:
        """File > Save project: tier models, prices, provider and the context panels' state."""
        self.apply_tier_models()
        self.project.provider = self.provider
        if not self.ctx.save():
            err = self.ctx.errors[-1] if self.ctx.errors else None
            raise ValueError(err.text() if err is not None else "saving the project failed")
        log.info("project saved to %s", self.project.path)
        return {"saved": str(self.project.path)}

    # ---------------------------------------------------------------- the window
    def quit_from_menu(self) -> None:
        """File > Quit / Ctrl+Q: save what is unsaved, then close.  If the project file cannot
        take the changes, ask first (Save anyway / Discard and quit / Cancel)."""
        self.sync_epic()
        if self.ctx.unsaved and not self.ctx.flush():
            self.quit_prompt = True
            return
        self.request_quit()

    def discard_and_quit(self) -> None:
        """The quit dialog's *Discard and quit*: the unsaved changes are dropped on purpose."""
        self.ctx.autosave.unsaved = False
        self.quit_prompt = False
        self.request_quit()

    def sync_epic(self) -> None:
        """The epic box is part of the project file (autosaved like the rest).  After Open or
        Reload the box shows the loaded project's epic (the old text must not leak into it)."""
        if self._epic_loads != self.ctx.project_loads:
            self._epic_loads = self.ctx.project_loads
            if self.mma_epic_input == self._epic_synced:      # untouched since: show the new one's
                self.mma_epic_input = self._epic_synced = self.project.epic
                return
        if self.mma_epic_input != self.project.epic:
            self.project.epic = self.mma_epic_input
            self.ctx.note_unsaved()
        self._epic_synced = self.mma_epic_input

    def request_quit(self) -> None:
        """Close the window at the end of this frame (btn_quit, SIGTERM/SIGINT, and File > Quit
        once saved).  Whatever is unsaved is flushed by `shutdown()` on the way out."""
        self._quit_requested = True
        rp = self._runner_params
        if rp is not None:
            rp.app_shall_exit = True

    def ui(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R | None:
        """Call an action from a widget: a ValueError/KeyError becomes an error-bar entry."""
        try:
            return fn(*args, **kwargs)
        except (ValueError, KeyError, LookupError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            log.warning("%s: %s", getattr(fn, "__name__", "action"), msg)
            self.mma.add_error(str(msg), source="gui")
            return None
