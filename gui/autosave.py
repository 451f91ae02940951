"""Hot exit for the project file: `Autosave`, the bookkeeping behind `ContextState.save(auto=True)`.

What the user curates (files, screenshots, discussions, the epic, tier models) is written to
`mma_project.toml` by itself, like an editor's hot exit:

- every change calls `note_change()`; once nothing changed for `delay_s` (debounce),
  `due()` says so and the state saves through `project.save_project` (atomic, the same
  path as *Save project*);
- a failed autosave (a broken or externally edited file, a read-only folder) is reported
  once and retried only after `RETRY_S` or the next change, never every frame;
- the app flushes on every way out (File > Quit, the window's close button, the hook API's
  quit, SIGTERM/SIGINT): `App.shutdown()` calls `ContextState.flush()`; when even that
  fails, `recovery_path()` names where the unsaved project goes instead, so nothing is lost.

`disk_bytes` is the file as this session last read or wrote it: an autosave that finds
different bytes on disk (someone edited the file meanwhile) does not overwrite them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DELAY_S = 1.0
RETRY_S = 10.0
RECOVERY_DIR = ".mma_desk/unsaved"


@dataclass
class Autosave:
    enabled: bool = False
    delay_s: float = DEFAULT_DELAY_S
    unsaved: bool = False
    last_change: float = 0.0               # time.monotonic() of the newest unsaved change
    last_saved_at: float | None = None     # time.time() of the last successful write
    error: str = ""                        # why the last autosave failed ("" = it did not)
    retry_at: float = 0.0
    disk_bytes: bytes | None = None        # the project file as last read or written here
    saves: int = 0                         # successful autosaves (tests and the status line)

    def note_change(self, now: float | None = None) -> None:
        self.unsaved = True
        self.last_change = time.monotonic() if now is None else now
        self.retry_at = 0.0

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return (self.enabled and self.unsaved and now - self.last_change >= self.delay_s
                and now >= self.retry_at)

    def saved(self, data: bytes | None) -> None:
        self.unsaved = False
        self.error = ""
        self.last_saved_at = time.time()
        self.disk_bytes = data

    def failed(self, reason: str, now: float | None = None) -> bool:
        """Record a failure; returns whether it is new (worth an error message)."""
        new = reason != self.error
        self.error = reason
        self.retry_at = (time.monotonic() if now is None else now) + RETRY_S
        return new

    def status(self) -> str:
        """One line for the Project panel and the status bar."""
        if self.error:
            return f"not saved: {self.error}"
        if self.unsaved:
            return "unsaved changes" + (" (saving…)" if self.enabled else "")
        if self.last_saved_at is not None:
            return "saved " + time.strftime("%H:%M:%S", time.localtime(self.last_saved_at))
        return "no changes"


def recovery_path(project_dir: Path) -> Path:
    """Where the unsaved project is written when the project file itself cannot be."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return project_dir / RECOVERY_DIR / f"mma_project-{stamp}.toml"
