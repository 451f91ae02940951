"""GUI-free state behind the context panels (project, discussion, budget, comms).

`ContextState` owns what the developer curates for the chat: the loaded
`ProjectConfig` (files with view modes, screenshots, discussions), the message
box, the provider/model pickers and one chat `ai_client.Session`.  It has no
imgui import, so every behaviour is unit-testable without a window.  Pieces:

- `gui/file_items.py`  `FileItems` (mixin): files, modes, screenshots, token
  estimates, the context bundle and the budget (built on `gui/context_build.py`'s
  builder thread in background mode);
- `gui/chat_send.py`   `ChatSending` (mixin): Send with the budget rules of
  `gui/send_check.py`, Regenerate, the reply stream;
- `gui/autosave.py`    `Autosave`: the project file saves itself (hot exit);
- `gui/chat.py`        `ChatWorker`: the send on its own thread, results via a SimpleQueue;
- `gui/comms_log.py`   `CommsLog`, the comms log the Comms window shows.

Threading: everything here runs on the GUI thread;
only `ChatWorker` sends on its thread, and `poll()` drains its results once
per frame.  `CommsLog.sink(entry)` may be called from any thread.

What is sent: the discussion is *part of the curated context*.  Each send builds
the context with `file_cache.build_context(files, screenshots, discussion,
system prompt)` and calls `Session.send(markdown, message, keep_history=False)`,
so edits, deletions and reordering of discussion entries are exactly what the
model sees next time, and the budget panel measures exactly what is sent.

Session logs: the chat session writes JSON Lines to `<project>/.mma_desk/logs`
(`headless.SESSION_LOG_DIR`, the folder the headless CLI uses); opening another
project starts a new chat session logging there.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ai_client
from atomic_files import atomic_write_text
from file_cache import FileCache
from gui import send_check
from gui.autosave import Autosave, recovery_path
from gui.chat import ChatWorker
from gui.chat_send import ChatSending
from gui.file_items import TYPING_SETTLE_S, FileItems
from gui.file_tree import FileTree
from headless import SESSION_LOG_DIR
from models import TierUsage
from project import (
    PROJECT_FILE,
    PROVIDERS,
    DiscussionEntry,
    ProjectFileError,
    dumps_project,
    load_project_or_last_good,
    save_project,
)
from providers import catalog
from providers.credentials import redact

log = logging.getLogger(__name__)

MAX_ERRORS = 50
HOOK_FIELDS = ("ai_input", "current_provider", "current_model")
HOOK_ITEMS = ("btn_send", "btn_save_project", "btn_add_file", "btn_remove_file", "btn_stop",
              "btn_new_discussion", "btn_regenerate")


def session_log_dir(project_dir: str | os.PathLike) -> Path:
    """Where a project's session logs (JSON Lines, secrets redacted) go."""
    return Path(project_dir) / SESSION_LOG_DIR


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
    copied_key: str = ""                 # which Copy button said "Copied", and when
    copied_at: float = 0.0
    picker_open: bool = False            # the file picker (Browse) and the preview
    picker_filter: str = ""
    preview_path: str = ""
    preview_mode: str = "full"


class ContextState(ChatSending, FileItems):
    """State and actions of the context panels.  Construct on the GUI thread.

    Per frame the app calls `poll()` (drains the chat worker's queue, rebuilds
    the context bundle when something changed, checks files on disk about once
    a second).  `busy` is True while a send is in flight: the app should keep
    frames coming (disable idling) so the stream shows up without delay.
    """
    session: ai_client.Session     # the chat's: passed in, or owned (one per project folder)
    chat: ChatWorker               # sends on its own thread with `session` bound

    def __init__(self, project_dir: str | os.PathLike, provider: str | None = None, *,
                 cache: FileCache | None = None, disk_check_interval: float = 1.0,
                 session: ai_client.Session | None = None, background_builds: bool = False,
                 autosave: bool = False):
        self.cache = cache or FileCache()
        # Background mode (the app): context builds, disk checks and previews run on the
        # context builder's thread and poll() never waits.  Otherwise poll() builds inline.
        self.background_builds = background_builds
        self.autosave = Autosave(enabled=autosave)
        self.pending_send: send_check.SendCheck | None = None   # a Send waiting for the user's word
        self._trim_future: concurrent.futures.Future[send_check.TrimOffer] | None = None
        self.disk_check_interval = disk_check_interval
        self.errors: deque[UiError] = deque(maxlen=MAX_ERRORS)
        self.ai_input = ""
        self.stream_text = ""          # the reply being streamed right now
        self.stream_chunks = 0         # chunks received for the current/last reply
        self.scroll_history = False    # set when an entry is appended; the panel scrolls down
        self.last_reply = ""           # the last complete (or partial, after an error) reply
        self.last_usage: dict[str, int] = {}
        # Every chat response's tokens, per model, for the Usage & Cost window ("Chat" row).
        self.chat_usage = TierUsage()
        self.chat_usage_version = 0
        self.busy = False
        self.save_blocked = False      # last save refused: the file on disk is broken
        self.editing: set[int] = set()  # id() of discussion entries in edit mode
        self.inputs = PanelInputs()
        self._request_ids = itertools.count(1)
        self._request: dict[str, Any] | None = None
        self._explicit_provider = provider
        self.project_loads = 0         # bumps on every (re)load: `config` is a new object then
        # Called with the new provider name after the Provider picker (or the hook API)
        # switched it, so the app can follow (pipeline, tier models).  A ValueError it raises
        # is shown as an error; the switch itself stays.
        self.on_provider_changed: Callable[[str], Any] | None = None
        # Set by the app: with it the chat's model gets the project's tools (built-in and MCP),
        # asking through it before a write, a command or an MCP tool that is not read-only.
        self.tool_approver: Callable[..., dict] | None = None
        self._owns_session = session is None
        if session is not None:        # one passed in stays (its log folder is the caller's)
            self.session = session
            self.chat = ChatWorker(session)
        self.log_dir: Path | None = None   # the owned session's JSON Lines folder
        self._load(Path(project_dir))

    # ------------------------------------------------------------------ project
    def _load(self, project_dir: Path) -> None:
        self.project_dir = project_dir.resolve()
        self.config, err = load_project_or_last_good(self.project_dir)
        self.project_loads += 1
        try:
            disk = self.config.path.read_bytes() if self.config.path.is_file() else None
        except OSError:
            disk = None
        self.autosave = Autosave(enabled=self.autosave.enabled, delay_s=self.autosave.delay_s, disk_bytes=disk)
        self.pending_send = None
        self.project_error = str(err) if err else ""
        if err:
            self.add_error("project", str(err))
        self.current_provider = self._initial_provider()
        self.current_model = self._initial_model()
        self._bind_session()
        self.editing.clear()
        self.inputs.open_path = str(self.project_dir)
        self.inputs.preview_path = ""
        self.file_tree = FileTree(self.project_dir)
        self._reset_items()

    def _bind_session(self) -> None:
        """The chat session for this project: a new one, logging to the project's folder, when
        the folder changed; otherwise the same one, switched to the current provider/model."""
        log_dir = session_log_dir(self.project_dir)
        if self._owns_session and log_dir != self.log_dir:
            if self.log_dir is not None:           # the previous project's session had a worker
                self.chat.close()
            self.session = ai_client.Session(self.current_provider, self.current_model, label="chat",
                                             log_dir=log_dir)
            self.log_dir = log_dir
            self.chat = ChatWorker(self.session)
            return
        self.session.set_provider(self.current_provider, self.current_model)

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

    def open_project(self, project_dir: str | os.PathLike, discard_unsaved: bool = False) -> bool:
        """Open a project folder.  Unsaved changes of the current one are saved first; if
        that fails the switch is refused (unless `discard_unsaved`), so nothing is lost."""
        path = Path(project_dir).expanduser()
        if not path.is_dir():
            self.add_error("project", f"not a folder: {path}", "give the project's root folder")
            return False
        if self.busy:
            self.add_error("project", "a reply is still streaming", "wait for it or press Stop first")
            return False
        if self.autosave.unsaved and not discard_unsaved and not self.save(auto=True):
            self.add_error("project", "not switching: the changes of this project could not be saved",
                           "press 'Save anyway', or Reload to discard them")
            return False
        self._load(path)
        log.info("opened project %s", self.project_dir)
        return True

    def reload(self) -> bool:
        """Re-read the project file; changes not saved yet are discarded (the panel asks first)."""
        return self.open_project(self.project_dir, discard_unsaved=True)

    def note_unsaved(self) -> None:
        """Something the project file holds changed: autosave it once the edits settle."""
        self.autosave.note_change()

    @property
    def unsaved(self) -> bool:
        return self.autosave.unsaved

    def save(self, overwrite_broken: bool = False, auto: bool = False) -> bool:
        """Write mma_project.toml.  The provider in use becomes the project's provider (a
        `--provider`/`MMA_PROVIDER` override sticks once saved); the chat model goes to `[chat]`.

        `auto` (autosave, hot exit): a file someone else changed on disk since this session
        read or wrote it is not overwritten; the error says how to go on."""
        if self.config.provider != self.current_provider:
            self.config.switch_provider(self.current_provider)
        self.config.extra["chat"] = {"provider": self.current_provider, "model": self.current_model}
        path = self.config.path
        if auto and not overwrite_broken:
            try:
                on_disk = path.read_bytes() if path.is_file() else None
            except OSError as exc:
                on_disk = None
                log.warning("could not read %s before autosaving: %s", path, exc)
            if on_disk is not None and on_disk != self.autosave.disk_bytes and \
                    on_disk != dumps_project(self.config).encode("utf-8"):
                self.save_blocked = True
                if self.autosave.failed(f"{PROJECT_FILE} was changed on disk by something else"):
                    self.add_error("project", f"not autosaving: {path} changed on disk since it was loaded",
                                   "Reload to take the file's version, or 'Save anyway' to overwrite it")
                return False
        try:
            path = save_project(self.config, overwrite_broken=overwrite_broken)
        except ProjectFileError as exc:
            self.save_blocked = True
            if not auto or self.autosave.failed("the project file on disk is broken"):
                self.add_error("project", str(exc), "press 'Save anyway' to overwrite it (a .broken-<time> "
                               "copy is kept), or fix the file and reload")
            return False
        except OSError as exc:
            if not auto or self.autosave.failed(str(exc)):
                self.add_error("project", f"could not save {self.config.path}: {exc}")
            return False
        try:
            written = path.read_bytes()
        except OSError:
            written = None
        self.autosave.saved(written)
        if auto:
            self.autosave.saves += 1
        self.save_blocked = False
        self.project_error = ""
        log.info("%s %s", "autosaved" if auto else "saved", path)
        return True

    def flush(self) -> bool:
        """Save now if anything is unsaved (quit, project switch); returns whether all is saved."""
        return not self.autosave.unsaved or self.save(auto=True)

    def flush_on_exit(self) -> Path | None:
        """The last save before the app exits.  If the project file cannot take it, the
        project goes to a recovery file instead (returned), so quitting never loses work."""
        if self.flush():
            return None
        target = recovery_path(self.project_dir)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, dumps_project(self.config))
        except OSError as exc:
            log.error("could not write the unsaved project to %s either: %s", target, exc)
            return None
        log.warning("the project file could not be saved; the unsaved project is in %s", target)
        return target

    # ------------------------------------------------------------------ errors
    def add_error(self, source: str, message: str, hint: str = "") -> None:
        """Show an error (redacted: no key ever reaches the screen or the hook API)."""
        message, hint = redact(message), redact(hint)
        log.warning("%s: %s%s", source, message, f" ({hint})" if hint else "")
        self.errors.append(UiError(source, message, hint))

    def clear_errors(self, sources: Iterable[str] | None = None) -> None:
        """Forget the errors shown so far (only those of `sources`, when given)."""
        if sources is None:
            self.errors.clear()
            return
        wanted = set(sources)
        kept = [e for e in self.errors if e.source not in wanted]
        self.errors.clear()
        self.errors.extend(kept)

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

    def discussion_dicts(self) -> list[dict]:
        return [{"role": e.role, "content": e.content, "ts": e.ts} for e in self.entries]

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
        tiers = (self.config.tier_models() if provider == self.config.provider
                 else catalog.default_tier_models(provider))
        return list(dict.fromkeys((catalog.default_chat_model(provider), *tiers.all_models())))

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

    def poll(self, max_events: int = 10_000) -> int:
        """Per frame, on the GUI thread: apply worker results, rebuild lazily, watch the disk,
        autosave once edits settle."""
        handled = self._poll_chat(max_events)
        trim = self._trim_future
        if trim is not None and trim.done():
            self._trim_future = None
            pending = self.pending_send
            if pending is not None and pending.offer_pending:
                pending.offer_pending = False
                pending.offer = trim.result()
        if self.background_builds:
            self.poll_builds()
        elif self._dirty:
            self.refresh()
        elif not self.busy and time.monotonic() >= self._next_disk_check:
            self._next_disk_check = time.monotonic() + self.disk_check_interval
            self.check_disk()
        if self.autosave.due():
            self.save(auto=True)
        return handled

    def close(self) -> None:
        """Stop the chat worker (cancel a send in flight and wait for it, bounded) and the builder."""
        self.cancel()
        self.chat.close()
        self.close_builder()

    # ------------------------------------------------------------------ hook API
    def snapshot(self) -> dict:
        """JSON-able view for the hook API.  Call on the GUI thread (it reads live state)."""
        budget = self.budget()
        rows = {(r.path, r.mode): r for r in self.file_rows}

        def file_dict(path: str, mode: str) -> dict:
            row = rows.get((path, mode))
            if row is None:             # measured at the next build
                return {"path": path, "mode": mode, "tokens": None, "n_files": None, "errors": []}
            return {"path": path, "mode": mode, "tokens": row.tokens, "n_files": row.n_files,
                    "errors": list(row.errors), "overlaps": row.overlaps}
        return {
            "project_dir": str(self.project_dir),
            "project_file": str(self.project_dir / PROJECT_FILE),
            "project_error": self.project_error,
            "unsaved": self.autosave.unsaved,
            "autosave": {"status": self.autosave.status(), "saves": self.autosave.saves,
                         "error": self.autosave.error},
            "building": self.building,
            "build_progress": list(self.build_progress) if self.build_progress else None,
            "pending_send": None if self.pending_send is None else {
                "verdict": self.pending_send.verdict, "text": self.pending_send.describe(),
                "total": self.pending_send.total, "cost_usd": self.pending_send.cost_usd},
            "files": [file_dict(f.path, f.mode) for f in self.config.files],
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
            "btn_send": lambda: self.send_message(bool(args.get("confirm", False)), bool(args.get("trimmed", False))),
            "btn_regenerate": self.regenerate,
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
        elif not ok and item == "btn_send" and self.pending_send is not None:
            out["error"] = (f"needs confirmation: {self.pending_send.describe()} "
                            "(click btn_send again with {\"confirm\": true} or {\"trimmed\": true})")
        return out
