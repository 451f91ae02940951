"""Path confinement: every path a model names must stay inside the project root.

`resolve_in_root(root, user_path)` is the single gate every tool goes through.
It resolves the path with `Path.resolve()` -- which follows *every* symlink in
the path, the final component included, and for a path that does not exist yet
resolves its nearest existing parent and keeps the rest -- and then requires
the result to be inside the resolved root (`is_relative_to`).  So all of these
are refused with a `ToolError`:

* absolute paths outside the root (`/etc/passwd`); absolute paths *inside* the
  root are accepted;
* `..` escapes (`../x`, `a/../../x`);
* symlinks anywhere in the path that point outside the root, including a
  dangling final symlink whose target lies outside (a write would land there);
* empty / whitespace-only paths, NUL bytes, symlink loops, non-string paths.

Tools then operate on the *resolved* path, never on the string the model gave.

Known limit: check-then-use.  A process that swaps a directory for a symlink
between `resolve_in_root` and the open() can still redirect one operation.
Model-issued writes and shell commands need the developer's approval, so only
an already-approved command could race this way.
"""
from __future__ import annotations

import os
from pathlib import Path

from tools.errors import ToolError


def resolve_root(root: str | os.PathLike) -> Path:
    """The project root, resolved; `ToolError` when it is not an existing directory."""
    try:
        resolved = Path(root).resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise ToolError(f"project root {str(root)!r} cannot be resolved: {exc}") from exc
    if not resolved.is_dir():
        raise ToolError(f"project root {str(root)!r} is not a directory")
    return resolved


def resolve_in_root(root: str | os.PathLike, user_path: str | os.PathLike) -> Path:
    """Resolve `user_path` (relative to `root`, or absolute) and prove it stays inside `root`.

    Returns the fully resolved path (symlinks followed).  Raises `ToolError`
    with a message meant for the model otherwise.
    """
    if isinstance(user_path, os.PathLike):
        user_path = os.fspath(user_path)
    if not isinstance(user_path, str):
        raise ToolError(f"path must be a string, got {type(user_path).__name__}")
    if "\x00" in user_path:
        raise ToolError(f"path {user_path!r} contains a NUL byte")
    if not user_path.strip():
        raise ToolError("path is empty; use '.' for the project root")
    root_path = resolve_root(root)
    candidate = root_path / user_path  # an absolute user_path replaces root_path here
    try:
        resolved = candidate.resolve()
    except RuntimeError as exc:  # symlink loop (Python 3.11 raises RuntimeError)
        raise ToolError(f"path {user_path!r} cannot be resolved: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise ToolError(f"path {user_path!r} cannot be resolved: {exc}") from exc
    if not resolved.is_relative_to(root_path):
        if _lexically_inside(root_path, candidate):
            raise ToolError(f"path {user_path!r} leads outside the project root through a symlink")
        raise ToolError(f"path {user_path!r} is outside the project root")
    # A fully resolved path holds no symlink.  Non-strict resolve() stops at a symlink
    # loop (e.g. `loop_a/../link`) and returns a path that still contains one, whose
    # target may be outside the root: refuse it.
    for part in (resolved, *resolved.parents):
        if part == root_path:
            break
        if part.is_symlink():
            raise ToolError(f"path {user_path!r} cannot be resolved safely: it goes through a "
                            f"symlink loop at {display_path(root_path, part)!r}")
    return resolved


def _lexically_inside(root_path: Path, candidate: Path) -> bool:
    """True when `candidate` is inside `root_path` before following symlinks."""
    return Path(os.path.normpath(candidate)).is_relative_to(root_path)


def display_path(root: Path, path: Path) -> str:
    """`path` relative to the (resolved) root, with '/' separators; '.' for the root itself."""
    rel = path.relative_to(root).as_posix()
    return rel or "."


def is_inside(root: Path, path: Path) -> bool:
    """Whether `path` resolves (symlinks followed) inside the resolved `root`.  Never raises."""
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError, ValueError):
        return False
