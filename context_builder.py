"""Context aggregation: what a model receives, with token estimates and a trim plan.

`build_context` turns a list of `ContextItem`s (paths or globs, each with a view mode) plus
screenshots, discussion and a system prompt into one markdown bundle.  File views come from a
`file_cache.FileCache`.  When the total is over the model's context window, the bundle carries
a trim plan: what to drop or downgrade, in order, until it fits.

`files_within_budget` is the Tier 3 worker's use of it: a ticket's files fitted to a token
budget by applying the trim plan, with every file that was left out or trimmed named and
explained, for the worker's prompt and for the user.

`file_cache` re-exports every public name here, so `file_cache.build_context` keeps working.
"""
from __future__ import annotations

import logging
import mimetypes
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from file_cache import MODES, FileCache, ViewResult, has_views
from providers import catalog

if TYPE_CHECKING:
    from project import ProjectConfig

log = logging.getLogger(__name__)

IMAGE_TOKENS = 258  # what Gemini bills per image up to 384x384; used as a flat estimate
DEFAULT_CONTEXT_WINDOW = catalog.DEFAULT_CONTEXT_WINDOW
MODEL_CONTEXT_WINDOWS = catalog.context_windows()   # read-only {model: tokens} of the listed models
_FENCE_LANG = {".py": "python", ".pyi": "python", ".pyw": "python", ".md": "markdown",
               ".toml": "toml", ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".js": "javascript",
               ".ts": "typescript", ".rs": "rust", ".go": "go", ".c": "c", ".h": "c", ".cpp": "cpp",
               ".sh": "bash", ".html": "html", ".css": "css", ".sql": "sql", ".ini": "ini",
               ".tsx": "tsx", ".jsx": "jsx", ".mjs": "javascript", ".cjs": "javascript", ".mts": "typescript",
               ".cts": "typescript", ".java": "java", ".cs": "csharp", ".cc": "cpp", ".cxx": "cpp", ".hpp": "cpp",
               ".hh": "cpp", ".hxx": "cpp"}
_FENCE_BY_LANGUAGE = {"cpp": "cpp", "c": "c"}    # a `.h` file is fenced as what it turned out to be
_SKIP_DIRS = frozenset({"__pycache__", "node_modules"})
# MMA Desk's own folders at the project root: a glob matches in them only when it names them
# (`conductor/**/*.md`); `**/*` must not pull the app's track state into the context.
APP_DIRS = frozenset({"conductor"})
# ...and its own files at the root: the project file holds the discussion, which the context
# already carries.
APP_FILE_PREFIXES = ("mma_project.toml", ".mma_project.")
DISCUSSION_ROLES = ("user", "assistant", "system")
_BACKTICKS = re.compile("`{3,}")


def estimate_tokens(text: str) -> int:
    """Rough token count: ceil(chars / 4). An estimate for budgeting, not a tokenizer."""
    return (len(text) + 3) // 4


def context_window_for(model: str | None) -> int:
    """The model's context window from `providers.catalog` (by name prefix for unlisted models)."""
    return catalog.context_window(model)


@dataclass(frozen=True)
class ContextItem:
    path_or_glob: str
    mode: str = "full"


@dataclass(frozen=True)
class TokenEstimate:
    source: str  # "files" | "screenshots" | "history" | "system"
    label: str  # file path relative to root, screenshot path, "discussion[i] role", "system prompt"
    tokens: int
    mode: str = ""  # view mode, files only


@dataclass(frozen=True)
class TrimStep:
    action: str  # "drop_discussion" | "downgrade_to_skeleton" | "drop_file"
    label: str
    tokens_saved: int
    total_after: int


@dataclass(frozen=True)
class ContextError:
    source: str  # "files" | "screenshots" | "history"
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.message}"


@dataclass
class ContextBundle:
    markdown: str
    items: list[TokenEstimate]
    images: list[dict]  # {"mime_type", "data": bytes, "path"}
    discussion: list[dict]
    total_tokens: int
    by_source: dict[str, int]
    share: dict[str, float]  # fraction of total_tokens per source
    context_window: int
    over_budget: bool
    trim_plan: list[TrimStep] = field(default_factory=list)
    fits_after_trim: bool = True
    errors: list[ContextError] = field(default_factory=list)


@dataclass
class _FileSection:
    path: Path
    label: str
    mode: str
    text: str
    tokens: int
    explicit: bool


def _fence(body: str, lang: str) -> str:
    # A fence must be longer than any backtick run inside the body.
    longest = max((len(run) for run in _BACKTICKS.findall(body)), default=0)
    ticks = "`" * max(3, longest + 1)
    newline = "" if body.endswith("\n") else "\n"
    return f"{ticks}{lang}\n{body}{newline}{ticks}\n"


def _file_section(label: str, mode: str, view: ViewResult, suffix: str) -> str:
    note = ", best-effort: syntax errors" if view.has_errors else ""
    note += f"; {view.note}" if view.note else ""
    lang = "" if mode == "outline" else (_FENCE_BY_LANGUAGE.get(view.language) or _FENCE_LANG.get(suffix.lower(), ""))
    return f"### `{label}` ({mode}{note})\n\n{_fence(view.text, lang)}\n"


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _expand(item: ContextItem, root: Path, errors: list[ContextError]) -> list[tuple[Path, bool]]:
    """Files for one item as (resolved path, explicit?); problems go to `errors`."""
    spec = item.path_or_glob
    if not _is_glob(spec):
        path = (root / spec).resolve()
        if not path.is_relative_to(root):
            errors.append(ContextError("files", spec, "outside the project root"))
            return []
        return [(path, True)]
    pattern = spec
    if os.path.isabs(pattern):
        try:
            pattern = str(Path(pattern).relative_to(root))
        except ValueError:
            errors.append(ContextError("files", spec, "glob outside the project root"))
            return []
    found = []
    first = Path(pattern).parts[0] if Path(pattern).parts else ""
    for match in root.glob(pattern):
        rel_parts = match.relative_to(root).parts[:-1]
        if any(p.startswith(".") or p in _SKIP_DIRS for p in rel_parts) or not match.is_file():
            continue
        if rel_parts and rel_parts[0] in APP_DIRS and first != rel_parts[0]:
            continue
        if not rel_parts and match.name.startswith(APP_FILE_PREFIXES):
            continue
        resolved = match.resolve()
        if resolved.is_relative_to(root):
            found.append((resolved, False))
    if not found:
        errors.append(ContextError("files", spec, "glob matched no files"))
    return sorted(found)


def expand_item(item: ContextItem, root: Path, errors: list[ContextError]) -> list[tuple[Path, bool]]:
    """The files one item names, as `build_context` expands it: (resolved path, explicit?)."""
    return _expand(item, Path(root).resolve(), errors)


def _as_item(item: ContextItem | str | Sequence) -> ContextItem:
    if isinstance(item, ContextItem):
        return item
    if isinstance(item, str):
        return ContextItem(item)
    return ContextItem(*item)


def build_context(items: Iterable[ContextItem | str | Sequence], screenshots: Iterable[str] = (),
                  discussion: Iterable[dict] = (), system_prompt: str = "",
                  model_context_window: int | None = None, cache: FileCache | None = None, *,
                  root: str | os.PathLike = ".", model: str = "mock") -> ContextBundle:
    """Assemble what a model receives; never raises for a missing file, reports it in `errors`.

    A file named by several items appears once: an explicit path beats a glob match, otherwise
    the first item wins.  Glob matches skip hidden directories, `__pycache__`, `node_modules`
    and the app's own `conductor/` (unless the glob starts with it) and project files.
    """
    root_path = Path(root).resolve()
    cache = cache or FileCache()
    window = model_context_window or context_window_for(model)
    errors: list[ContextError] = []

    chosen: dict[Path, tuple[ContextItem, bool]] = {}
    for raw in items:
        item = _as_item(raw)
        if item.mode not in MODES:
            errors.append(ContextError("files", item.path_or_glob, f"unknown mode {item.mode!r}"))
            continue
        for path, explicit in _expand(item, root_path, errors):
            if path not in chosen or (explicit and not chosen[path][1]):
                chosen[path] = (item, explicit)

    sections: list[_FileSection] = []
    for path, (item, explicit) in chosen.items():
        label = path.relative_to(root_path).as_posix()
        try:
            view = cache.get_view(path, item.mode)
        except OSError as exc:
            reason = "file not found" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
            errors.append(ContextError("files", label, reason))
            continue
        text = _file_section(label, item.mode, view, path.suffix)
        sections.append(_FileSection(path, label, item.mode, text, estimate_tokens(text), explicit))

    images: list[dict[str, object]] = []
    for shot in screenshots:
        shot_path = Path(root_path, shot)
        try:
            data = shot_path.read_bytes()
        except OSError as exc:
            reason = "file not found" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
            errors.append(ContextError("screenshots", str(shot), reason))
            continue
        mime = mimetypes.guess_type(shot_path.name)[0] or "application/octet-stream"
        images.append({"mime_type": mime, "data": data, "path": str(shot_path)})

    entries, history = [], []
    for i, entry in enumerate(discussion):
        role, content = entry.get("role"), entry.get("content")
        if role not in DISCUSSION_ROLES or not isinstance(content, str):
            errors.append(ContextError("history", f"discussion[{i}]",
                                       "needs role user/assistant/system and string content"))
            continue
        ts = entry.get("ts", "")
        text = f"**{role}**{f' ({ts})' if ts else ''}:\n{content}\n\n"
        entries.append(dict(entry))
        history.append((f"discussion[{i}] {role}", text))

    parts = []
    if sections:
        parts.append("## Files\n\n" + "".join(s.text for s in sections))
    if images:
        parts.append("## Screenshots\n\n" + "".join(f"- `{img['path']}` (attached image)\n" for img in images) + "\n")
    if history:
        parts.append("## Discussion\n\n" + "".join(text for _, text in history))
    markdown = "".join(parts)

    estimates = [TokenEstimate("files", s.label, s.tokens, s.mode) for s in sections]
    estimates += [TokenEstimate("screenshots", str(img["path"]), IMAGE_TOKENS) for img in images]
    estimates += [TokenEstimate("history", label, estimate_tokens(text)) for label, text in history]
    if system_prompt:
        estimates.append(TokenEstimate("system", "system prompt", estimate_tokens(system_prompt)))
    by_source = {src: 0 for src in ("files", "screenshots", "history", "system")}
    for est in estimates:
        by_source[est.source] += est.tokens
    total = sum(by_source.values())
    share = {src: (n / total if total else 0.0) for src, n in by_source.items()}

    plan, fits = ([], True) if total <= window else _trim_plan(
        sections, [e for e in estimates if e.source == "history"], total, window, cache)
    return ContextBundle(markdown, estimates, images, entries, total, by_source, share, window,
                         total > window, plan, fits, errors)


def project_context(cfg: ProjectConfig, cache: FileCache | None = None) -> ContextBundle:
    """The curated context of a project file as the app sends it to every tier: its files in
    their view modes, its screenshots and its active discussion.  `mma-desk run` / `resume`
    send exactly this, so a track planned headless gets the input one planned in the app gets."""
    discussion = [{"role": e.role, "content": e.content, "ts": e.ts} for e in cfg.discussion()]
    return build_context([ContextItem(f.path, f.mode) for f in cfg.files], cfg.screenshots, discussion,
                         model_context_window=cfg.budgets.max_context_tokens, cache=cache, root=cfg.root)


def _trim_plan(sections: list[_FileSection], history: list[TokenEstimate], total: int,
               window: int, cache: FileCache) -> tuple[list[TrimStep], bool]:
    """Trim order: oldest discussion entries (the newest one stays), then full files of a
    language with views downgraded to skeleton (biggest saving first), then the largest files dropped."""
    plan: list[TrimStep] = []

    def step(action: str, label: str, saved: int) -> bool:
        nonlocal total
        total -= saved
        plan.append(TrimStep(action, label, saved, total))
        return total <= window

    for est in history[:-1]:
        if step("drop_discussion", est.label, est.tokens):
            return plan, True

    sizes = {s.label: s.tokens for s in sections}
    downgrades = []
    for s in sections:
        if s.mode != "full" or not has_views(s.path):
            continue
        try:
            skeleton = _file_section(s.label, "skeleton", cache.get_view(s.path, "skeleton"), s.path.suffix)
        except OSError as exc:
            log.warning("cannot compute skeleton of %s for the trim plan: %s", s.label, exc)
            continue
        saved = s.tokens - estimate_tokens(skeleton)
        if saved > 0:
            downgrades.append((saved, s.label))
    for saved, label in sorted(downgrades, key=lambda d: -d[0]):
        sizes[label] -= saved
        if step("downgrade_to_skeleton", label, saved):
            return plan, True

    for label, tokens in sorted(sizes.items(), key=lambda kv: -kv[1]):
        if step("drop_file", label, tokens):
            return plan, True
    return plan, False


@dataclass(frozen=True)
class FilesWithinBudget:
    """A ticket's files as a model gets them, and what did not make it in whole."""
    markdown: str                                  # the files, then a note naming what is missing
    left_out: tuple[ContextError, ...] = ()        # missing, outside the root, no glob match, over budget
    trimmed: tuple[str, ...] = ()                  # files shown as a skeleton to fit the budget
    files: tuple[tuple[str, int], ...] = ()        # (path, tokens) of each file included


def files_within_budget(paths: Iterable[str], root: str | os.PathLike, budget_tokens: int,
                        cache: FileCache | None = None) -> FilesWithinBudget:
    """`paths` (files or globs) in full view, trimmed to `budget_tokens` by the trim plan
    (Python files to skeletons first, then the largest files dropped)."""
    cache = cache or FileCache()
    bundle = build_context([ContextItem(p, "full") for p in paths], root=root,
                           model_context_window=budget_tokens, cache=cache)
    left_out = list(bundle.errors)
    trimmed: list[str] = []
    if bundle.over_budget:
        tokens = {e.label: e.tokens for e in bundle.items if e.source == "files"}
        dropped = {step.label for step in bundle.trim_plan if step.action == "drop_file"}
        trimmed = [step.label for step in bundle.trim_plan
                   if step.action == "downgrade_to_skeleton" and step.label not in dropped]
        left_out += [ContextError("files", label, f"over the context budget ({tokens[label]} tokens; "
                                                  f"{budget_tokens} for all of a ticket's files)")
                     for label in tokens if label in dropped]
        kept = [ContextItem(e.label, "skeleton" if e.label in trimmed else e.mode)
                for e in bundle.items if e.source == "files" and e.label not in dropped]
        bundle = build_context(kept, root=root, model_context_window=budget_tokens, cache=cache)
        left_out += bundle.errors                  # a file that vanished in between
    note = [f"- `{e.path}`: {e.message}; not included" for e in left_out]
    note += [f"- `{label}`: shown as a skeleton to fit the context budget; read it for the rest"
             for label in trimmed]
    parts = [bundle.markdown] if bundle.markdown else []
    if note:
        parts.append("## Context files not included as asked\n\n" + "\n".join(note) + "\n")
    included = tuple((e.label, e.tokens) for e in bundle.items if e.source == "files")
    return FilesWithinBudget("\n".join(parts), tuple(left_out), tuple(trimmed), included)
