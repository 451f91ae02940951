"""One MMA pipeline session: epic -> tracks -> tickets -> execution, shared by the GUI and the CLI.

`Pipeline` owns the per-session `tier_usage` ledger, the event queue the GUI
(or the headless printer) listens to, and persistence of every track in the
project's `conductor/` folder.  All its coroutines run on one asyncio loop;
blocking model calls go to a thread pool.

`EngineThread` runs that loop in a background thread for the GUI: callers on
the GUI thread submit coroutines with `submit()` and get a
`concurrent.futures.Future` back (never touching loop objects directly).

Control: `abort()` (any thread) cancels a Tier 1/2 call in flight (`cancel_planning`)
and aborts every running track.  Each track is planned, run and resumed under its
`track_lock` claim, so a second runner (another window, `mma-desk resume`) is refused
with the holder's pid.  Any failure of a step is shown (`ErrorEvent`) and leaves the
pipeline idle (`StateUpdate("error")`), whatever the exception.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import background
import events
import multi_agent_conductor as mac
import planning
import prompt_cache
import repo_map
import track_lock
from models import BLOCKED, TODO, TierUsage, Track, new_tier_usage
from planning import PlanningError
from providers.base import CancelSignal, Usage
from run_settings import RunSettings
from track_workspace import TrackWorkspace

log = logging.getLogger(__name__)

TRACK_CONTEXT_FILE = "context.md"      # the curated context a track was planned with


def track_context_path(project_dir: str | Path, track_id: str) -> Path:
    """`conductor/tracks/<id>/context.md`: written once when the track first saves; a resume
    runs its workers with it, not with whatever the context panels hold by then."""
    return Path(project_dir) / "conductor" / "tracks" / track_id / TRACK_CONTEXT_FILE


class PlanningAborted(PlanningError):
    """The user aborted a Tier 1/2 call (Abort, Ctrl-C, quitting)."""


def was_reported(exc: BaseException) -> bool:
    """The pipeline already showed this failure to the user (an ErrorEvent)."""
    return bool(getattr(exc, "shown_to_user", False))


class Pipeline:
    """`settings` says how tracks run (provider, per-tier models, workers, approvals); the
    GUI swaps in a new value with `replace()` between runs, never field by field."""

    def __init__(self, project_dir: str | Path, settings: RunSettings | None = None, *,
                 event_queue: events.AsyncEventQueue | None = None, persist: bool = True):
        self.project_dir = Path(project_dir)
        self.settings = settings or RunSettings.for_provider(auto_queue=True)
        self.event_queue = event_queue if event_queue is not None else events.AsyncEventQueue()
        self.persist = persist
        self.tier_usage: TierUsage = new_tier_usage(self.settings.models.first_models())
        self.tracks: list[Track] = []
        self.engines: dict[str, mac.ConductorEngine] = {}
        self.epic = ""
        self._epics: dict[str, str] = {}           # track id -> the epic it was planned from
        self._epic_usage: dict[str, Usage] = {}    # model -> what the epic's Tier 1 call billed
        self._planning_cancel: CancelSignal | None = None
        self._stopping = False                     # stop(): whatever starts from now is aborted
        self.md_content = ""
        # "auto": each track in its own git worktrees when the project is in a repository, else with
        # read-only tools (track_workspace.py); "off": workers write into the project folder itself.
        self.workspace_mode = "auto"
        self._context_saved: set[str] = set()    # tracks whose context.md exists
        self._save_errors: set[str] = set()      # messages already shown by save()

    # -- helpers -------------------------------------------------------------------
    @property
    def provider(self) -> str:
        return self.settings.provider

    async def _planning_call(self, tier: str, call: Callable[[CancelSignal, Callable[[str, Usage], None]], Any],
                             ledger: TierUsage) -> Any:
        """Run a Tier 1/2 call (`call(cancel, book)`) on a daemon thread; book each response
        to `tier` in `ledger` as it arrives.

        `cancel_planning()` stops it at once: the call's socket is shut down and this
        returns without waiting for the thread (`PlanningAborted`).  A failure is shown to
        the user and re-raised for the caller.
        """
        loop = asyncio.get_running_loop()
        cancel = CancelSignal()
        self._planning_cancel = cancel
        spent: dict[str, Usage] = {}

        def book(model: str, usage: Usage) -> None:       # on the planning thread
            ledger.add_usage(tier, usage, model)
            spent[model] = spent.get(model, Usage()) + usage

        woken = asyncio.Event()
        if self._stopping:
            cancel.set()
        try:
            result_future = background.start(loop, call, cancel, book, name=f"mma-{tier.lower().replace(' ', '')}")
            with cancel.interrupt_with(lambda: loop.call_soon_threadsafe(woken.set)):
                waiter = asyncio.ensure_future(woken.wait())
                try:
                    await asyncio.wait({result_future, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
            if cancel.is_set():
                result_future.cancel()            # the thread's late result is dropped
                raise PlanningAborted(f"{tier} planning was aborted by the user")
            result = result_future.result()
        except PlanningAborted as exc:
            self._aborted_planning(tier, exc)
            raise
        except Exception as exc:
            self._fail(tier, exc)
            raise
        finally:
            if self._planning_cancel is cancel:
                self._planning_cancel = None
        if tier == "Tier 1":
            self._epic_usage = dict(spent)
        return result.value

    def cancel_planning(self) -> bool:
        """Abort the Tier 1/2 call in flight, if any (any thread).  True if there was one."""
        cancel = self._planning_cancel
        if cancel is None or cancel.is_set():
            return False
        cancel.set()
        return True

    @property
    def planning(self) -> bool:
        return self._planning_cancel is not None

    def abort(self) -> dict:
        """Abort everything in flight (any thread): a planning call and every running track."""
        planning_aborted = self.cancel_planning()
        tracks = []
        for track_id, engine in list(self.engines.items()):
            if engine.status in ("starting", "running"):
                engine.abort()
                tracks.append(track_id)
        return {"planning": planning_aborted, "tracks": tracks}

    def stop(self) -> dict:
        """`abort()`, and abort whatever would start after it (quitting, Ctrl-C): a signal that
        lands while a track is still being loaded must not let it run."""
        self._stopping = True
        return self.abort()

    @contextlib.contextmanager
    def _claimed(self, step: str, track_id: str, what: str) -> Iterator[track_lock.Claim | None]:
        """The track's lock for `step` (None when nothing is saved, so nothing can clash).  If
        the step fails the lock is released and the failure shown; on success the engine the
        step made owns it (released when its run ends)."""
        try:
            claim = track_lock.claim(self.project_dir, track_id, what) if self.persist else None
            try:
                yield claim
            except BaseException:
                if claim is not None:
                    claim.release()
                raise
        except Exception as exc:
            self._fail(step, exc)
            raise

    def _track_ledger(self, saved: dict | None = None) -> TierUsage:
        """One track's usage; it adds through to the session total (`self.tier_usage`).

        A new track starts with the epic's Tier 1 cost (shared by the epic's tracks); a
        resumed one with what its state.json says was spent before, per model, which is
        not added to this session's total again.
        """
        ledger = TierUsage({tier: {"input": 0, "output": 0, "model": bucket["model"], "models": {}}
                            for tier, bucket in self.tier_usage.snapshot().items()},
                           parent=self.tier_usage)
        if saved is not None:
            ledger.restore(saved)
        else:
            for model, usage in self._epic_usage.items():
                ledger.add("Tier 1", usage.input_tokens, usage.output_tokens, model, propagate=False,
                           cache=usage.cache_fields())
        return ledger

    def _bind_queue(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.event_queue.loop is None:
            self.event_queue.bind(loop)

    def _emit(self, event: events.Event) -> None:
        events.emit(self.event_queue, event)

    def save(self, engine: mac.ConductorEngine) -> None:
        """Persist a track; a Conductor file that cannot be updated (not UTF-8, say) is shown
        once per message and the run goes on (the engine reports OSError itself)."""
        if not self.persist:
            return
        import conductor_io
        extra: dict[str, Any] = {"provider": self.provider, "epic": self._epics.get(engine.track.id, "")}
        if engine.workspace is not None:
            extra["git"] = engine.workspace.describe()
        try:
            conductor_io.save_track(self.project_dir, engine.track, spec_text=self._spec(engine.track),
                                    tier_usage=engine.tier_usage.snapshot(), extra_state=extra)
        except ValueError as exc:
            if str(exc) not in self._save_errors:
                self._save_errors.add(str(exc))
                log.error("saving track %s: %s", engine.track.id, exc)
                self._emit(events.ErrorEvent(f"could not save track {engine.track.id}: {exc}",
                                             "fix the file named above; the run goes on"))
        if engine.track.id not in self._context_saved:
            path = track_context_path(self.project_dir, engine.track.id)
            if not path.exists():
                from atomic_files import atomic_write_text
                atomic_write_text(path, self.md_content)
            self._context_saved.add(engine.track.id)

    def _repo_map(self, track: Track) -> repo_map.RepoMap:
        """The project's repo map for Tier 2, at the budget the project file sets now."""
        import project
        budget = project.load_project_or_last_good(self.project_dir)[0].budgets.repo_map_tokens
        return repo_map.build_repo_map(self.project_dir, budget, mentioned=f"{track.title}\n{track.description}")

    def _spec(self, track: Track) -> str:
        epic_text = self._epics.get(track.id, "")
        epic = f"\n## Epic\n\n{epic_text}\n" if epic_text else ""
        return f"# Track Specification: {track.title}\n\n## Overview\n\n{track.description}\n{epic}"

    # -- Tier 1 ----------------------------------------------------------------------
    async def plan(self, epic: str, md_content: str = "") -> list[Track]:
        self._bind_queue(asyncio.get_running_loop())
        self.epic, self.md_content = epic, md_content
        self._emit(self._status("planning", "Tier 1"))
        model = self.settings.models.model_for("Tier 1")
        tracks = await self._planning_call("Tier 1", lambda cancel, book: planning.plan_epic(
            epic, md_content, provider=self.provider, model=model, event_queue=self.event_queue,
            cancel_event=cancel, on_usage=book), self.tier_usage)
        self.tracks = list(tracks)
        self._emit(events.TracksPlanned([t.to_dict() for t in self.tracks]))
        self._emit(self._status("tracks_ready", None))
        return self.tracks

    # -- Tier 2 ----------------------------------------------------------------------
    async def accept_track(self, track: Track) -> mac.ConductorEngine:
        """Tier 2 turns the track into tickets; returns the engine, ready to run (it holds
        the track's lock: run it, or call its `release_track()`)."""
        self._bind_queue(asyncio.get_running_loop())
        self._emit(self._status("planning", "Tier 2", track))
        with self._claimed("Tier 2", track.id, "planning") as claim:
            ledger = self._track_ledger()
            model = self.settings.models.model_for("Tier 2")
            tickets = await self._planning_call("Tier 2", lambda cancel, book: planning.generate_tickets(
                track, self.md_content, provider=self.provider, model=model, event_queue=self.event_queue,
                repo_map=self._repo_map(track), cancel_event=cancel, on_usage=book), ledger)
            track.tickets = list(tickets)
            self._epics[track.id] = self.epic
            return self.engine_for(track, ledger, claim)

    def workspace_for(self, track: Track, base: str = "") -> TrackWorkspace | None:
        """The track's git workspace (or read-only one); None with `workspace_mode = "off"`."""
        if self.workspace_mode == "off":
            return None
        import project
        cfg, _error = project.load_project_or_last_good(self.project_dir)
        workspace = TrackWorkspace.for_project(self.project_dir, track.id, cfg.qa)
        workspace.base = base
        return workspace

    def engine_for(self, track: Track, ledger: TierUsage | None = None,
                   claim: track_lock.Claim | None = None, base: str = "") -> mac.ConductorEngine:
        engine = mac.ConductorEngine(
            track, self.event_queue, settings=self.settings, base_dir=str(self.project_dir),
            tier_usage=ledger if ledger is not None else self._track_ledger(), on_state_change=self.save,
            track_claim=claim, workspace=self.workspace_for(track, base))
        if self.persist:                   # explicit prompt caches are recorded until deleted
            engine.prompt_cache.record = prompt_cache.CacheRecord(self.project_dir)
        self.engines[track.id] = engine
        if self._stopping:
            engine.abort()
        if track not in self.tracks:
            self.tracks.append(track)
        try:
            engine._emit_state()           # tickets visible (and saved) before anything runs
        except BaseException:
            self.engines.pop(track.id, None)
            raise
        return engine

    # -- Tier 3 ------------------------------------------------------------------------
    async def run_track(self, track: Track) -> str:
        engine = self.engines.get(track.id) or await self.accept_track(track)
        return await engine.run(self.md_content)

    async def resume(self, track_id: str) -> str:
        """Load a saved track and run what is left; completed tickets are not re-run.

        Refused (TrackBusyError) while another process runs the track or a worker of its
        last run here has not stopped.  A ticket keeps the retry count, and so the model, it
        had reached; a blocked one gets a fresh retry budget (resuming is the user's "try
        again").  The track keeps its own epic and its usage ledger continues from the file.
        The workers get the context the track was planned with (`context.md` in its folder);
        a track saved without one runs with `md_content` as set by the caller.
        """
        import conductor_io
        self._bind_queue(asyncio.get_running_loop())
        with self._claimed("Resume track", track_id, "resume") as claim:
            track, usage = conductor_io.load_track_state(self.project_dir, track_id)
            stored = track_context_path(self.project_dir, track_id)
            if stored.is_file():
                self.md_content = stored.read_text(encoding="utf-8")
                self._context_saved.add(track_id)
            extras = conductor_io.load_track_extras(self.project_dir, track_id)
            saved_epic = extras.get("epic")
            self._epics[track.id] = saved_epic if isinstance(saved_epic, str) else ""
            for ticket in track.tickets:
                if ticket.status == BLOCKED:
                    ticket.status = TODO
            git = extras.get("git")
            base = git.get("base", "") if isinstance(git, dict) and isinstance(git.get("base"), str) else ""
            engine = self.engine_for(track, self._track_ledger(saved=usage or {}), claim, base)
        return await engine.run(self.md_content)

    # -- status events --------------------------------------------------------------------
    def _status(self, status: str, tier: str | None, track: Track | None = None) -> events.StateUpdate:
        return events.StateUpdate(
            status, tier, self.tier_usage.snapshot(),
            track=track.header_dict() if track is not None else None,
            tickets=[t.to_dict() for t in track.tickets] if track is not None else None)

    def _fail(self, tier: str, exc: Exception) -> None:
        """Show a failed step (once) and leave the pipeline idle."""
        if was_reported(exc):
            return
        known = isinstance(exc, (PlanningError, ValueError, OSError)) or hasattr(exc, "user_message")
        if hasattr(exc, "user_message"):
            message = exc.user_message()
        else:
            message = str(exc) if known else f"{type(exc).__name__}: {exc}"
        hint = getattr(exc, "hint", "") or ("check the provider settings, then try again" if known
                                            else "this is a bug; the full traceback is in the log")
        log.error("%s failed: %s", tier, message, exc_info=None if known else exc)
        self._emit(events.ErrorEvent(f"{tier} failed: {message}", hint, raw=getattr(exc, "raw", "") or None))
        self._emit(self._status("error", None))
        _mark_reported(exc)

    def _aborted_planning(self, tier: str, exc: PlanningAborted) -> None:
        log.info("%s planning aborted by the user", tier)
        self._emit(events.LogLine(f"{tier} planning aborted by the user"))
        self._emit(self._status("aborted", None))
        _mark_reported(exc)


def _mark_reported(exc: BaseException) -> None:
    try:
        exc.shown_to_user = True  # type: ignore[attr-defined]
    except AttributeError:
        log.debug("cannot mark %r as reported", exc)


class EngineThread:
    """An asyncio loop in a daemon thread; the GUI submits coroutines to it."""

    def __init__(self, name: str = "mma-engine"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float = 2.0) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
