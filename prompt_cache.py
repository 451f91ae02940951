"""Pay for a track's shared context once: prompt caching across its Tier 3 workers.

Every worker of a track sends the same prefix first (the Tier 3 system prompt with the curated
context and the track's brief, and the tool declarations; `worker.shared_context`,
`ai_client.layout_system`) and its own ticket after it, so the provider's prompt cache can
serve the prefix to all but the first.  `TrackPromptCache` is the engine's part of that:

- **Which sessions cache.**  `configure(session)` (called by the engine when a worker's session
  starts, on the worker's thread) turns the session's cache marks on or off
  (`RunSettings.prompt_cache`) and points it at the track's explicit cache for its model.
- **Gemini explicit caches.**  When the prefix is at least the model's minimum and enough
  tickets will read it to pay for the storage (`explicit_pays`), the first worker on that model
  creates a cached content holding the system prompt and tools (`client.caches.create`, TTL
  `EXPLICIT_TTL_S`, extended while the run goes on) and every worker references it.  `close()`
  deletes it when the run ends, however it ends, and books its storage (tokens x seconds).
  Each one is written to `<project>/.mma_desk/prompt_caches.json` while it exists, so a process
  that died with a cache alive has it deleted by the next start (`sweep_stale`): only caches
  this app created and whose owner is gone are touched.
- **Warm-up.**  Workers that start in the same instant all miss the cache.  With
  `RunSettings.cache_warmup`, the first worker on a model whose cache is cold goes alone; the
  others wait in `configure` until its response starts (the provider has written the prefix by
  then) or its cache-create call returns, then all go.  If the first one ends without a
  response, the next waiting worker takes its place.  Abort wakes every waiting worker.

Threads: `configure`, `worker_ended` and the cache calls run on worker threads; `close` on a
daemon thread the engine awaits.  State is guarded by one `threading.Condition`; waiting is a
`Condition.wait`, woken by whoever changes the state (never a poll).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

import ai_client
import providers
from atomic_files import atomic_write_json, process_alive
from context_builder import estimate_tokens
from providers import catalog
from providers.base import CancelSignal, ProviderError, ToolSpec, Usage, prefix_fingerprint

log = logging.getLogger(__name__)

EXPLICIT_TTL_S = 600            # a new explicit cache lives this long unless the run extends it
CACHE_CALL_TIMEOUT_S = 30.0     # one create / extend / delete call
WARMUP_MAX_WAIT_S = 120.0       # a worker never waits longer than this for another's cache write
RECORD_FILE = Path(".mma_desk") / "prompt_caches.json"
# How long a prefix stays in the provider's cache after its last use: Anthropic's ephemeral
# cache keeps it 5 minutes; Gemini's implicit cache is assumed to keep it as long.
PROVIDER_CACHE_TTL_S = 300.0

COLD, WARMING, WARM = "cold", "warming", "warm"


@dataclass
class _ModelCache:
    """One model's cache state within a track."""
    state: str = COLD
    warmer: int | None = None         # the session id writing the cache now
    warm_until: float = 0.0           # time.monotonic() past which the provider has dropped it
    explicit: ai_client.ExplicitCache | None = None
    explicit_tokens: int = 0
    created_at: float = 0.0           # time.time() of the explicit cache's creation
    expires_at: float = 0.0           # and its expiry as the API last said
    explicit_failed: bool = False     # creating it failed once: this run goes without


class TrackPromptCache:
    """A track's prompt-cache plan and warm-up gates; see the module docstring."""

    def __init__(self, provider: str, *, enabled: bool, warmup: bool, track_id: str,
                 book: Callable[[str, Usage], None]):
        self.provider = provider
        self.kind = catalog.prompt_cache_kind(provider) if enabled else ""
        self.enabled = enabled
        self.warmup = warmup and bool(self.kind)
        self.track_id = track_id
        self.book = book
        self.record: CacheRecord | None = None        # set by the pipeline: caches left behind
        self._cond = threading.Condition()
        self._models: dict[str, _ModelCache] = {}
        self._system = ""
        self._tools: list[ToolSpec] = []
        self._fingerprint = ""
        self._prefix_tokens = 0
        self._expected: dict[str, int] = {}           # model -> tickets that will send the prefix
        self._released = False                        # abort: nobody waits any more
        self._adapter: Any = None

    # -- the plan (loop thread, before workers start) -----------------------------------------
    def plan(self, system: str, tools: list[ToolSpec], expected: dict[str, int]) -> None:
        """The prefix every worker sends, and how many tickets will send it on each model."""
        with self._cond:
            self._system, self._tools = system, list(tools)
            self._fingerprint = prefix_fingerprint(system, self._tools)
            self._prefix_tokens = estimate_tokens(system) + estimate_tokens(
                json.dumps([[t.name, t.description, t.parameters] for t in self._tools]))
            self._expected = dict(expected)
            self._released = False

    @property
    def prefix_tokens(self) -> int:
        return self._prefix_tokens

    def cacheable(self, model: str) -> bool:
        """The provider caches prefixes and this one is long enough for `model`."""
        return bool(self.kind) and self._prefix_tokens >= catalog.min_cache_tokens(model)

    def explicit_pays(self, model: str) -> bool:
        """A Gemini explicit cache for `model` costs less than sending the prefix every time:
        creation (input price) + reads (cached price) + storage for `EXPLICIT_TTL_S`, against
        every expected ticket paying the input price."""
        price = catalog.price(model)
        readers = self._expected.get(model, 0)
        if self.kind != "gemini" or price is None or readers < 2 or not self.cacheable(model):
            return False
        tokens = self._prefix_tokens
        with_cache = (tokens * (price.cache_write if price.cache_write is not None else price.input)
                      + readers * tokens * price.cached_input
                      + tokens * price.cache_storage * EXPLICIT_TTL_S / 3600)
        return with_cache < readers * tokens * price.input

    # -- a worker's session (worker thread) ------------------------------------------------------
    def configure(self, session: ai_client.Session) -> None:
        """Set up a worker's session and, while another worker is writing the cache for its
        model, wait for that (the warm-up).  Returns at once when the run is aborted."""
        session.prompt_cache = self.enabled
        model = session.model
        if not self.enabled or not self.cacheable(model):
            return
        session.on_response_start = lambda: self._responded(model, session.id)
        create = False
        with self._cond:
            entry = self._models.setdefault(model, _ModelCache())
            deadline = time.monotonic() + WARMUP_MAX_WAIT_S
            while True:
                if entry.state == WARM and time.monotonic() >= entry.warm_until and entry.explicit is None:
                    entry.state = COLD                # the provider has dropped it by now
                if self._released or session.cancel_event.is_set() or entry.state == WARM:
                    break
                if entry.state == COLD:
                    entry.state, entry.warmer = WARMING, session.id
                    create = self._wants_explicit(model, entry)
                    break
                if not self.warmup:
                    break                             # warming, but nobody waits for it
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("track %s: waited %.0f s for the %s cache to be written; going on",
                                self.track_id, WARMUP_MAX_WAIT_S, model)
                    break
                self._cond.wait(left)
        if create:
            self._create_explicit(model, entry, session.cancel_event)
        else:
            self._extend_if_due(model, entry, session.cancel_event)
        with self._cond:
            session.explicit_cache = entry.explicit

    def worker_ended(self, session: ai_client.Session) -> None:
        """A worker's call is over: if it was writing the cache and never got a response, the
        next waiting worker takes over."""
        with self._cond:
            entry = self._models.get(session.model)
            if entry is not None and entry.state == WARMING and entry.warmer == session.id:
                entry.state, entry.warmer = COLD, None
                self._cond.notify_all()

    def release_all(self) -> None:
        """Abort: every waiting worker goes (and finds its session cancelled)."""
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def _responded(self, model: str, session_id: int) -> None:
        """A response on `model` started: its prefix is in the cache now (and stays for the TTL)."""
        with self._cond:
            entry = self._models.setdefault(model, _ModelCache())
            entry.warm_until = time.monotonic() + PROVIDER_CACHE_TTL_S
            if entry.state != WARM:
                log.debug("track %s: %s cache written by session %s", self.track_id, model, session_id)
                entry.state, entry.warmer = WARM, None
                self._cond.notify_all()

    # -- Gemini explicit caches -----------------------------------------------------------------
    def _wants_explicit(self, model: str, entry: _ModelCache) -> bool:
        return entry.explicit is None and not entry.explicit_failed and self.explicit_pays(model)

    def _cache_adapter(self) -> Any:
        if self._adapter is None:
            self._adapter = providers.make_adapter(self.provider, timeout=CACHE_CALL_TIMEOUT_S)
        return self._adapter

    def _create_explicit(self, model: str, entry: _ModelCache, cancel: CancelSignal) -> None:
        """Create the track's cache for `model` (this worker's thread); the others wait meanwhile."""
        try:
            adapter = self._cache_adapter()
            info = adapter.create_cache(model, self._system, self._tools, EXPLICIT_TTL_S,
                                        f"mma-desk:{self.track_id}:{model}", cancel=cancel)
        except ProviderError as exc:            # this worker's own response warms the cache instead
            log.warning("track %s: no explicit cache for %s (%s); the workers rely on implicit caching",
                        self.track_id, model, exc)
            with self._cond:
                entry.explicit_failed = True
            return
        now = time.time()
        log.info("track %s: explicit cache %s for %s (%d tokens)", self.track_id, info.name, model, info.tokens)
        with self._cond:
            entry.explicit = ai_client.ExplicitCache(info.name, model, self._fingerprint)
            entry.explicit_tokens, entry.created_at = info.tokens, now
            entry.expires_at = info.expire_time or now + EXPLICIT_TTL_S
            entry.state, entry.warmer = WARM, None
            self._cond.notify_all()
        self.book(model, Usage(info.tokens, 0, cache_write_tokens=info.tokens))
        if self.record is not None:
            self.record.add(CachedEntry(info.name, self.provider, model, self.track_id, os.getpid(),
                                        now, entry.expires_at))

    def _extend_if_due(self, model: str, entry: _ModelCache, cancel: CancelSignal) -> None:
        """Keep the explicit cache alive while tickets still start: extend it when less than half
        its TTL is left."""
        with self._cond:
            explicit = entry.explicit
            due = explicit is not None and entry.expires_at - time.time() < EXPLICIT_TTL_S / 2
        if not due or explicit is None:
            return
        try:
            expires = self._cache_adapter().extend_cache(explicit.name, EXPLICIT_TTL_S, cancel=cancel)
        except ProviderError as exc:
            log.warning("track %s: extending %s failed (%s); sending the prefix uncached from now",
                        self.track_id, explicit.name, exc)
            with self._cond:
                entry.explicit = None
                entry.explicit_failed = True
            return
        with self._cond:
            entry.expires_at = expires or time.time() + EXPLICIT_TTL_S
        if self.record is not None:
            self.record.update_expiry(explicit.name, entry.expires_at)

    def close(self) -> list[str]:
        """Delete this run's explicit caches and book their storage (a daemon thread, at the end
        of the run however it ended).  Returns the names deleted."""
        with self._cond:
            live = [(model, entry) for model, entry in self._models.items() if entry.explicit is not None]
            for _model, entry in live:
                entry.state = COLD
        deleted = []
        for model, entry in live:
            assert entry.explicit is not None
            name = entry.explicit.name
            try:
                self._cache_adapter().delete_cache(name)
                ended = time.time()
                deleted.append(name)
                if self.record is not None:
                    self.record.remove(name)
            except ProviderError as exc:            # it stays until its TTL; the next start retries
                log.warning("track %s: could not delete cache %s: %s", self.track_id, name, exc)
                ended = entry.expires_at
            token_s = int(entry.explicit_tokens * max(0.0, min(ended, entry.expires_at) - entry.created_at))
            self.book(model, Usage(cache_storage_token_s=token_s))
            with self._cond:
                entry.explicit = None
        return deleted


# -------------------------------------------------------------------- the record of live caches
@dataclass
class CachedEntry:
    name: str
    provider: str
    model: str
    track_id: str
    pid: int
    created_at: float
    expires_at: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class CacheRecord:
    """`<project>/.mma_desk/prompt_caches.json`: the explicit caches this app created and has
    not deleted yet.  A file lock guards it across processes (two windows, a headless run)."""

    def __init__(self, project_dir: str | os.PathLike):
        self.path = Path(project_dir) / RECORD_FILE
        self._lock = FileLock(str(self.path) + ".lock")

    def entries(self) -> list[CachedEntry]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("%s is unreadable (%s); treating it as empty", self.path, exc)
            return []
        out = []
        for item in data.get("caches", []) if isinstance(data, dict) else []:
            try:
                out.append(CachedEntry(str(item["name"]), str(item["provider"]), str(item["model"]),
                                       str(item["track_id"]), int(item["pid"]), float(item["created_at"]),
                                       float(item["expires_at"])))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("%s: skipping a damaged entry %r (%s)", self.path, item, exc)
        return out

    def _write(self, entries: list[CachedEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"caches": [e.to_dict() for e in entries]})

    def _change(self, change: Callable[[list[CachedEntry]], list[CachedEntry]]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._write(change(self.entries()))
        except OSError as exc:
            log.error("could not update %s: %s", self.path, exc)

    def add(self, entry: CachedEntry) -> None:
        self._change(lambda entries: [*(e for e in entries if e.name != entry.name), entry])

    def remove(self, name: str) -> None:
        self._change(lambda entries: [e for e in entries if e.name != name])

    def update_expiry(self, name: str, expires_at: float) -> None:
        def change(entries: list[CachedEntry]) -> list[CachedEntry]:
            for e in entries:
                if e.name == name:
                    e.expires_at = expires_at
            return entries
        self._change(change)


def sweep_stale(project_dir: str | os.PathLike, *, now: float | None = None) -> list[str]:
    """Start-up: delete the explicit caches a process that is gone left behind (recorded in the
    project's cache record); forget the ones that expired anyway.  Caches of a live process, and
    any cache this app did not record, are left alone.  Returns the names deleted."""
    record = CacheRecord(project_dir)
    if not record.path.exists():
        return []
    now = time.time() if now is None else now
    deleted: list[str] = []
    adapters: dict[str, Any] = {}
    for entry in record.entries():
        if process_alive(entry.pid) and entry.pid != os.getpid():
            continue
        if entry.expires_at <= now:
            log.info("prompt cache %s expired by itself; forgetting it", entry.name)
            record.remove(entry.name)
            continue
        try:
            adapter: Any = adapters.get(entry.provider) or providers.make_adapter(entry.provider,
                                                                                  timeout=CACHE_CALL_TIMEOUT_S)
            adapters[entry.provider] = adapter
            adapter.delete_cache(entry.name)
        except ProviderError as exc:
            log.warning("could not delete the stale prompt cache %s: %s (tried again at the next start)",
                        entry.name, exc)
            continue
        log.info("deleted the prompt cache %s left by process %d (track %s)", entry.name, entry.pid, entry.track_id)
        record.remove(entry.name)
        deleted.append(entry.name)
    return deleted


def sweep_in_background(project_dir: str | os.PathLike) -> threading.Thread:
    """`sweep_stale` on a daemon thread: start-up never waits for the network."""
    def sweep() -> None:
        try:
            sweep_stale(project_dir)
        except Exception:  # a start-up chore must not take the app down
            log.exception("sweeping stale prompt caches failed")
    thread = threading.Thread(target=sweep, name="mma-cache-sweep", daemon=True)
    thread.start()
    return thread
