"""Measuring the curated context off the GUI thread: inputs in, bundle and per-row estimates out.

A glob such as `**/*` over a project of 3,430 files takes seconds to read and parse.  The
context panels must keep drawing meanwhile, so `ContextState` (in background mode, as the
app runs it) hands a frozen `BuildInputs` to `ContextBuilder`, whose one worker thread runs
`compute()` and reports progress; the result comes back through a
`concurrent.futures.Future` that `poll()` picks up on the GUI thread.  Nothing here
touches GUI state; everything is a pure function of its inputs and the (thread-safe)
`FileCache`.

- `compute(inputs, cache, progress)`: expand every `[[files]]` entry (noting which files
  an earlier entry already matched: overlaps), read each file's view (progress per file),
  the per-row estimates and the bundle, and the disk signature `poll()` compares later.
- `disk_signature(inputs)`: (path, mtime, size) of every listed file, glob and screenshot.
- `trimmed_items(bundle, steps)`: the explicit file list and discussion a trim plan leaves.
- `preview(path, mode, cache)`: one file in one view mode, with its token estimate.
"""
from __future__ import annotations

import concurrent.futures
import gc
import logging
import queue
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import context_builder
from context_builder import ContextBundle, ContextItem, TrimStep, build_context, estimate_tokens
from file_cache import FileCache

log = logging.getLogger(__name__)

PROGRESS_EVERY = 25            # files between two progress reports
MAX_LISTED_MATCHES = 500       # a glob row lists at most this many of its matches
T = TypeVar("T")


@dataclass(frozen=True)
class BuildInputs:
    """Everything a build depends on, copied on the GUI thread (the builder never reads live state)."""
    root: Path
    files: tuple[tuple[str, str], ...]          # (path or glob, mode) per [[files]] entry
    screenshots: tuple[str, ...]
    discussion: tuple[dict, ...]
    system_prompt: str
    model: str
    limit: int
    version: int = 0                            # ContextState's change counter when copied


@dataclass
class RowEstimate:
    """One `[[files]]` entry as measured: tokens over its files, what it matched, overlaps."""
    path: str
    mode: str
    tokens: int = 0
    n_files: int = 0
    errors: list[str] = field(default_factory=list)
    matches: list[str] = field(default_factory=list)   # relative paths (at most MAX_LISTED_MATCHES)
    overlaps: int = 0                                   # of its files, how many an earlier entry has


@dataclass
class BuildResult:
    inputs: BuildInputs
    bundle: ContextBundle
    rows: list[RowEstimate]
    disk_sig: tuple
    elapsed_ms: float


def expand_entries(inputs: BuildInputs) -> list[tuple[list[Path], list[str]]]:
    """Per entry: the files it names (resolved) and its problems."""
    out = []
    for path, mode in inputs.files:
        errors: list[context_builder.ContextError] = []
        found = context_builder.expand_item(ContextItem(path, mode), inputs.root, errors)
        out.append(([p for p, _explicit in found], [e.message for e in errors]))
    return out


def _signature(paths: list[Path]) -> tuple:
    sig: list[tuple[str, int | None, int | None]] = []
    for p in paths:
        try:
            st = p.stat()
            sig.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            sig.append((str(p), None, None))
    return tuple(sig)


def disk_signature(inputs: BuildInputs, expanded: list[tuple[list[Path], list[str]]] | None = None) -> tuple:
    """What `poll()` compares once a second: a changed, new or vanished file means a rebuild."""
    expanded = expand_entries(inputs) if expanded is None else expanded
    paths = [p for found, _errors in expanded for p in found]
    for (spec, _mode), (found, _errors) in zip(inputs.files, expanded, strict=True):
        if not found and not context_builder._is_glob(spec):
            paths.append(inputs.root / spec)            # a missing file shows up when it appears
    paths.extend(inputs.root / s for s in inputs.screenshots)
    return _signature(paths)


def compute(inputs: BuildInputs, cache: FileCache,
            progress: Callable[[int, int], None] | None = None) -> BuildResult:
    """The bundle and the per-row estimates for `inputs` (any thread)."""
    start = time.perf_counter()
    expanded = expand_entries(inputs)
    total = sum(len(found) for found, _errors in expanded)
    done = 0
    if progress is not None:
        progress(0, total)
    for (_spec, mode), (found, _errors) in zip(inputs.files, expanded, strict=True):
        for path in found:                 # read and parse once; the builds below hit the cache
            try:
                cache.get_view(path, mode)
            except (OSError, ValueError) as exc:
                log.debug("view of %s: %s", path, exc)
            done += 1
            if progress is not None and done % PROGRESS_EVERY == 0:
                progress(done, total)
    seen: set[Path] = set()
    rows = []
    for (spec, mode), (found, errors) in zip(inputs.files, expanded, strict=True):
        one = build_context([ContextItem(spec, mode)], root=inputs.root, cache=cache, model=inputs.model)
        files = [e for e in one.items if e.source == "files"]
        rel = [p.relative_to(inputs.root).as_posix() if p.is_relative_to(inputs.root) else str(p) for p in found]
        overlaps = sum(1 for p in found if p in seen)
        seen.update(found)
        rows.append(RowEstimate(spec, mode, sum(e.tokens for e in files), len(files),
                                [e.message for e in one.errors] or errors, rel[:MAX_LISTED_MATCHES], overlaps))
    bundle = build_context([ContextItem(p, m) for p, m in inputs.files], inputs.screenshots,
                           list(inputs.discussion), inputs.system_prompt, inputs.limit, cache,
                           root=inputs.root, model=inputs.model)
    if progress is not None:
        progress(total, total)
    return BuildResult(inputs, bundle, rows, disk_signature(inputs, expanded),
                       (time.perf_counter() - start) * 1000)


def build_with_window(inputs: BuildInputs, cache: FileCache, window: int) -> ContextBundle:
    """The bundle of `inputs` for another window (the trim preview asks for a 1-token one)."""
    return build_context([ContextItem(p, m) for p, m in inputs.files], inputs.screenshots,
                         list(inputs.discussion), inputs.system_prompt, window, cache,
                         root=inputs.root, model=inputs.model)


_DISCUSSION_LABEL = re.compile(r"discussion\[(\d+)\]")


def trimmed_items(bundle: ContextBundle, steps: list[TrimStep],
                  discussion: list[dict]) -> tuple[list[ContextItem], list[dict]]:
    """The explicit file list (each file once, in its mode) and the discussion that are left
    after applying `steps` (a trim plan) to `bundle`."""
    modes = {e.label: e.mode for e in bundle.items if e.source == "files"}
    dropped_entries: set[int] = set()
    for step in steps:
        if step.action == "drop_file":
            modes.pop(step.label, None)
        elif step.action == "downgrade_to_skeleton" and step.label in modes:
            modes[step.label] = "skeleton"
        elif step.action == "drop_discussion":
            m = _DISCUSSION_LABEL.match(step.label)
            if m:
                dropped_entries.add(int(m.group(1)))
    kept = [d for i, d in enumerate(discussion) if i not in dropped_entries]
    return [ContextItem(label, mode) for label, mode in modes.items()], kept


@dataclass
class Preview:
    path: str
    mode: str
    text: str
    tokens: int
    error: str = ""


def preview(root: Path, path: str, mode: str, cache: FileCache) -> Preview:
    """One file of the project in one view mode, as the model would see it, with its tokens."""
    full = (root / path).resolve()
    if not full.is_relative_to(root):
        return Preview(path, mode, "", 0, "outside the project root")
    try:
        view = cache.get_view(full, mode)
    except (OSError, ValueError) as exc:
        return Preview(path, mode, "", 0, str(exc))
    section = context_builder._file_section(path, mode, view, full.suffix)
    return Preview(path, mode, view.text, estimate_tokens(section))


def _without_gc_pauses(fn: Callable[..., T], *args: object) -> T:
    """Run a build with the cyclic collector paused, then freeze what survived (see
    `ContextBuilder`).  A collector the caller had disabled stays disabled."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return fn(*args)
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


class ContextBuilder:
    """One worker thread for context builds, disk checks and previews (in submission order).

    Progress goes through a `queue.SimpleQueue` of `(done, total)` that the GUI thread drains.

    The builder is CPU-bound Python, so it competes with the GUI thread for the GIL.  The
    render loop re-enters Python for every callback and window of a frame, and each entry
    waits up to the interpreter's switch interval (5 ms by default) for the builder to let
    go: ~15 entries made frames 100-340 ms slower while a large glob was measured.  From
    its first job until `close()` the switch interval is `SWITCH_INTERVAL_S`, which keeps
    frames near their usual time at a small cost in build speed.

    The other stall was the cyclic garbage collector: a build fills the `FileCache` with
    ~100k long-lived objects per 3,000 files, and each full collection (on whichever thread
    allocates) then scanned them all with the GIL held, 250-290 ms.  A build therefore runs
    with the collector paused and ends with `gc.freeze()`: what it made lives on in the
    cache (refcounting still frees what is dropped), so full collections skip it.
    """
    SWITCH_INTERVAL_S = 0.0005

    def __init__(self) -> None:
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.progress: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._saved_interval: float | None = None

    def submit(self, fn: Callable[..., T], *args: object) -> concurrent.futures.Future[T]:
        """Run `fn(*args)` on the builder thread (GUI thread call)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="context-build")
            self._saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.SWITCH_INTERVAL_S)
        return self._executor.submit(fn, *args)

    def build(self, inputs: BuildInputs, cache: FileCache) -> concurrent.futures.Future[BuildResult]:
        return self.submit(_without_gc_pauses, compute, inputs, cache,
                           lambda done, total: self.progress.put((done, total)))

    def latest_progress(self) -> tuple[int, int] | None:
        latest = None
        while True:
            try:
                latest = self.progress.get_nowait()
            except queue.Empty:
                return latest

    def close(self) -> None:
        if self._saved_interval is not None:
            sys.setswitchinterval(self._saved_interval)
            self._saved_interval = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
