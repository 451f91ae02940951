"""One MMA pipeline session: epic -> tracks -> tickets -> execution, shared by the GUI and the CLI.

`Pipeline` owns the per-session `tier_usage` ledger, the event queue the GUI
(or the headless printer) listens to, and persistence of every track in the
project's `conductor/` folder.  All its coroutines run on one asyncio loop;
blocking model calls go to a thread pool.

`EngineThread` runs that loop in a background thread for the GUI: callers on
the GUI thread submit coroutines with `submit()` and get a
`concurrent.futures.Future` back (never touching loop objects directly).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import events
import multi_agent_conductor as mac
import planning
from models import BLOCKED, TODO, TierUsage, Track, new_tier_usage
from planning import PlanningError
from providers.base import ProviderError
from run_settings import RunSettings

log = logging.getLogger(__name__)

TRACK_CONTEXT_FILE = "context.md"      # the curated context a track was planned with


def track_context_path(project_dir: str | Path, track_id: str) -> Path:
    """`conductor/tracks/<id>/context.md`: written once when the track first saves; a resume
    runs its workers with it, not with whatever the context panels hold by then."""
    return Path(project_dir) / "conductor" / "tracks" / track_id / TRACK_CONTEXT_FILE


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
        self._epic_usage: tuple[int, int, str] | None = None
        self.md_content = ""
        self._context_saved: set[str] = set()

    # -- helpers -------------------------------------------------------------------
    @property
    def provider(self) -> str:
        return self.settings.provider

    async def _in_thread(self, fn: Callable, *args) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _planning_call(self, tier: str, call: Callable[[], Any], ledger: TierUsage) -> Any:
        """Run a Tier 1/2 planning call in a thread, book its usage to `tier` in `ledger`.

        A failure is shown to the user (`_fail`) and re-raised for the caller.
        """
        try:
            result = await self._in_thread(call)
        except (PlanningError, ValueError, ProviderError) as exc:
            self._fail(tier, exc)
            raise
        ledger.add(tier, result.usage.input_tokens, result.usage.output_tokens, result.model)
        if tier == "Tier 1":
            self._epic_usage = (result.usage.input_tokens, result.usage.output_tokens, result.model)
        return result.value

    def _track_ledger(self, saved: dict | None = None) -> TierUsage:
        """One track's usage; it adds through to the session total (`self.tier_usage`).

        A new track starts with the epic's Tier 1 cost (shared by the epic's tracks); a
        resumed one with what its state.json says was spent before, which is not added
        to this session's total again.
        """
        ledger = TierUsage({tier: {"input": 0, "output": 0, "model": bucket["model"]}
                            for tier, bucket in self.tier_usage.snapshot().items()},
                           parent=self.tier_usage)
        if saved is not None:
            for tier, bucket in saved.items():
                ledger.add(tier, bucket.get("input", 0), bucket.get("output", 0), bucket.get("model"),
                           propagate=False)
        elif self._epic_usage is not None:
            ledger.add("Tier 1", *self._epic_usage, propagate=False)
        return ledger

    def _bind_queue(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.event_queue.loop is None:
            self.event_queue.bind(loop)

    def _emit(self, event: events.Event) -> None:
        events.emit(self.event_queue, event)

    def save(self, engine: mac.ConductorEngine) -> None:
        if not self.persist:
            return
        import conductor_io
        conductor_io.save_track(self.project_dir, engine.track, spec_text=self._spec(engine.track),
                                tier_usage=engine.tier_usage.snapshot(),
                                extra_state={"provider": self.provider, "epic": self.epic})
        if engine.track.id not in self._context_saved:
            path = track_context_path(self.project_dir, engine.track.id)
            if not path.exists():
                from atomic_files import atomic_write_text
                atomic_write_text(path, self.md_content)
            self._context_saved.add(engine.track.id)

    def _spec(self, track: Track) -> str:
        epic = f"\n## Epic\n\n{self.epic}\n" if self.epic else ""
        return f"# Track Specification: {track.title}\n\n## Overview\n\n{track.description}\n{epic}"

    # -- Tier 1 ----------------------------------------------------------------------
    async def plan(self, epic: str, md_content: str = "") -> list[Track]:
        self._bind_queue(asyncio.get_running_loop())
        self.epic, self.md_content = epic, md_content
        self._emit(self._status("planning", "Tier 1"))
        tracks = await self._planning_call("Tier 1", lambda: planning.plan_epic(
            epic, md_content, provider=self.provider, model=self.settings.models.model_for("Tier 1"),
            event_queue=self.event_queue), self.tier_usage)
        self.tracks = list(tracks)
        self._emit(events.TracksPlanned([t.to_dict() for t in self.tracks]))
        self._emit(self._status("tracks_ready", None))
        return self.tracks

    # -- Tier 2 ----------------------------------------------------------------------
    async def accept_track(self, track: Track) -> mac.ConductorEngine:
        """Tier 2 turns the track into tickets; returns the engine, ready to run."""
        self._bind_queue(asyncio.get_running_loop())
        self._emit(self._status("planning", "Tier 2", track))
        ledger = self._track_ledger()
        tickets = await self._planning_call("Tier 2", lambda: planning.generate_tickets(
            track, self.md_content, provider=self.provider, model=self.settings.models.model_for("Tier 2"),
            event_queue=self.event_queue), ledger)
        track.tickets = list(tickets)
        return self.engine_for(track, ledger)

    def engine_for(self, track: Track, ledger: TierUsage | None = None) -> mac.ConductorEngine:
        engine = mac.ConductorEngine(
            track, self.event_queue, settings=self.settings, base_dir=str(self.project_dir),
            tier_usage=ledger if ledger is not None else self._track_ledger(), on_state_change=self.save)
        self.engines[track.id] = engine
        if track not in self.tracks:
            self.tracks.append(track)
        engine._emit_state()               # tickets visible (and saved) before anything runs
        return engine

    # -- Tier 3 ------------------------------------------------------------------------
    async def run_track(self, track: Track) -> str:
        engine = self.engines.get(track.id) or await self.accept_track(track)
        return await engine.run(self.md_content)

    async def resume(self, track_id: str) -> str:
        """Load a saved track and run what is left; completed tickets are not re-run.  The
        workers get the context the track was planned with (`context.md` in its folder);
        a track saved without one runs with `md_content` as set by the caller."""
        import conductor_io
        track, usage = conductor_io.load_track_state(self.project_dir, track_id)
        stored = track_context_path(self.project_dir, track_id)
        if stored.is_file():
            self.md_content = stored.read_text(encoding="utf-8")
            self._context_saved.add(track_id)
        extras = conductor_io.load_track_extras(self.project_dir, track_id)
        if not self.epic and isinstance(extras.get("epic"), str):
            self.epic = extras["epic"]             # else the next save would blank it
        for ticket in track.tickets:              # resuming is the user's "try again"
            if ticket.status == BLOCKED:
                ticket.status, ticket.retry_count = TODO, 0
        self._bind_queue(asyncio.get_running_loop())
        return await self.engine_for(track, self._track_ledger(saved=usage or {})).run(self.md_content)

    # -- status events --------------------------------------------------------------------
    def _status(self, status: str, tier: str | None, track: Track | None = None) -> events.StateUpdate:
        return events.StateUpdate(
            status, tier, self.tier_usage.snapshot(),
            track=track.header_dict() if track is not None else None,
            tickets=[t.to_dict() for t in track.tickets] if track is not None else None)

    def _fail(self, tier: str, exc: Exception) -> None:
        hint = getattr(exc, "hint", "") or "check the provider settings, then try again"
        message = exc.user_message() if hasattr(exc, "user_message") else str(exc)
        log.error("%s failed: %s", tier, message)
        self._emit(events.ErrorEvent(f"{tier} failed: {message}", hint, raw=getattr(exc, "raw", "") or None))
        self._emit(self._status("error", None))


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
