"""The context items of the panels: files (with view modes), screenshots, token estimates.

`FileItems` is a mixin of `gui.context_state.ContextState`; what it uses of
its host (`config`, `project_dir`, `cache`, `current_model`, `ai_input`,
`session`, `add_error()`, `discussion_dicts()`, ...) is declared at the top of
the class, so mypy checks both sides.  It keeps the file list and its per-row
token estimates, rebuilds the context bundle only when something that goes
into it changed, and watches the listed files on disk about once a second.

Recomputing is never per frame: `mark_changed()` flags a rebuild, `refresh()`
(called by `poll()`) does it once; typing in a discussion entry rebuilds after
the text settles (`TYPING_SETTLE_S`).
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import file_cache
from file_cache import ContextBundle, ContextItem, TrimStep, build_context, context_window_for
from gui.chat import CHAT_SYSTEM_PROMPT
from gui.context_build import (
    BuildInputs,
    BuildResult,
    ContextBuilder,
    Preview,
    RowEstimate,
    build_with_window,
    compute,
    disk_signature,
)
from gui.context_build import preview as context_build_preview
from project import FILE_MODES, FileEntry

if TYPE_CHECKING:
    import ai_client
    from project import ProjectConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
SOURCES = ("files", "screenshots", "history", "system")
TYPING_SETTLE_S = 0.3


FileRow = RowEstimate        # one `[[files]]` entry as the Project panel shows it


def _is_glob(text: str) -> bool:
    return file_cache._is_glob(text)   # the one definition of "glob" for context items


class FileItems:
    """Files, screenshots and the context bundle built from them (mixin of ContextState)."""
    # ---------------------------------------------------------------- provided by the host (ContextState)
    config: ProjectConfig
    project_dir: Path
    cache: file_cache.FileCache
    current_model: str
    ai_input: str
    disk_check_interval: float
    session: ai_client.Session

    background_builds: bool
    busy: bool

    if TYPE_CHECKING:
        def add_error(self, source: str, message: str, hint: str = "") -> None: ...

        def note_unsaved(self) -> None: ...

        def discussion_dicts(self) -> list[dict]: ...

    def _reset_items(self) -> None:
        """Fresh per-project bookkeeping (a (re)load)."""
        for waiter in getattr(self, "_markdown_waiters", []):
            waiter.cancel()             # a plan waiting for the old project's context stops
        self.bundle: ContextBundle | None = None
        self.file_rows: list[FileRow] = []
        self.generation = 0            # bumps on every rebuild of the bundle
        self.last_refresh_ms = 0.0
        self.refresh_count = 0
        self.disk_rebuilds = 0
        self._dirty = True
        self._settle_until = 0.0       # typing in an entry: rebuild once the text settles
        self._disk_sig: tuple = ()
        self._next_disk_check = 0.0
        self._trim_preview: tuple[int, list[TrimStep]] | None = None
        self._change_version = 0       # bumps on every change that goes into the context
        self._build_future: concurrent.futures.Future[BuildResult] | None = None
        self._disk_future: concurrent.futures.Future[tuple] | None = None
        self.build_progress: tuple[int, int] | None = None   # (files done, total) while building
        self.previews: dict[tuple[str, str], Preview | None] = {}   # None: being computed
        self._preview_futures: dict[tuple[str, str], concurrent.futures.Future[Preview]] = {}
        self._markdown_waiters: list[concurrent.futures.Future[str]] = []
        self._trim_preview_future: tuple[int, concurrent.futures.Future[ContextBundle]] | None = None

    # ------------------------------------------------------------------ files and screenshots
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

    def _entry_index(self, index_or_path: int | str) -> int | None:
        """The position of a `[[files]]` entry given by index or path; None (and an error) if none."""
        index = index_or_path if isinstance(index_or_path, int) else self.file_index(index_or_path)
        if 0 <= index < len(self.config.files):
            return index
        self.add_error("files", f"no file entry {index_or_path!r}")
        return None

    def remove_file(self, index_or_path: int | str) -> bool:
        index = self._entry_index(index_or_path)
        if index is None:
            return False
        del self.config.files[index]
        self.mark_files_changed()
        return True

    def set_file_mode(self, index_or_path: int | str, mode: str) -> bool:
        index = self._entry_index(index_or_path)
        if index is None:
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


    # ------------------------------------------------------------------ context bundle
    def mark_changed(self, settle: float = 0.0) -> None:
        """Something that goes into the context changed: rebuild the bundle at the next poll
        (or, with `settle`, at the first poll after `settle` seconds without further change)."""
        self._dirty = True
        self._change_version += 1
        self._settle_until = time.monotonic() + settle if settle > 0 else 0.0
        self.note_unsaved()

    def mark_files_changed(self) -> None:
        self.mark_changed()

    @property
    def context_limit(self) -> int:
        """Tokens the context may use: the model's window, capped by the project budget."""
        return min(context_window_for(self.current_model), self.config.budgets.max_context_tokens)

    @property
    def building(self) -> bool:
        """A background build is running (the panels show `build_progress`)."""
        return self._build_future is not None

    @property
    def context_stale(self) -> bool:
        """The bundle does not reflect the latest change yet (a build is due or running)."""
        return self._dirty or self.bundle is None or self.building

    def _inputs(self) -> BuildInputs:
        return BuildInputs(self.project_dir, tuple((f.path, f.mode) for f in self.config.files),
                           tuple(self.config.screenshots), tuple(dict(d) for d in self.discussion_dicts()),
                           CHAT_SYSTEM_PROMPT, self.current_model, self.context_limit, self._change_version)

    def _build(self, window: int | None = None) -> ContextBundle:
        return build_context([ContextItem(f.path, f.mode) for f in self.config.files],
                             self.config.screenshots, self.discussion_dicts(), CHAT_SYSTEM_PROMPT,
                             window or self.context_limit, self.cache, root=self.project_dir,
                             model=self.current_model)

    def _apply_build(self, result: BuildResult) -> None:
        self.file_rows = result.rows
        self.previews.clear()            # files may have changed on disk: previews are re-measured
        self.bundle = result.bundle
        for err in result.bundle.errors:
            if err.source != "files":     # file problems show on their rows
                log.info("context: %s", err)
        self._trim_preview = None
        self.generation += 1
        self.refresh_count += 1
        if result.inputs.version == self._change_version:
            self._dirty = False
        self._disk_sig = result.disk_sig
        self._next_disk_check = time.monotonic() + self.disk_check_interval
        self.last_refresh_ms = result.elapsed_ms
        if not self._dirty:
            waiters, self._markdown_waiters = self._markdown_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(result.bundle.markdown)

    def markdown_when_ready(self) -> concurrent.futures.Future[str]:
        """The context markdown once it reflects every change so far: done at once when the
        bundle is fresh, else resolved by the `poll()` that applies the build (background mode).
        Plan Epic and Resume await it on the engine loop instead of blocking a frame."""
        fut: concurrent.futures.Future[str] = concurrent.futures.Future()
        if not self.background_builds:
            self.refresh()
        if not self.context_stale and self.bundle is not None:
            fut.set_result(self.bundle.markdown)
        else:
            self._markdown_waiters.append(fut)
        return fut

    def refresh(self, force: bool = False) -> bool:
        """Rebuild token estimates now if anything changed; returns whether it rebuilt.

        Waits for a background build in flight (so two builds never race); scripts, tests and
        Send use it.  The app's frames use `poll()`, which never waits."""
        if self._build_future is not None:
            self._collect_build(wait=True)
        if not (force or self._dirty or self.bundle is None):
            return False
        if not force and self.bundle is not None and time.monotonic() < self._settle_until:
            return False
        self._apply_build(compute(self._inputs(), self.cache))
        return True

    def _collect_build(self, wait: bool = False) -> bool:
        """Apply a finished background build (GUI thread); returns whether one was applied."""
        fut = self._build_future
        if fut is None or not (wait or fut.done()):
            return False
        self._build_future = None
        self.build_progress = None
        try:
            result = fut.result()
        except Exception as exc:          # a bug in a build must show, and the next change retries
            log.exception("building the context failed")
            self.add_error("files", f"measuring the context failed: {type(exc).__name__}: {exc}",
                           "see the log for the traceback")
            self._dirty = False
            return False
        self._apply_build(result)
        return True

    def poll_builds(self) -> None:
        """Per frame in background mode: collect results, start the next build or disk check."""
        if self._build_future is not None:
            latest = self._builder().latest_progress()
            if latest is not None:
                self.build_progress = latest
            self._collect_build()
        if self._disk_future is not None and self._disk_future.done():
            fut, self._disk_future = self._disk_future, None
            try:
                sig = fut.result()
            except OSError as exc:
                log.warning("checking the context files on disk failed: %s", exc)
            else:
                if sig != self._disk_sig and not self._dirty and self._build_future is None:
                    self.disk_rebuilds += 1
                    self._dirty = True
        for key, pf in list(self._preview_futures.items()):
            if pf.done():
                del self._preview_futures[key]
                self.previews[key] = pf.result()
        if self._build_future is not None:
            return
        now = time.monotonic()
        if self._dirty or self.bundle is None:
            if now >= self._settle_until:
                self._build_future = self._builder().build(self._inputs(), self.cache)
                self.build_progress = (0, 0)
        elif not self.busy and self._disk_future is None and now >= self._next_disk_check:
            self._next_disk_check = now + self.disk_check_interval
            self._disk_future = self._builder().submit(disk_signature, self._inputs())

    def _builder(self) -> ContextBuilder:
        builder = getattr(self, "_context_builder", None)
        if builder is None:
            builder = self._context_builder = ContextBuilder()
        return builder

    def cancel_markdown_waiters(self) -> None:
        """Nobody will collect a build any more (the app is closing): plans waiting stop."""
        for waiter in self._markdown_waiters:
            waiter.cancel()
        self._markdown_waiters = []

    def close_builder(self) -> None:
        self.cancel_markdown_waiters()
        builder = getattr(self, "_context_builder", None)
        if builder is not None:
            builder.close()

    def request_preview(self, path: str, mode: str) -> Preview | None:
        """A file in a view mode with its token count; computed off the GUI thread in background
        mode (None until ready, then cached until the file list or the file changes)."""
        key = (path, mode)
        if key in self.previews:
            return self.previews[key]
        if not self.background_builds:
            self.previews[key] = context_build_preview(self.project_dir, path, mode, self.cache)
            return self.previews[key]
        if key not in self._preview_futures:
            self.previews[key] = None
            self._preview_futures[key] = self._builder().submit(
                context_build_preview, self.project_dir, path, mode, self.cache)
        return None

    def _disk_signature(self) -> tuple:
        return disk_signature(self._inputs())

    def check_disk(self) -> bool:
        """Rebuild if a context file changed, appeared or vanished; returns whether it did."""
        if self._disk_signature() == self._disk_sig:
            return False
        self.disk_rebuilds += 1
        self.previews.clear()
        self.mark_files_changed()
        return self.refresh()

    def trim_preview(self, limit: int = 6) -> list[TrimStep]:
        """What trimming would drop first.  When over budget this is the real plan; otherwise
        the plan `build_context` would make if the window were tiny (computed once per rebuild;
        in background mode on the builder thread, so the panel shows nothing until it is ready)."""
        if not self.background_builds:
            self.refresh()
        if self.bundle is None:
            return []
        if self.bundle.over_budget:
            return self.bundle.trim_plan[:limit]
        if self._trim_preview is None or self._trim_preview[0] != self.generation:
            if not self.background_builds:
                self._trim_preview = (self.generation, self._build(window=1).trim_plan)
            else:
                fut = self._trim_preview_future
                if fut is None or fut[0] != self.generation:
                    self._trim_preview_future = (self.generation, self._builder().submit(
                        build_with_window, self._inputs(), self.cache, 1))
                    return []
                if not fut[1].done():
                    return []
                self._trim_preview = (self.generation, fut[1].result().trim_plan)
        return self._trim_preview[1][:limit]

    def budget(self) -> dict:
        """Numbers for the budget panel and the hook API (in background mode: of the last
        finished build, never waiting; `building` / `build_progress` say one is running)."""
        if not self.background_builds:
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
            "building": self.building,
            "build_progress": self.build_progress,
            "stale": self.context_stale,
        }
