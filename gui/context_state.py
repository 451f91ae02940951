"""GUI-free state behind the context panels (project, discussion, budget, comms).

`ContextState` owns what the developer curates for the chat: the loaded
`ProjectConfig` (files with view modes, screenshots, discussions), the message
box, the provider/model pickers and one chat `ai_client.Session`.  It has no
imgui import, so every behaviour is unit-testable without a window.  Pieces:

- `gui/file_items.py`  `FileItems` (mixin): files, modes, screenshots, token
  estimates, the context bundle and the budget;
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
from file_cache import FileCache
from gui.chat import ChatWorker
from gui.file_items import TYPING_SETTLE_S, FileItems
from gui.mma_display import CHAT_USAGE
from headless import SESSION_LOG_DIR
from models import TierUsage
from project import PROJECT_FILE, PROVIDERS, DiscussionEntry, ProjectFileError, load_project_or_last_good, save_project
from providers import catalog
from providers.credentials import redact

log = logging.getLogger(__name__)

MAX_ERRORS = 50
HOOK_FIELDS = ("ai_input", "current_provider", "current_model")
HOOK_ITEMS = ("btn_send", "btn_save_project", "btn_add_file", "btn_remove_file", "btn_stop",
              "btn_new_discussion")


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


class ContextState(FileItems):
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
        self.project_error = str(err) if err else ""
        if err:
            self.add_error("project", str(err))
        self.current_provider = self._initial_provider()
        self.current_model = self._initial_model()
        self._bind_session()
        self.editing.clear()
        self.inputs.open_path = str(self.project_dir)
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

    # ------------------------------------------------------------------ sending
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
        assert bundle is not None, "refresh() always leaves a bundle"
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
        self.chat.start(request_id, bundle.markdown, text, images, str(self.project_dir), self.tool_approver)
        return True

    def cancel(self) -> bool:
        if not self.busy:
            return False
        self.chat.cancel()
        return True

    def poll(self, max_events: int = 10_000) -> int:
        """Per frame, on the GUI thread: apply worker results, rebuild lazily, watch the disk."""
        handled = 0
        for kind, request_id, data in self.chat.drain(max_events):
            handled += 1
            if kind == "usage":            # billed, whichever request it was (even a cancelled one)
                self.chat_usage.add(CHAT_USAGE, data["input_tokens"], data["output_tokens"], data["model"],
                                    cache=data.get("cache"))
                self.chat_usage_version += 1
                continue
            request = self._request
            if request is None or request_id != request["id"]:
                log.debug("dropping %s for finished request %s", kind, request_id)
                continue
            if kind == "chunk":
                self.stream_text += data
                self.stream_chunks += 1
            elif kind == "done":
                self._finish(request, data["text"], error=None)
                self.last_usage = {"input_tokens": data["input_tokens"],
                                   "output_tokens": data["output_tokens"]}
            elif kind == "error":
                partial = data["partial"] or self.stream_text
                self.add_error("send", data["message"], data["hint"])
                self._finish(request, partial, error=data["message"])
            else:
                log.error("unknown chat event %r", kind)
        if self._dirty:
            self.refresh()
        elif not self.busy and time.monotonic() >= self._next_disk_check:
            self._next_disk_check = time.monotonic() + self.disk_check_interval
            self.check_disk()
        return handled

    def _finish(self, request: dict[str, Any], text: str, error: str | None) -> None:
        self._request = None
        self.busy = False
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
        self.chat.close()

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
