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

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import file_cache
from file_cache import ContextBundle, ContextItem, TrimStep, build_context, context_window_for
from gui.chat import CHAT_SYSTEM_PROMPT
from project import FILE_MODES, FileEntry

if TYPE_CHECKING:
    import ai_client
    from project import ProjectConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
SOURCES = ("files", "screenshots", "history", "system")
TYPING_SETTLE_S = 0.3


@dataclass
class FileRow:
    """One `[[files]]` entry of the project as the project panel shows it."""
    path: str
    mode: str
    tokens: int = 0          # sum over the files it names (a glob may name many)
    n_files: int = 0
    errors: list[str] = field(default_factory=list)


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

    if TYPE_CHECKING:
        def add_error(self, source: str, message: str, hint: str = "") -> None: ...

        def discussion_dicts(self) -> list[dict]: ...

    def _reset_items(self) -> None:
        """Fresh per-project bookkeeping (a (re)load)."""
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
        self._settle_until = time.monotonic() + settle if settle > 0 else 0.0

    def mark_files_changed(self) -> None:
        self.mark_changed()
        self._rows_dirty = True

    @property
    def context_limit(self) -> int:
        """Tokens the context may use: the model's window, capped by the project budget."""
        return min(context_window_for(self.current_model), self.config.budgets.max_context_tokens)

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
        sig: list[tuple[str, int | None, int | None]] = []     # (path, mtime_ns, size); None: missing
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
