"""GUI-free state behind the context panels (project, discussion, budget, comms).

`ContextState` owns what the developer curates for the chat: the loaded
`ProjectConfig` (files with view modes, screenshots, discussions), the message
box, the provider/model pickers and one chat `ai_client.Session`.  It has no
imgui import, so every behaviour is unit-testable without a window.

Threading (see ../shared/design.md):
- everything here runs on the GUI thread, except `_run_send`, which runs on the
  state's single chat worker thread (a 1-thread executor whose thread has the
  chat Session bound with `ai_client.bind_session`);
- the worker hands stream chunks, the final reply and errors back through a
  `queue.SimpleQueue`; `poll()` drains it once per frame;
- `CommsLog.sink(entry)` may be called from any thread (it only puts into a
  `SimpleQueue`); `CommsLog.drain()` runs per frame on the GUI thread.

What is sent: the discussion is *part of the curated context*.  Each send builds
the context with `file_cache.build_context(files, screenshots, discussion,
system prompt)` and calls `Session.send(markdown, message, keep_history=False)`,
so edits, deletions and reordering of discussion entries are exactly what the
model sees next time, and the budget panel measures exactly what is sent.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import json
import logging
import os
import queue
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ai_client
import file_cache
from file_cache import ContextBundle, ContextItem, FileCache, TrimStep, build_context, context_window_for
from project import (FILE_MODES, PROJECT_FILE, PROVIDERS, DiscussionEntry, FileEntry,
                     ProjectFileError, default_tier_models, load_project_or_last_good, save_project)
from providers.base import ProviderError

log = logging.getLogger(__name__)

CHAT_SYSTEM_PROMPT = (
    "You are the assistant inside MMA Desk, a programming cockpit. The developer curated the "
    "context below: files (some as skeletons, curated views or outlines), screenshots and the "
    "discussion so far. Answer the developer's latest message; name file paths when you refer "
    "to code.")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
SOURCES = ("files", "screenshots", "history", "system")
MAX_ERRORS = 50
TYPING_SETTLE_S = 0.3
CLOSE_TIMEOUT_S = 5.0
HOOK_FIELDS = ("ai_input", "current_provider", "current_model")
HOOK_ITEMS = ("btn_send", "btn_save_project", "btn_add_file", "btn_remove_file", "btn_stop",
              "btn_new_discussion")


@dataclass
class FileRow:
    """One `[[files]]` entry of the project as the project panel shows it."""
    path: str
    mode: str
    tokens: int = 0          # sum over the files it names (a glob may name many)
    n_files: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class UiError:
    source: str              # "project" | "send" | "files" | "discussion" | "hook" | ...
    message: str
    hint: str = ""
    ts: float = field(default_factory=time.time)

    def text(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


@dataclass
class PanelInputs:
    """Text boxes and pickers of the panels that are not project data yet."""
    new_file_path: str = ""
    new_file_mode: str = "full"
    screenshot_path: str = ""
    open_path: str = ""
    new_discussion_name: str = ""


def _is_glob(text: str) -> bool:
    return file_cache._is_glob(text)   # the one definition of "glob" for context items


class ContextState:
    """State and actions of the context panels.  Construct on the GUI thread.

    Per frame the app calls `poll()` (drains the chat worker's queue, rebuilds
    the context bundle when something changed, checks files on disk about once
    a second).  `busy` is True while a send is in flight: the app should keep
    frames coming (disable idling) so the stream shows up without delay.
    """

    def __init__(self, project_dir: str | os.PathLike, provider: str | None = None, *,
                 cache: FileCache | None = None, disk_check_interval: float = 1.0,
                 session: ai_client.Session | None = None):
        self.cache = cache or FileCache()
        self.disk_check_interval = disk_check_interval
        self.errors: deque[UiError] = deque(maxlen=MAX_ERRORS)
        self.ai_input = ""
        self.stream_text = ""          # the reply being streamed right now
        self.stream_chunks = 0         # chunks received for the current/last reply
        self.scroll_history = False    # set when an entry is appended; the panel scrolls down
        self.last_reply = ""           # the last complete (or partial, after an error) reply
        self.last_usage: dict[str, int] = {}
        self.busy = False
        self.save_blocked = False      # last save refused: the file on disk is broken
        self.editing: set[int] = set()  # id() of discussion entries in edit mode
        self.inputs = PanelInputs()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._request_ids = itertools.count(1)
        self._request: dict[str, Any] | None = None
        self._send_future: concurrent.futures.Future | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._explicit_provider = provider
        self.project_loads = 0         # bumps on every (re)load: `config` is a new object then
        # Called with the new provider name after the Provider picker (or the hook API)
        # switched it, so the app can follow (pipeline, tier models).  A ValueError it raises
        # is shown as an error; the switch itself stays.
        self.on_provider_changed: Callable[[str], Any] | None = None
        self.session = session
        self._load(Path(project_dir))

    # ------------------------------------------------------------------ project
    def _load(self, project_dir: Path) -> None:
        self.project_dir = project_dir.resolve()
        self.config, err = load_project_or_last_good(self.project_dir)
        self.project_loads += 1
        self.project_error = str(err) if err else ""
        if err:
            self.add_error("project", str(err))
        self.current_provider = self._initial_provider()
        self.current_model = self._initial_model()
        if self.session is None:
            self.session = ai_client.Session(self.current_provider, self.current_model, label="chat")
        else:
            self.session.set_provider(self.current_provider, self.current_model)
        self.editing.clear()
        self.inputs.open_path = str(self.project_dir)
        self.bundle: ContextBundle | None = None
        self.file_rows: list[FileRow] = []
        self.generation = 0            # bumps on every rebuild of the bundle
        self.last_refresh_ms = 0.0
        self.refresh_count = 0
        self.disk_rebuilds = 0
        self._dirty = True
        self._rows_dirty = True
        self._settle_until = 0.0       # typing in an entry: rebuild once the text settles
        self._disk_sig: tuple = ()
        self._next_disk_check = 0.0
        self._trim_preview: tuple[int, list[TrimStep]] | None = None

    def _initial_provider(self) -> str:
        candidates = [("--provider", self._explicit_provider),
                      ("MMA_PROVIDER", os.environ.get("MMA_PROVIDER", "").strip().lower() or None)]
        if self.config.path.exists():
            candidates.append(("project file", self.config.provider))
        for origin, name in candidates:
            if not name:
                continue
            if name in PROVIDERS:
                return name
            self.add_error("provider", f"unknown provider {name!r} from {origin}",
                           f"choose one of {', '.join(PROVIDERS)}")
        fallback = ai_client.default_provider()
        return fallback if fallback in PROVIDERS else "mock"

    def _initial_model(self) -> str:
        chat = self.config.extra.get("chat")
        if isinstance(chat, dict) and chat.get("provider") == self.current_provider:
            model = chat.get("model")
            if isinstance(model, str) and model.strip():
                return model.strip()
        return self.models_for(self.current_provider)[0]

    def open_project(self, project_dir: str | os.PathLike) -> bool:
        path = Path(project_dir).expanduser()
        if not path.is_dir():
            self.add_error("project", f"not a folder: {path}", "give the project's root folder")
            return False
        if self.busy:
            self.add_error("project", "a reply is still streaming", "wait for it or press Stop first")
            return False
        self._load(path)
        log.info("opened project %s", self.project_dir)
        return True

    def reload(self) -> bool:
        return self.open_project(self.project_dir)

    def save(self, overwrite_broken: bool = False) -> bool:
        """Write mma_project.toml.  The provider in use becomes the project's provider (a
        `--provider`/`MMA_PROVIDER` override sticks once saved); the chat model goes to `[chat]`."""
        if self.config.provider != self.current_provider:
            self.config.switch_provider(self.current_provider)
        self.config.extra["chat"] = {"provider": self.current_provider, "model": self.current_model}
        try:
            path = save_project(self.config, overwrite_broken=overwrite_broken)
        except ProjectFileError as exc:
            self.save_blocked = True
            self.add_error("project", str(exc), "press 'Save anyway' to overwrite it (a .broken-<time> "
                           "copy is kept), or fix the file and reload")
            return False
        except OSError as exc:
            self.add_error("project", f"could not save {self.config.path}: {exc}")
            return False
        self.save_blocked = False
        self.project_error = ""
        log.info("saved %s", path)
        return True

    # ------------------------------------------------------------------ errors
    def add_error(self, source: str, message: str, hint: str = "") -> None:
        log.warning("%s: %s%s", source, message, f" ({hint})" if hint else "")
        self.errors.append(UiError(source, message, hint))

    def clear_errors(self) -> None:
        self.errors.clear()

    # ------------------------------------------------------------------ files
    def _relative(self, path: str) -> str | None:
        """Project-relative form of a path or glob, or None if it points outside the project."""
        text = os.path.expanduser(path.strip())
        if os.path.isabs(text):
            for candidate in (Path(text), Path(text).resolve()):
                try:
                    return candidate.relative_to(self.project_dir).as_posix()
                except ValueError:
                    continue
            return None
        rel = Path(text)
        if not _is_glob(text) and not (self.project_dir / rel).resolve().is_relative_to(self.project_dir):
            return None
        return rel.as_posix()

    def file_index(self, path: str) -> int:
        rel = self._relative(path)
        for i, entry in enumerate(self.config.files):
            if entry.path == rel or entry.path == path:
                return i
        return -1

    def add_file(self, path: str, mode: str = "full") -> bool:
        if mode not in FILE_MODES:
            self.add_error("files", f"unknown mode {mode!r}", f"choose one of {', '.join(FILE_MODES)}")
            return False
        if not path or not path.strip():
            self.add_error("files", "type a file path or a glob first", "e.g. src/app.py or src/**/*.py")
            return False
        rel = self._relative(path)
        if rel is None:
            self.add_error("files", f"{path} is outside the project {self.project_dir}",
                           "only files under the project root can be added")
            return False
        if not _is_glob(rel) and not (self.project_dir / rel).is_file():
            self.add_error("files", f"no such file: {rel}", f"paths are relative to {self.project_dir}")
            return False
        if self.file_index(rel) >= 0:
            self.add_error("files", f"{rel} is already in the list", "change its mode in the table")
            return False
        self.config.files.append(FileEntry(rel, mode))
        self.mark_files_changed()
        return True

    def remove_file(self, index_or_path: int | str) -> bool:
        index = index_or_path if isinstance(index_or_path, int) else self.file_index(index_or_path)
        if not 0 <= index < len(self.config.files):
            self.add_error("files", f"no file entry {index_or_path!r}")
            return False
        del self.config.files[index]
        self.mark_files_changed()
        return True

    def set_file_mode(self, index_or_path: int | str, mode: str) -> bool:
        index = index_or_path if isinstance(index_or_path, int) else self.file_index(index_or_path)
        if not 0 <= index < len(self.config.files):
            self.add_error("files", f"no file entry {index_or_path!r}")
            return False
        if mode not in FILE_MODES:
            self.add_error("files", f"unknown mode {mode!r}", f"choose one of {', '.join(FILE_MODES)}")
            return False
        if self.config.files[index].mode != mode:
            self.config.files[index].mode = mode
            self.mark_files_changed()
        return True

    def add_screenshot(self, path: str) -> bool:
        text = (path or "").strip()
        if not text:
            self.add_error("screenshots", "type an image path first")
            return False
        rel = self._relative(text)
        stored = rel if rel is not None else str(Path(text).expanduser())
        full = self.project_dir / stored
        if not full.is_file():
            self.add_error("screenshots", f"no such image: {stored}")
            return False
        if full.suffix.lower() not in IMAGE_SUFFIXES:
            self.add_error("screenshots", f"{stored} is not an image",
                           f"supported: {', '.join(IMAGE_SUFFIXES)}")
            return False
        if stored in self.config.screenshots:
            self.add_error("screenshots", f"{stored} is already attached")
            return False
        self.config.screenshots.append(stored)
        self.mark_changed()
        return True

    def remove_screenshot(self, index: int) -> bool:
        if not 0 <= index < len(self.config.screenshots):
            self.add_error("screenshots", f"no screenshot #{index}")
            return False
        del self.config.screenshots[index]
        self.mark_changed()
        return True

    # ------------------------------------------------------------------ discussions
    @property
    def discussion_names(self) -> list[str]:
        return list(self.config.discussions)

    @property
    def active_discussion(self) -> str:
        return self.config.active_discussion

    @property
    def entries(self) -> list[DiscussionEntry]:
        return self.config.discussion()

    def select_discussion(self, name: str) -> bool:
        if name not in self.config.discussions:
            self.add_error("discussion", f"no discussion named {name!r}")
            return False
        if name != self.config.active_discussion:
            self.config.active_discussion = name
            self.editing.clear()
            self.mark_changed()
        return True

    def new_discussion(self, name: str) -> bool:
        try:
            self.config.create_discussion(name)
        except ValueError as exc:
            self.add_error("discussion", str(exc))
            return False
        self.editing.clear()
        self.mark_changed()
        return True

    def add_entry(self, role: str, content: str) -> bool:
        try:
            self.config.add_entry(role, content)
        except ValueError as exc:
            self.add_error("discussion", str(exc))
            return False
        self.scroll_history = True
        self.mark_changed()
        return True

    def edit_entry(self, index: int, *, content: str | None = None, role: str | None = None) -> bool:
        try:
            self.config.edit_entry(index, content=content, role=role)
        except (ValueError, IndexError) as exc:
            self.add_error("discussion", str(exc))
            return False
        # Typing changes the text every frame: rebuild once it pauses, not per keystroke.
        self.mark_changed(settle=TYPING_SETTLE_S if role is None else 0.0)
        return True

    def delete_entry(self, index: int) -> bool:
        try:
            entry = self.config.delete_entry(index)
        except IndexError as exc:
            self.add_error("discussion", str(exc))
            return False
        self.editing.discard(id(entry))
        self.mark_changed()
        return True

    def move_entry(self, index: int, delta: int) -> bool:
        """Move entry `index` by `delta` places (-1 = up); a move past either end does nothing."""
        entries = self.entries
        target = index + delta
        if not 0 <= index < len(entries) or not 0 <= target < len(entries):
            return False
        self.config.move_entry(index, target)
        self.mark_changed()
        return True

    def is_editing(self, index: int) -> bool:
        entries = self.entries
        return 0 <= index < len(entries) and id(entries[index]) in self.editing

    def toggle_edit(self, index: int) -> bool:
        """Edit/Done toggle of one entry; returns whether it is now in edit mode."""
        entries = self.entries
        if not 0 <= index < len(entries):
            return False
        key = id(entries[index])
        if key in self.editing:
            self.editing.discard(key)
            return False
        self.editing.add(key)
        return True

    # ------------------------------------------------------------------ provider / model
    def models_for(self, provider: str) -> list[str]:
        """The chat model choices for a provider, its default first."""
        tiers = self.config.models if provider == self.config.provider else default_tier_models(provider)
        names = [ai_client.DEFAULT_MODELS.get(provider, "")]
        for value in tiers.values():
            names.extend(value if isinstance(value, list) else [value])
        seen: list[str] = []
        for name in names:
            if isinstance(name, str) and name and name not in seen:
                seen.append(name)
        return seen

    def set_provider(self, provider: str) -> bool:
        if provider not in PROVIDERS:
            self.add_error("provider", f"unknown provider {provider!r}", f"choose one of {', '.join(PROVIDERS)}")
            return False
        if self.busy:
            self.add_error("provider", "cannot switch provider while a reply is streaming",
                           "wait for it or press Stop")
            return False
        if provider == self.current_provider:
            return True
        self.config.switch_provider(provider)
        self.current_provider = provider
        self.current_model = self.models_for(provider)[0]
        self.session.set_provider(provider, self.current_model)
        self.mark_changed()
        if self.on_provider_changed is not None:
            try:
                self.on_provider_changed(provider)
            except ValueError as exc:
                self.add_error("provider", f"the app could not follow the switch to {provider}: {exc}")
        return True

    def set_model(self, model: str) -> bool:
        if not isinstance(model, str) or not model.strip():
            self.add_error("provider", "a model needs a name")
            return False
        if self.busy:
            self.add_error("provider", "cannot switch model while a reply is streaming",
                           "wait for it or press Stop")
            return False
        self.current_model = model.strip()
        self.session.model = self.current_model
        self.mark_changed()
        return True

    # ------------------------------------------------------------------ context bundle
    def mark_changed(self, settle: float = 0.0) -> None:
        """Something that goes into the context changed: rebuild the bundle at the next poll
        (or, with `settle`, at the first poll after `settle` seconds without further change)."""
        self._dirty = True
        self._settle_until = time.monotonic() + settle if settle > 0 else 0.0

    def mark_files_changed(self) -> None:
        self.mark_changed()
        self._rows_dirty = True

    @property
    def context_limit(self) -> int:
        """Tokens the context may use: the model's window, capped by the project budget."""
        return min(context_window_for(self.current_model), self.config.budgets.max_context_tokens)

    def discussion_dicts(self) -> list[dict]:
        return [{"role": e.role, "content": e.content, "ts": e.ts} for e in self.entries]

    def _build(self, window: int | None = None) -> ContextBundle:
        return build_context([ContextItem(f.path, f.mode) for f in self.config.files],
                             self.config.screenshots, self.discussion_dicts(), CHAT_SYSTEM_PROMPT,
                             window or self.context_limit, self.cache, root=self.project_dir,
                             model=self.current_model)

    def refresh(self, force: bool = False) -> bool:
        """Rebuild token estimates if anything changed; returns whether it rebuilt."""
        if not (force or self._dirty or self.bundle is None):
            return False
        if not force and self.bundle is not None and time.monotonic() < self._settle_until:
            return False
        start = time.perf_counter()
        if self._rows_dirty or force or not self.file_rows:
            rows = []
            for f in self.config.files:
                one = build_context([ContextItem(f.path, f.mode)], root=self.project_dir,
                                    cache=self.cache, model=self.current_model)
                files = [e for e in one.items if e.source == "files"]
                rows.append(FileRow(f.path, f.mode, sum(e.tokens for e in files), len(files),
                                    [e.message for e in one.errors]))
            self.file_rows = rows
            self._rows_dirty = False
        self.bundle = self._build()
        for err in self.bundle.errors:
            if err.source != "files":     # file problems show on their rows
                log.info("context: %s", err)
        self._trim_preview = None
        self.generation += 1
        self.refresh_count += 1
        self._dirty = False
        self._disk_sig = self._disk_signature()
        self._next_disk_check = time.monotonic() + self.disk_check_interval
        self.last_refresh_ms = (time.perf_counter() - start) * 1000
        return True

    def _disk_signature(self) -> tuple:
        sig = []
        paths: list[Path] = []
        for f in self.config.files:
            if _is_glob(f.path):
                pattern = f.path
                if os.path.isabs(pattern):
                    rel = self._relative(pattern)
                    if rel is None:
                        continue
                    pattern = rel
                try:
                    paths.extend(sorted(p for p in self.project_dir.glob(pattern) if p.is_file()))
                except (ValueError, NotImplementedError, OSError) as exc:
                    log.debug("glob %r: %s", f.path, exc)
            else:
                paths.append(self.project_dir / f.path)
        paths.extend(self.project_dir / s for s in self.config.screenshots)
        for p in paths:
            try:
                st = p.stat()
                sig.append((str(p), st.st_mtime_ns, st.st_size))
            except OSError:
                sig.append((str(p), None, None))
        return tuple(sig)

    def check_disk(self) -> bool:
        """Rebuild if a context file changed, appeared or vanished; returns whether it did."""
        if self._disk_signature() == self._disk_sig:
            return False
        self.disk_rebuilds += 1
        self.mark_files_changed()
        return self.refresh()

    def trim_preview(self, limit: int = 6) -> list[TrimStep]:
        """What trimming would drop first.  When over budget this is the real plan; otherwise
        the plan `build_context` would make if the window were tiny (computed once per rebuild)."""
        self.refresh()
        if self.bundle is None:
            return []
        if self.bundle.over_budget:
            return self.bundle.trim_plan[:limit]
        if self._trim_preview is None or self._trim_preview[0] != self.generation:
            hypothetical = self._build(window=1)
            self._trim_preview = (self.generation, hypothetical.trim_plan)
        return self._trim_preview[1][:limit]

    def budget(self) -> dict:
        """Numbers for the budget panel and the hook API."""
        self.refresh()
        b = self.bundle
        draft = file_cache.estimate_tokens(self.ai_input)
        total = (b.total_tokens if b else 0) + draft
        limit = self.context_limit
        return {
            "total_tokens": total,
            "context_tokens": b.total_tokens if b else 0,
            "draft_tokens": draft,
            "context_window": context_window_for(self.current_model),
            "budget_limit": self.config.budgets.max_context_tokens,
            "limit": limit,
            "fraction": (total / limit) if limit else 0.0,
            "by_source": dict(b.by_source) if b else {s: 0 for s in SOURCES},
            "share": dict(b.share) if b else {s: 0.0 for s in SOURCES},
            "over_budget": total > limit,
            "fits_after_trim": b.fits_after_trim if b else True,
            "trim_plan": [{"action": t.action, "label": t.label, "tokens_saved": t.tokens_saved,
                           "total_after": t.total_after} for t in (b.trim_plan if b else [])],
            "errors": [str(e) for e in (b.errors if b else [])],
            "cache": self.cache.stats(),
            "refresh_count": self.refresh_count,
            "last_refresh_ms": round(self.last_refresh_ms, 2),
            "disk_rebuilds": self.disk_rebuilds,
            "session_usage": {"input_tokens": self.session.usage.input_tokens,
                              "output_tokens": self.session.usage.output_tokens},
        }

    # ------------------------------------------------------------------ sending
    def _chat_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            session = self.session
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="chat-send",
                initializer=ai_client.bind_session, initargs=(session,))
        return self._executor

    def send_message(self) -> bool:
        """Send `ai_input` with the curated context; the reply streams in through `poll()`."""
        if self.busy:
            self.add_error("send", "a reply is still streaming", "wait for it or press Stop")
            return False
        text = self.ai_input.strip()
        if not text:
            self.add_error("send", "the message box is empty", "type a message first")
            return False
        self.refresh(force=self._dirty)
        bundle = self.bundle
        if bundle.over_budget and not bundle.fits_after_trim:
            log.warning("sending %d tokens into a %d-token limit", bundle.total_tokens, self.context_limit)
        images = [{"mime_type": img["mime_type"], "data": img["data"]} for img in bundle.images]
        request_id = next(self._request_ids)
        self._request = {"id": request_id, "config": self.config,
                         "discussion": self.config.active_discussion}
        if not self.add_entry("user", text):
            self._request = None
            return False
        self.ai_input = ""
        self.stream_text = ""
        self.stream_chunks = 0
        self.busy = True
        self.session.cancel_event.clear()
        self._send_future = self._chat_executor().submit(
            self._run_send, request_id, bundle.markdown, text, images)
        return True

    def _run_send(self, request_id: int, markdown: str, text: str, images: list[dict]) -> None:
        """Chat worker thread: one `Session.send`, results back through the SimpleQueue."""
        put = self._inbox.put
        try:
            result = self.session.send(
                markdown, text, str(self.project_dir), system_prompt=CHAT_SYSTEM_PROMPT,
                stream_callback=lambda chunk: put(("chunk", request_id, chunk)),
                images=images or None, keep_history=False)
        except ProviderError as exc:
            put(("error", request_id, {"message": f"{exc.provider or self.session.provider}: {exc}",
                                       "hint": exc.hint, "partial": exc.partial_text}))
        except Exception as exc:  # a bug must reach the user, not vanish in the worker thread
            log.exception("chat send failed")
            put(("error", request_id, {"message": f"{type(exc).__name__}: {exc}",
                                       "hint": "this is a bug; the full traceback is in the log",
                                       "partial": ""}))
        else:
            put(("done", request_id, {"text": result.text, "input_tokens": result.usage.input_tokens,
                                      "output_tokens": result.usage.output_tokens}))

    def cancel(self) -> bool:
        if not self.busy:
            return False
        self.session.cancel_event.set()
        return True

    def poll(self, max_events: int = 10_000) -> int:
        """Per frame, on the GUI thread: apply worker results, rebuild lazily, watch the disk."""
        handled = 0
        while handled < max_events:
            try:
                kind, request_id, data = self._inbox.get_nowait()
            except queue.Empty:
                break
            handled += 1
            if self._request is None or request_id != self._request["id"]:
                log.debug("dropping %s for finished request %s", kind, request_id)
                continue
            if kind == "chunk":
                self.stream_text += data
                self.stream_chunks += 1
            elif kind == "done":
                self._finish(data["text"], error=None)
                self.last_usage = {"input_tokens": data["input_tokens"],
                                   "output_tokens": data["output_tokens"]}
            elif kind == "error":
                partial = data["partial"] or self.stream_text
                self.add_error("send", data["message"], data["hint"])
                self._finish(partial, error=data["message"])
            else:
                log.error("unknown chat event %r", kind)
        if self._dirty:
            self.refresh()
        elif not self.busy and time.monotonic() >= self._next_disk_check:
            self._next_disk_check = time.monotonic() + self.disk_check_interval
            self.check_disk()
        return handled

    def _finish(self, text: str, error: str | None) -> None:
        request = self._request
        self._request = None
        self.busy = False
        self.session.cancel_event.clear()
        self.last_reply = text
        self.stream_text = ""
        if not text:
            return
        if request["config"] is not self.config:
            log.warning("reply arrived after the project changed; kept only as last reply")
            return
        name = request["discussion"]
        if name not in self.config.discussions:
            log.warning("discussion %r is gone; the reply goes to %r", name, self.config.active_discussion)
            name = self.config.active_discussion
        content = text if error is None else f"{text}\n\n[incomplete: {error}]"
        self.config.add_entry("assistant", content, discussion=name)
        self.scroll_history = True
        self.mark_changed()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Poll until no send is in flight (for scripts and tests; the GUI just polls per frame)."""
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            self.poll()
            if self.busy:
                time.sleep(0.005)
        return not self.busy

    def close(self) -> None:
        """Stop the chat worker: cancel a send in flight and wait for it (bounded)."""
        self.cancel()
        if self._executor is None:
            return
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None
        future, self._send_future = self._send_future, None
        if future is not None:
            try:
                future.result(timeout=CLOSE_TIMEOUT_S)
            except concurrent.futures.TimeoutError:
                log.warning("the chat request did not stop within %.0f s; leaving it behind",
                            CLOSE_TIMEOUT_S)
            except concurrent.futures.CancelledError:
                log.debug("the chat request had not started; cancelled")

    # ------------------------------------------------------------------ hook API
    def snapshot(self) -> dict:
        """JSON-able view for the hook API.  Call on the GUI thread (it reads live state)."""
        budget = self.budget()
        return {
            "project_dir": str(self.project_dir),
            "project_file": str(self.project_dir / PROJECT_FILE),
            "project_error": self.project_error,
            "files": [{"path": r.path, "mode": r.mode, "tokens": r.tokens, "n_files": r.n_files,
                       "errors": list(r.errors)} for r in self.file_rows],
            "screenshots": list(self.config.screenshots),
            "discussion": {"name": self.config.active_discussion, "names": self.discussion_names,
                           "entries": self.discussion_dicts()},
            "ai_input": self.ai_input,
            "current_provider": self.current_provider,
            "current_model": self.current_model,
            "stream_text": self.stream_text,
            "last_reply": self.last_reply,
            "last_usage": dict(self.last_usage),
            "busy": self.busy,
            "budget": {k: budget[k] for k in ("total_tokens", "limit", "context_window", "fraction",
                                               "by_source", "over_budget", "trim_plan", "cache")},
            "errors": [{"source": e.source, "message": e.message, "hint": e.hint} for e in self.errors],
        }

    def get_value(self, field_name: str) -> Any:
        snap = self.snapshot()
        if field_name not in snap:
            raise ValueError(f"unknown field {field_name!r}; known: {', '.join(sorted(snap))}")
        return snap[field_name]

    def set_value(self, field_name: str, value: Any) -> None:
        """Hook API write; raises ValueError for an unknown field or a bad value."""
        if field_name not in HOOK_FIELDS:
            raise ValueError(f"unknown field {field_name!r}; settable: {', '.join(HOOK_FIELDS)}")
        if not isinstance(value, str):
            raise ValueError(f"{field_name} needs a string, got {type(value).__name__}")
        if field_name == "ai_input":
            self.ai_input = value
        elif field_name == "current_provider":
            if value not in PROVIDERS:
                raise ValueError(f"unknown provider {value!r}; choose one of {', '.join(PROVIDERS)}")
            if not self.set_provider(value):
                raise ValueError(self.errors[-1].text())
        elif not self.set_model(value):
            raise ValueError(self.errors[-1].text())

    def click(self, item: str, **args: Any) -> dict:
        """Hook API button press.  Returns {"ok": bool, ...}; unknown items raise ValueError."""
        actions: dict[str, Callable[[], bool]] = {
            "btn_send": self.send_message,
            "btn_save_project": lambda: self.save(bool(args.get("overwrite_broken", False))),
            "btn_add_file": lambda: self.add_file(str(args.get("path", "")), str(args.get("mode", "full"))),
            "btn_remove_file": lambda: self.remove_file(str(args.get("path", ""))),
            "btn_stop": self.cancel,
            "btn_new_discussion": lambda: self.new_discussion(str(args.get("name", ""))),
        }
        if item not in actions:
            raise ValueError(f"unknown item {item!r}; clickable: {', '.join(HOOK_ITEMS)}")
        before = len(self.errors)
        ok = bool(actions[item]())
        out: dict[str, Any] = {"ok": ok}
        if not ok and len(self.errors) > before:
            out["error"] = self.errors[-1].text()
        return out


# ====================================================================== comms log

@dataclass
class CommsRow:
    seq: int
    ts: float
    time_str: str
    direction: str
    kind: str
    provider: str
    model: str
    tokens_in: int | None
    tokens_out: int | None
    preview: str
    entry: dict
    haystack: str

    def full_payload(self) -> str:
        return json.dumps(self.entry.get("payload"), indent=2, ensure_ascii=False, default=str)


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def _preview(kind: str, payload: Any) -> str:
    if not isinstance(payload, dict):
        return _one_line(payload)
    if kind == "request":
        messages = payload.get("messages") or []
        last = messages[-1] if messages else {}
        return _one_line(f"{len(messages)} msg, system {payload.get('system_chars', 0)} chars: "
                         f"{last.get('content', '')}")
    if kind == "response":
        return _one_line(payload.get("text") or json.dumps(payload.get("tool_calls", []), default=str))
    if kind in ("error", "retry"):
        return _one_line(f"{payload.get('error', '')}: {payload.get('message', '')}")
    return _one_line(json.dumps(payload, ensure_ascii=False, default=str))


class CommsLog:
    """The comms log the GUI shows: a thread-safe inbox, a capped list, filters.

    `sink(entry)` is safe from any thread (it only puts into a `SimpleQueue`), so it can be
    `ai_client.comms_log_callback` (see `install()`).  `drain()` moves entries into the list on
    the GUI thread, once per frame; beyond `limit` entries the oldest are dropped and counted.
    """

    def __init__(self, limit: int = 10_000):
        self.limit = limit
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.rows: list[CommsRow] = []
        self.dropped = 0
        self._seq = itertools.count(1)
        self.filter_kind = ""          # "" = any
        self.filter_provider = ""
        self.filter_direction = ""
        self.filter_text = ""
        self.selected_seq: int | None = None
        self.follow = True             # keep the newest row in view while at the bottom
        self._payload_cache: tuple[int, str] | None = None
        self._visible: list[CommsRow] | None = None
        self.kinds: set[str] = set()
        self.providers: set[str] = set()
        self._installed_prev: Any = None
        self._installed = False

    # -- any thread ------------------------------------------------------------
    def sink(self, entry: dict) -> None:
        self._inbox.put(entry)

    # -- GUI thread ------------------------------------------------------------
    def install(self) -> None:
        """Make this log `ai_client.comms_log_callback` (every session's entries arrive here)."""
        if not self._installed:
            self._installed_prev = ai_client.comms_log_callback
            ai_client.comms_log_callback = self.sink
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            if ai_client.comms_log_callback == self.sink:
                ai_client.comms_log_callback = self._installed_prev
            self._installed = False

    def drain(self, max_items: int = 100_000) -> int:
        added: list[CommsRow] = []
        while len(added) < max_items:
            try:
                entry = self._inbox.get_nowait()
            except queue.Empty:
                break
            added.append(self._row(entry))
        if not added:
            return 0
        self.rows.extend(added)
        excess = len(self.rows) - self.limit
        if excess > 0:
            del self.rows[:excess]
            self.dropped += excess
            self._visible = None
        elif self._visible is not None:
            self._visible.extend(r for r in added if self._matches(r))
        return len(added)

    def _row(self, entry: dict) -> CommsRow:
        if not isinstance(entry, dict):
            entry = {"kind": "invalid", "payload": {"value": repr(entry)}}
        payload = entry.get("payload", {})
        usage = payload.get("usage") if isinstance(payload, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        ts = entry.get("ts")
        ts = float(ts) if isinstance(ts, (int, float)) else time.time()
        kind = str(entry.get("kind", ""))
        provider = str(entry.get("provider", ""))
        self.kinds.add(kind)
        self.providers.add(provider)
        row = CommsRow(
            seq=next(self._seq), ts=ts,
            time_str=time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}",
            direction=str(entry.get("direction", "")), kind=kind, provider=provider,
            model=str(entry.get("model", "")),
            tokens_in=usage.get("input_tokens"), tokens_out=usage.get("output_tokens"),
            preview=_preview(kind, payload), entry=entry, haystack="")
        body = json.dumps(payload, ensure_ascii=False, default=str)
        row.haystack = " ".join((row.direction, kind, provider, row.model, body)).lower()
        return row

    def set_filter(self, *, kind: str | None = None, provider: str | None = None,
                   direction: str | None = None, text: str | None = None) -> None:
        changed = False
        for attr, value in (("filter_kind", kind), ("filter_provider", provider),
                            ("filter_direction", direction), ("filter_text", text)):
            if value is not None and getattr(self, attr) != value:
                setattr(self, attr, value)
                changed = True
        if changed:
            self._visible = None

    def _matches(self, row: CommsRow) -> bool:
        if self.filter_kind and row.kind != self.filter_kind:
            return False
        if self.filter_provider and row.provider != self.filter_provider:
            return False
        if self.filter_direction and row.direction != self.filter_direction:
            return False
        text = self.filter_text.strip().lower()
        return not text or all(word in row.haystack for word in text.split())

    def visible(self) -> list[CommsRow]:
        if self._visible is None:
            self._visible = [r for r in self.rows if self._matches(r)]
        return self._visible

    def select(self, seq: int | None) -> None:
        self.selected_seq = seq

    @property
    def selected(self) -> CommsRow | None:
        if self.selected_seq is None:
            return None
        for row in reversed(self.rows):
            if row.seq == self.selected_seq:
                return row
        return None

    def selected_payload(self) -> str:
        """Pretty JSON of the selected entry's payload (formatted once per selection)."""
        row = self.selected
        if row is None:
            return ""
        if self._payload_cache is None or self._payload_cache[0] != row.seq:
            self._payload_cache = (row.seq, row.full_payload())
        return self._payload_cache[1]

    def clear(self) -> None:
        self.rows.clear()
        self._visible = None
        self.selected_seq = None

    def snapshot(self, last: int = 20) -> dict:
        visible = self.visible()
        return {
            "count": len(self.rows), "dropped": self.dropped, "visible": len(visible),
            "filters": {"kind": self.filter_kind, "provider": self.filter_provider,
                        "direction": self.filter_direction, "text": self.filter_text},
            "last": [{"seq": r.seq, "direction": r.direction, "kind": r.kind, "provider": r.provider,
                      "model": r.model, "tokens_in": r.tokens_in, "tokens_out": r.tokens_out,
                      "preview": r.preview} for r in visible[-last:]],
        }
