"""A compact map of the whole project for Tier 2: files with their top-level symbols, ranked,
cut to a token budget (the idea of aider's repo map, with the views `file_cache` already has).

Tier 2 writes each ticket's `context_requirements`; with the map in its prompt it names files
that exist.  `build_repo_map(root, budget_tokens)`:

1. lists the project's files: `git ls-files --cached --others --exclude-standard` in a git
   work tree (so .gitignore counts), else a walk that skips hidden folders, `node_modules`,
   `__pycache__`, virtual environments and build output; at most `MAX_FILES`;
2. takes the top-level symbols of every file with views (Python and the brace languages)
   from `FileCache`'s outline (cached by path, mtime and size like every view);
3. ranks files by how many other files use one of their symbols' names (a file's in-degree
   in the reference graph); files named in the track text (path or stem) come first;
4. writes `path` lines with indented `kind name` lines, best first, while the estimate
   (`estimate_tokens`, chars / 4) stays within the budget; a file whose symbols do not fit is
   listed with its best symbols only, and the rest of the files are counted in a last line.

`missing_context_files(requirements, root)` says which named paths (or globs) match nothing.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from context_builder import estimate_tokens
from file_cache import FileCache, has_views

log = logging.getLogger(__name__)

MAX_FILES = 5000
MAX_SYMBOLS_PER_FILE = 24         # so one big header cannot take the whole budget
MAX_FILE_BYTES = 1_000_000          # larger files are listed but not read (generated data, bundles)
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "venv", "build", "dist", "target", "out", "bin", "obj"})
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")
_GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class RepoMap:
    root: Path
    text: str                       # what Tier 2 reads
    files: tuple[str, ...]          # every file found (posix, relative to root), ranked
    shown: int                      # files that made it into `text`
    tokens: int                     # estimate of `text`

    def __bool__(self) -> bool:
        return bool(self.text)


def list_files(root: Path) -> list[str]:
    """Project files relative to `root`, sorted; git's view when `root` is in a work tree."""
    try:
        proc = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                              cwd=root, capture_output=True, timeout=_GIT_TIMEOUT_S, check=False)
        if proc.returncode == 0:
            names = [n for n in proc.stdout.decode("utf-8", "replace").split("\0") if n]
            files = sorted(n for n in names if (root / n).is_file()
                           and not any(p.startswith(".") or p in SKIP_DIRS for p in Path(n).parts[:-1]))
            return files[:MAX_FILES]
        log.debug("git ls-files in %s: %s", root, proc.stderr.decode("utf-8", "replace").strip())
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("git ls-files in %s failed: %s", root, exc)
    found: list[str] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                         and not (Path(folder, d) / "pyvenv.cfg").exists())
        rel = Path(folder).relative_to(root)
        found += [(rel / n).as_posix() for n in sorted(names) if not n.startswith(".")]
        if len(found) >= MAX_FILES:
            break
    return sorted(found)[:MAX_FILES]


def _symbols(cache: FileCache, path: Path) -> list[tuple[str, str]]:
    """(kind, name) of the top-level declarations of a file with views; [] otherwise."""
    try:
        if not has_views(path) or path.stat().st_size > MAX_FILE_BYTES:
            return []
        view = cache.get_view(path, "outline")
    except (OSError, ValueError) as exc:
        log.debug("repo map: no outline of %s: %s", path, exc)
        return []
    return [(item.kind, item.qualname if item.depth == 0 else item.name)
            for item in view.outline if item.depth == 0]


def build_repo_map(root: str | os.PathLike, budget_tokens: int, *, cache: FileCache | None = None,
                   mentioned: str = "") -> RepoMap:
    """The map of `root` within `budget_tokens` (0: an empty map).  `mentioned` is text (the
    track's title and description) whose file names are ranked first."""
    root = Path(root).resolve()
    if budget_tokens <= 0 or not root.is_dir():
        return RepoMap(root, "", (), 0, 0)
    cache = cache or FileCache()
    files = list_files(root)
    symbols = {f: _symbols(cache, root / f) for f in files}
    defined: dict[str, set[str]] = {}
    for f, items in symbols.items():
        for _kind, name in items:
            defined.setdefault(name.rsplit(".", 1)[-1], set()).add(f)
    used_in: dict[str, list[str]] = {}         # name -> files other than its definer's that use it
    code_files = [f for f in files if has_views(f)]
    for f in code_files:
        try:
            text = cache.get_text(root / f) if (root / f).stat().st_size <= MAX_FILE_BYTES else ""
        except (OSError, ValueError):
            continue
        for name in set(_IDENT.findall(text)) & defined.keys():
            if defined[name] - {f}:
                used_in.setdefault(name, []).append(f)
    # A name most files use (`value`, `format`) says nothing about who depends on whom.
    common = max(3, len(code_files) // 4)
    uses = Counter({name: len(users) for name, users in used_in.items() if len(users) <= common})
    referrers: dict[str, set[str]] = {}        # file -> files that use one of its names
    for name in uses:
        for owner in defined[name]:
            referrers.setdefault(owner, set()).update(u for u in used_in[name] if u != owner)
    mention = mentioned.lower()

    def score(f: str) -> tuple[int, int, str]:
        stem = Path(f).stem.lower()
        named = f.lower() in mention or (len(stem) > 2 and re.search(rf"\b{re.escape(stem)}\b", mention) is not None)
        return (-int(named), -len(referrers.get(f, ())), f)

    ranked = sorted(files, key=score)
    lines: list[str] = []
    used = shown = 0
    for f in ranked:
        room = budget_tokens - 8 - used                            # 8: the "more files" line
        cost = estimate_tokens(f + "\n")
        if cost > room:
            break
        lines.append(f)
        best = sorted(dict.fromkeys(symbols[f]), key=lambda s: -uses[s[1].rsplit(".", 1)[-1]])
        for kind, name in best[:MAX_SYMBOLS_PER_FILE]:
            line_cost = estimate_tokens(f"  {kind} {name}\n")
            if cost + line_cost > room:
                break                                              # keep the best-used symbols
            lines.append(f"  {kind} {name}")
            cost += line_cost
        used += cost
        shown += 1
    if shown < len(ranked):
        lines.append(f"({len(ranked) - shown} more files not shown)")
    text = "\n".join(lines) + "\n" if lines else ""
    return RepoMap(root, text, tuple(ranked), shown, estimate_tokens(text))


def missing_context_files(requirements: list[str], root: str | os.PathLike) -> list[str]:
    """The entries of `requirements` that name no file under `root` (globs must match one)."""
    base = Path(root).resolve()
    missing = []
    for spec in requirements:
        text = spec.strip().removeprefix("./")
        if not text:
            continue
        if any(ch in text for ch in "*?["):
            try:
                found = any(p.is_file() for p in base.glob(text))
            except (ValueError, NotImplementedError):
                found = False
        else:
            path = (base / text).resolve()
            found = path.is_relative_to(base) and path.is_file()
        if not found:
            missing.append(spec)
    return missing
