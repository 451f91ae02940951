"""The project's files as a tree for the file picker: listed once, filtered, no imgui.

`FileTree(root)` walks the project on first use (and on `rescan()`), skipping what
context globs skip (hidden folders, `__pycache__`, `node_modules`, the app's own
`conductor/`), and keeps `{folder: (subfolders, files)}` with posix paths relative to
the root.  `matches(text)` is the filter: files whose path contains every word.  The
picker (gui/panel_file_picker.py) draws folders lazily, so a 3,430-file project costs
only the open folders per frame.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from context_builder import _SKIP_DIRS, APP_DIRS

log = logging.getLogger(__name__)

MAX_FILES = 50_000            # a picker over more files than this lists only the first ones
MAX_MATCHES = 500


@dataclass
class FileTree:
    root: Path
    folders: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)   # "" = root
    all_files: list[str] = field(default_factory=list)
    truncated: bool = False
    scanned_at: float = 0.0
    scan_ms: float = 0.0

    def ensure(self) -> None:
        if not self.scanned_at:
            self.rescan()

    def rescan(self) -> None:
        start = time.perf_counter()
        folders: dict[str, tuple[list[str], list[str]]] = {}
        files: list[str] = []
        self.truncated = False
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            rel = "" if rel == "." else rel
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS
                                 and not (rel == "" and d in APP_DIRS))
            names = sorted(f for f in filenames if not (rel == "" and f.startswith(("mma_project.toml",
                                                                                     ".mma_project."))))
            paths = [f"{rel}/{n}" if rel else n for n in names]
            folders[rel] = ([f"{rel}/{d}" if rel else d for d in dirnames], paths)
            files.extend(paths)
            if len(files) >= MAX_FILES:
                self.truncated = True
                log.warning("the file picker lists only the first %d files of %s", MAX_FILES, self.root)
                break
        self.folders, self.all_files = folders, files
        self.scanned_at = time.time()
        self.scan_ms = (time.perf_counter() - start) * 1000

    def children(self, folder: str) -> tuple[list[str], list[str]]:
        return self.folders.get(folder, ([], []))

    def matches(self, text: str, limit: int = MAX_MATCHES) -> list[str]:
        words = text.lower().split()
        out = []
        for path in self.all_files:
            low = path.lower()
            if all(w in low for w in words):
                out.append(path)
                if len(out) >= limit:
                    break
        return out
